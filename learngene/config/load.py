"""Loading configs: YAML merged onto the dataclass defaults, then ``key=value`` overrides.

Tools share one command-line convention::

    python tools/train_aux.py --config configs/digits/aux.yaml optim.epochs=5 output=runs/try
"""
from __future__ import annotations

import dataclasses
import importlib.resources
import os
import re
from pathlib import Path
from typing import Sequence, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from learngene.checkpoint import atomic_write_text
from learngene.cli import tool_parser
from learngene.errors import LearngeneError, first_line

Schema = TypeVar("Schema")


def value_problem(e: Exception, key: str | None) -> str:
    """OmegaConf's complaint about a value, in the config's terms where it names its own node types."""
    text = first_line(e)
    example = key or "key"
    if "is not a ListConfig" in text:
        return f"it must be a list: write e.g. {example}=[1,2]"
    if "to Dict[" in text:
        return f"it must be a mapping: write e.g. '{example}={{name: value}}'"
    section = re.search(r"(\w+) is not a subclass of (\w+)", text)
    if section:  # a whole section (e.g. a PartConfig) given a plain value
        return f"a {section[2]} section must be a mapping of its keys, not a {section[1]}: write e.g. " \
               "'NAME={config: FILE}' or set its keys one by one (NAME.KEY=VALUE)"
    return text


def load_config(path: str | os.PathLike | None, overrides: Sequence[str], schema: type[Schema],
                overrides_from: str = "the command line") -> Schema:
    """Return a ``schema`` instance: defaults <- YAML file at ``path`` (if any) <- ``key=value`` overrides.
    ``overrides_from`` says where the overrides come from in error messages."""
    merged = OmegaConf.structured(schema)
    layers = []
    if path:
        layers.append((str(path), _load_yaml(Path(path))))
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise LearngeneError(f"override {bad[0]!r} is not key=value: write e.g. optim.lr=1e-3")
    if overrides:
        layers.append((overrides_from, list(overrides)))
    for source, layer in layers:
        try:
            if isinstance(layer, list):  # onto the config itself, so a list's items are addressable: a[0].b=1
                merged.merge_with_dotlist(layer)
            else:
                merged = OmegaConf.merge(merged, layer)
        except yaml.YAMLError as e:  # e.g. a list of key=value overrides holding unquoted brackets
            raise LearngeneError(f"an override's value is not valid YAML ({first_line(e)}): quote list items that "
                                 "hold brackets, e.g. part_overrides=['data.classes=[0,1]']") from None
        except (ConfigKeyError, ConfigAttributeError) as e:
            node = e.full_key.rpartition(".")[0] or "the top level"
            raise LearngeneError(f"unknown config key {e.full_key!r} in {source}: valid keys of {node} are "
                                 f"{', '.join(f.name for f in dataclasses.fields(e.object_type))}") from None
        except OmegaConfBaseException as e:
            key = getattr(e, "full_key", None)
            where = f" for {key!r}" if key else ""
            raise LearngeneError(f"bad config value{where} in {source}: {value_problem(e, key)}") from None
    return OmegaConf.to_object(merged)


def packaged_configs() -> Path:
    """The ``configs/`` folder shipped in the package (``learngene.configs``), or a checkout's own."""
    try:
        return Path(str(importlib.resources.files("learngene.configs")))
    except ModuleNotFoundError:  # a checkout imported from its folder (PYTHONPATH), not installed
        return Path(__file__).resolve().parents[2] / "configs"


def config_file(path: str | os.PathLike) -> Path:
    """``path`` as given; a ``configs/...`` path that is not there (run outside a checkout, e.g. after
    ``pip install``) is the packaged config of that name, which the benchmark's parts and the docs refer to."""
    path = Path(path)
    if path.exists() or path.is_absolute() or path.parts[:1] != ("configs",):
        return path
    return packaged_configs().joinpath(*path.parts[1:])


def _load_yaml(given: Path):
    path = config_file(given)
    if not path.is_file():
        raise LearngeneError(f"config file {given} does not exist: pass an existing YAML file, e.g. configs/digits/aux.yaml")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise LearngeneError(f"config file {path} is not valid YAML: {first_line(e)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise LearngeneError(f"config file {path} must hold a mapping of keys, not a {type(data).__name__}")
    return OmegaConf.create(data)


def save_config(cfg, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (atomically); ``load_config(path, [], type(cfg))`` reads it back."""
    atomic_write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)), path)


def parse_config_args(argv: Sequence[str] | None, schema: type[Schema], default_config: str | os.PathLike | None,
                      doc: str) -> Schema:
    """The tools' command line: ``[--config FILE] [key=value ...]`` -> a ``schema`` instance.

    ``doc`` is the tool's docstring; ``--help`` shows its examples and every config key by section.
    """
    parser = tool_parser(doc, prog=None)
    parser.epilog += f"\nconfig keys (key=value; docs/training.md explains each):\n{config_keys(schema)}\n"
    parser.add_argument("--config", default=default_config,
                        help=f"YAML config file (default: {default_config or 'none, dataclass defaults'})")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. optim.epochs=5 data.batch_size=64 output=runs/try")
    args = parser.parse_intermixed_args(argv)  # key=value before, between or after the options
    return load_config(args.config, args.overrides, schema)


def config_keys(schema: type) -> str:
    """One line per section of a config dataclass: ``  section: key, key, ...``; top-level keys last."""
    sections, top = [], []
    for f in dataclasses.fields(schema):
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        if dataclasses.is_dataclass(default):
            sections.append(f"  {f.name}: {', '.join(g.name for g in dataclasses.fields(default))}")
        else:
            top.append(f.name)
    return "\n".join([*sections, f"  (top level): {', '.join(top)}"])
