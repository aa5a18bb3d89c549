"""Files this toolkit writes: learngene files, timm model folders, training states. All atomic.

* A **learngene file** is a safetensors file of the Aux-Net's state dict (the stage layers plus
  patch embed, pos embed, fc_norm and head) with metadata naming the timm model and its arguments,
  so ``timm.create_model(meta.model, **meta.model_args)`` rebuilds the Aux-Net.
* A **model folder** is what ``timm.models.save_for_hf`` lays out (``config.json`` +
  ``model.safetensors``): stock timm loads it with ``create_model("local-dir:DIR", pretrained=True)``.
* A **training state** is a ``torch.save`` dict of tensors and plain data only, so
  ``torch.load(path, weights_only=True)`` reads it.

Every writer goes through a temporary file or folder next to the target and renames it into
place, so a crash never leaves a half-written file under the final name. The renamed file or folder
gets the modes a plain ``open`` / ``mkdir`` would give (0666 / 0777 less the umask), not the 0600 /
0700 of the temporary it was written as.

Learngene files and training states carry the sha256 of their payload (:func:`payload_checksum`),
written with them and verified on every read, so a file damaged inside (a zeroed block, a flipped bit)
is refused instead of silently trained or expanded from. A learngene's covers its metadata too (the model
and its arguments, e.g. ``stage_sizes``, say how its tensors are expanded), and a learngene without one
is refused. Torch files without one (written by other tools, e.g. a teacher's weights) are read unverified.

A model folder's ``config.json`` records the preprocessing its weights were trained with (timm's data
config: ``input_size``, ``mean``, ``std``, ``interpolation``, ``crop_pct``, ``crop_mode``; see
:func:`preprocessing_of`) and nothing else of the ``pretrained_cfg`` timm's architecture inherits
(hub ids, tag, license, paper): ``timm.data.resolve_data_config({}, model=model)`` then gives the
project's own evaluation pipeline.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from learngene.errors import LearngeneError, first_line

LEARNGENE_FORMAT = "learngene/v2"  # v2: the checksum covers the metadata (model, arguments, extra) as well
OLDER_LEARNGENE_FORMATS = ("learngene/v1",)
CHECKSUM_KEY = "payload_sha256"  # a training state's top-level key, a learngene's or cache shard's metadata key
PREPROCESSING_KEYS = ("input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode")
# pretrained_cfg fields describing the architecture rather than where its weights came from
INIT_RECORD = "init.json"  # how a Des-Net folder was initialized: the method's Initialization.info
ARCHITECTURE_CFG_KEYS = ("fixed_input_size", "first_conv", "classifier", "pool_size")


def current_umask() -> int:
    umask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(umask)
    return umask


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The raw bytes of a tensor's values, in row-major order (any dtype, any device)."""
    return memoryview(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())


def payload_checksum(obj) -> str:
    """sha256 of a nest of dicts, lists and tuples of tensors and plain values, independent of dict order.

    Each tensor contributes its name (its path in the nest), dtype, shape and bytes; each plain value
    its path and ``repr``. About 0.6 GB/s on one core of this project's shared CPU (docs/performance.md).
    """
    digest = hashlib.sha256()

    def feed(path: str, value) -> None:
        if isinstance(value, torch.Tensor):
            digest.update(f"{path} {value.dtype} {tuple(value.shape)}\n".encode())
            digest.update(tensor_bytes(value))
        elif isinstance(value, Mapping):
            digest.update(f"{path} {type(value).__name__} {len(value)}\n".encode())
            for key in sorted(value, key=repr):
                feed(f"{path}/{key!r}", value[key])
        elif isinstance(value, (list, tuple)):
            digest.update(f"{path} {type(value).__name__} {len(value)}\n".encode())
            for i, item in enumerate(value):
                feed(f"{path}/{i}", item)
        else:
            digest.update(f"{path}={value!r}\n".encode())

    feed("", obj)
    return digest.hexdigest()


def json_digest(value) -> str:
    """A short sha256 (16 hex digits) of a JSON-serializable value, independent of dict order (cache keys)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_checksum(path: Path, what: str, recorded: str, payload, remedy: str) -> None:
    """Refuse ``path`` when its recorded payload checksum differs from the payload read back."""
    if recorded != payload_checksum(payload):
        raise LearngeneError(f"{what} {path} is corrupted: its contents no longer match the checksum stored when it "
                             f"was written; {remedy}")


def state_dict_mismatch(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor],
                        limit: int = 3, may_miss: tuple[str, ...] = ()) -> str:
    """The first missing keys, unexpected keys and shape differences of ``given`` against ``expected``; "" if none.

    Keys of ``expected`` starting with one of ``may_miss`` may be absent from ``given``.
    """
    def first(items: list[str]) -> str:
        more = f" and {len(items) - limit} more" if len(items) > limit else ""
        return ", ".join(items[:limit]) + more

    missing = [k for k in expected if k not in given and not (may_miss and k.startswith(may_miss))]
    unexpected = [k for k in given if k not in expected]
    shapes = [f"{k} {list(given[k].shape)} vs {list(expected[k].shape)} expected" for k in expected
              if k in given and given[k].shape != expected[k].shape]
    parts = [f"{name}: {first(items)}" for name, items in
             (("missing", missing), ("unexpected", unexpected), ("shape", shapes)) if items]
    return "; ".join(parts)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def file_on_path(path: str | os.PathLike) -> Path | None:
    """The regular file standing where ``path`` or one of its parents would have to be a folder, if any."""
    path = Path(path).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    return None if existing.is_dir() else existing


def check_output_dir(out_dir: str | os.PathLike) -> Path:
    """Refuse an output folder that holds anything or cannot be made (a regular file on its path)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise LearngeneError(f"output {out_dir} already exists and is not empty: choose a new --out or remove it")
    blocker = file_on_path(out_dir)
    if blocker is not None:
        raise LearngeneError(f"output {out_dir} cannot be created: {blocker} is a file, not a folder; "
                             "choose another --out")
    return out_dir


@contextlib.contextmanager
def atomic_dir(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``out_dir`` on success. ``out_dir`` must not hold files."""
    out_dir = check_output_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        yield tmp
        umask = current_umask()
        for path in tmp.rglob("*"):  # safetensors writes its files 0600 whatever the umask
            path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
        tmp.chmod(0o777 & ~umask)
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def atomic_torch_save(obj: dict, path: str | os.PathLike) -> None:
    """``torch.save`` a dict plus its :func:`payload_checksum` (under ``CHECKSUM_KEY``), atomically."""
    with atomic_path(path) as tmp:
        torch.save({**obj, CHECKSUM_KEY: payload_checksum(obj)}, tmp)


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_csv(rows: Iterable[Mapping], columns: Sequence[str], path: str | os.PathLike) -> None:
    """A CSV file of ``rows`` under a header of ``columns`` (keys of a row not among them are left out)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(buffer.getvalue(), path)


def load_torch_file(path: str | os.PathLike, what: str = "checkpoint") -> dict:
    """``torch.load(weights_only=True)`` with one-line errors for missing, truncated, foreign or corrupted files.

    A dict written by :func:`atomic_torch_save` is verified against its checksum, which is then dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise LearngeneError(f"{what} {path} does not exist: check the path")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated or non-torch files
        raise LearngeneError(f"{what} {path} is truncated or not a torch checkpoint ({type(e).__name__}): "
                             "write it again") from None
    if isinstance(obj, dict) and CHECKSUM_KEY in obj:
        recorded = obj.pop(CHECKSUM_KEY)
        check_checksum(path, what, recorded, obj, "restore it from a copy, or delete it and train again")
    return obj


def preprocessing_of(data_cfg, info) -> dict:
    """timm's data config of the evaluation inputs of ``data_cfg`` (a ``DataConfig`` and its ``DatasetInfo``).

    ``timm.data.create_transform(**preprocessing)`` then reproduces the project's validation inputs:
    for image datasets from the image files; for digits from each image as a float tensor scaled to
    [0, 1] (pixel / 16), which the project resizes bilinearly (antialiased) to ``img_size``, uncropped.
    """
    digits = data_cfg.name == "digits"
    return {
        "input_size": [info.in_chans, info.img_size, info.img_size],
        "mean": list(info.mean),
        "std": list(info.std),
        "interpolation": "bilinear" if digits else data_cfg.interpolation,
        "crop_pct": 1.0 if digits else data_cfg.crop_pct,
        "crop_mode": "center",
    }


@dataclasses.dataclass
class Learngene:
    """A loaded learngene file: the Aux-Net state dict and how to rebuild the Aux-Net."""

    state_dict: dict[str, torch.Tensor]
    model: str
    model_args: dict
    kind: str = "sws"
    extra: dict = dataclasses.field(default_factory=dict)
    preprocessing: dict | None = None  # what the Aux-Net was trained on (preprocessing_of); None if not recorded
    path: str = ""

    def build_aux(self, advice: str = "pass a file written by tools/train_aux.py"):
        """The Aux-Net its metadata names, holding its tensors; ``advice`` ends the error line when they don't fit."""
        import timm

        import learngene.models  # noqa: F401  (a learngene's model name is a timm entry point registered there)
        try:
            aux = timm.create_model(self.model, **self.model_args)
        except (RuntimeError, TypeError, ValueError) as e:  # an unknown name, arguments it does not take
            raise LearngeneError(f"learngene {self.path} names model {self.model!r} with {self.model_args}, which "
                                 f"timm cannot create ({first_line(e)}): {advice}") from None
        mismatch = state_dict_mismatch(aux.state_dict(), self.state_dict)
        if mismatch:
            raise LearngeneError(f"learngene {self.path} does not fit the {self.model} it names ({mismatch}): {advice}")
        aux.load_state_dict(self.state_dict, strict=True)
        return aux


def save_learngene(model: torch.nn.Module, path: str | os.PathLike, kind: str = "sws",
                   extra: dict | None = None, preprocessing: dict | None = None) -> None:
    """Write an Aux-Net's learngene (its whole state dict: every tensor is part of the learngene).

    ``preprocessing`` (:func:`preprocessing_of` of the training data) is passed on to every Des-Net
    folder expanded from it.
    """
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "format": LEARNGENE_FORMAT,
        "kind": kind,
        "model": model.pretrained_cfg["architecture"],
        "model_args": json.dumps(model.architecture_args()),
        "extra": json.dumps(extra or {}),
    }
    if preprocessing is not None:
        metadata["preprocessing"] = json.dumps(preprocessing)
    metadata[CHECKSUM_KEY] = payload_checksum(learngene_payload(state, metadata))
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)


def learngene_payload(state: dict[str, torch.Tensor], metadata: dict[str, str]) -> dict:
    """What a learngene's checksum covers: its tensors and every metadata entry but the checksum itself."""
    return {"tensors": dict(state), "metadata": {k: v for k, v in metadata.items() if k != CHECKSUM_KEY}}


def load_learngene(path: str | os.PathLike) -> Learngene:
    path = Path(path)
    if not path.is_file():
        raise LearngeneError(f"learngene file {path} does not exist: train one with tools/train_aux.py")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") in OLDER_LEARNGENE_FORMATS:
                raise LearngeneError(f"{path} is an older learngene file ({meta['format']}), whose checksum does not "
                                     "cover its metadata: write it again with tools/train_aux.py (or tools/convert.py "
                                     "for an official checkpoint)")
            if meta.get("format") != LEARNGENE_FORMAT:
                raise LearngeneError(f"{path} is not a learngene file (no '{LEARNGENE_FORMAT}' metadata): "
                                     "pass a file written by tools/train_aux.py")
            state = {k: f.get_tensor(k) for k in f.keys()}
            kind, model = meta["kind"], meta["model"]
            model_args, extra = json.loads(meta["model_args"]), json.loads(meta["extra"])
            preprocessing = json.loads(meta["preprocessing"]) if "preprocessing" in meta else None
    except (SafetensorError, OSError, ValueError, KeyError) as e:
        if path.suffix in (".pt", ".pth"):  # a torch file: a training state (last.pt) or an official checkpoint
            raise LearngeneError(f"{path} is not a learngene file but a torch one (a training state like last.pt, "
                                 "or an official checkpoint): pass the run's learngene.safetensors (written when an "
                                 "Aux-Net run finishes), or convert an official checkpoint with tools/convert.py") \
                from None
        raise LearngeneError(f"{path} is truncated or not a safetensors learngene file ({type(e).__name__}: {e}): "
                             "write it again with tools/train_aux.py") from None
    if CHECKSUM_KEY not in meta:
        raise LearngeneError(f"learngene file {path} has no {CHECKSUM_KEY} metadata, so it cannot be verified: "
                             "write it again with tools/train_aux.py")
    check_checksum(path, "learngene file", meta[CHECKSUM_KEY], learngene_payload(state, meta),
                   "write it again with tools/train_aux.py")
    return Learngene(state, model, model_args, kind, extra, preprocessing, str(path))


def recorded_preprocessing(config: dict) -> dict | None:
    """The preprocessing a model folder's ``config.json`` (``config``, as read) records (None if none is recorded)."""
    pretrained_cfg = config.get("pretrained_cfg", {})
    return {k: pretrained_cfg[k] for k in PREPROCESSING_KEYS if k in pretrained_cfg} or None


def save_model_folder(model: torch.nn.Module, out_dir: str | os.PathLike, *, preprocessing: dict | None,
                      model_args: dict, extra_files: dict[str, dict] | None = None) -> None:
    """Write ``model`` as a timm local-dir folder plus extra JSON files (e.g. ``init.json``), atomically.

    ``model_args`` are the arguments that rebuild the architecture (``timm.create_model(name, **model_args)``);
    ``preprocessing`` (:func:`preprocessing_of`) the inputs the weights were trained with, None for weights
    never trained on any data. ``config.json``'s ``pretrained_cfg`` holds these, ``num_classes`` and the
    architecture's own fields (``ARCHITECTURE_CFG_KEYS``); a fixed-input-size model's ``input_size`` is its own.
    """
    from timm.models import save_for_hf

    pretrained_cfg = {**(preprocessing or {}), "num_classes": model.num_classes}
    with atomic_dir(out_dir) as tmp:
        # Passing the preprocessing to timm too keeps it from resolving (and warning about) the inherited one.
        save_for_hf(model, str(tmp), model_config={"pretrained_cfg": dict(pretrained_cfg)}, model_args=model_args,
                    safe_serialization=True)
        config_path = tmp / "config.json"
        config = json.loads(config_path.read_text())
        written = config["pretrained_cfg"]
        config["pretrained_cfg"] = {**{k: written[k] for k in ARCHITECTURE_CFG_KEYS if k in written}, **pretrained_cfg}
        if written.get("fixed_input_size") or preprocessing is None:
            config["pretrained_cfg"]["input_size"] = written["input_size"]
        config_path.write_text(json.dumps(config, indent=2) + "\n")
        for name, data in (extra_files or {}).items():
            (tmp / name).write_text(json.dumps(data, indent=2) + "\n")


def load_model_folder(model_dir: str | os.PathLike, **kwargs) -> torch.nn.Module:
    """Load a timm local-dir folder written by :func:`save_model_folder` (or by timm itself)."""
    import timm

    import learngene.models  # noqa: F401  (an Aux-Net's folder names a timm entry point registered there)

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise LearngeneError(not_a_model_folder(model_dir))
    try:
        return timm.create_model(f"local-dir:{model_dir}", pretrained=True, **kwargs)
    except (SafetensorError, RuntimeError, OSError, ValueError, KeyError) as e:
        raise LearngeneError(f"cannot load model folder {model_dir}: {first_line(e)}") from None


# The README's first step, which writes the ancestry every digits learngene and Des-Net starts from.
DIGITS_ANCESTRY = "runs/digits/ancestry/model"
TRAIN_DIGITS_ANCESTRY = "python tools/finetune.py --config configs/digits/ancestry.yaml"


def not_a_model_folder(path: Path) -> str:
    """What ``path`` is instead of a model folder, and which path or command to use."""
    expand_first = "expand it into a Des-Net first (tools/expand.py LEARNGENE --depth D --out DES) and pass DES"
    if path.is_file():
        return f"{path} is a learngene file: {expand_first}" if path.suffix == ".safetensors" else \
            f"{path} is a file: pass the folder that holds config.json"
    if (path / "model" / "config.json").is_file():
        return f"{path} is a training run folder: pass {path / 'model'}"
    if (path / "learngene.safetensors").is_file():
        return f"{path} is an Aux-Net training run folder; its learngene {path / 'learngene.safetensors'} is not a " \
               f"model folder: {expand_first}"
    if (path / "config.yaml").is_file():
        return f"{path} is a training run folder with no model yet: finish the run (the same command plus " \
               "resume=auto), then pass RUN/model"
    if path.is_dir():
        return f"{path} is not a model folder (no config.json): pass a folder from tools/expand.py or RUN/model of " \
               "a finished training run"
    if path.as_posix().endswith(DIGITS_ANCESTRY):
        return f"{path} does not exist: train the digits ancestry first with `{TRAIN_DIGITS_ANCESTRY}`"
    return f"{path} does not exist: pass a folder from tools/expand.py or RUN/model of a finished training run"


def stored_parameter_count(artifact: str | os.PathLike) -> int:
    """Number of values stored in a learngene file or a model folder's ``model.safetensors``."""
    path = Path(artifact)
    if path.is_dir():
        path = path / "model.safetensors"
    with safe_open(str(path), framework="pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
