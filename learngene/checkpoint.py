"""Files this toolkit writes: learngene files, timm model folders, training states. All atomic.

* A **learngene file** is a safetensors file of the Aux-Net's state dict (the stage layers plus
  patch embed, pos embed, fc_norm and head) with metadata naming the timm model and its arguments,
  so ``timm.create_model(meta.model, **meta.model_args)`` rebuilds the Aux-Net.
* A **model folder** is what ``timm.models.save_for_hf`` lays out (``config.json`` +
  ``model.safetensors``): stock timm loads it with ``create_model("local-dir:DIR", pretrained=True)``.
* A **training state** is a ``torch.save`` dict of tensors and plain data only, so
  ``torch.load(path, weights_only=True)`` reads it.

Every writer goes through a temporary file or folder next to the target and renames it into
place, so a crash never leaves a half-written file under the final name.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from learngene.errors import LearngeneError

LEARNGENE_FORMAT = "learngene/v1"


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
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def check_output_dir(out_dir: str | os.PathLike) -> Path:
    """Refuse an output folder that holds anything or cannot be made (a regular file on its path)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise LearngeneError(f"output {out_dir} already exists and is not empty: choose a new --out or remove it")
    existing = next(p for p in out_dir.absolute().parents if p.exists())
    if not existing.is_dir():
        raise LearngeneError(f"output {out_dir} cannot be created: {existing} is a file, not a folder; "
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
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def load_torch_file(path: str | os.PathLike, what: str = "checkpoint") -> dict:
    """``torch.load(weights_only=True)`` with one-line errors for missing, truncated or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise LearngeneError(f"{what} {path} does not exist: check the path")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated or non-torch files
        raise LearngeneError(f"{what} {path} is truncated or not a torch checkpoint ({type(e).__name__}): "
                             "write it again") from None


@dataclasses.dataclass
class Learngene:
    """A loaded learngene file: the Aux-Net state dict and how to rebuild the Aux-Net."""

    state_dict: dict[str, torch.Tensor]
    model: str
    model_args: dict
    kind: str = "sws"
    extra: dict = dataclasses.field(default_factory=dict)

    def build_aux(self):
        import timm  # a learngene's model name is a timm entry point registered by learngene.models
        aux = timm.create_model(self.model, **self.model_args)
        aux.load_state_dict(self.state_dict, strict=True)
        return aux


def save_learngene(model: torch.nn.Module, path: str | os.PathLike, kind: str = "sws",
                   extra: dict | None = None) -> None:
    """Write an Aux-Net's learngene (its whole state dict: every tensor is part of the learngene)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "format": LEARNGENE_FORMAT,
        "kind": kind,
        "model": model.pretrained_cfg["architecture"],
        "model_args": json.dumps(model.architecture_args()),
        "extra": json.dumps(extra or {}),
    }
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)


def load_learngene(path: str | os.PathLike) -> Learngene:
    path = Path(path)
    if not path.is_file():
        raise LearngeneError(f"learngene file {path} does not exist: train one with tools/train_aux.py")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != LEARNGENE_FORMAT:
                raise LearngeneError(f"{path} is not a learngene file (no '{LEARNGENE_FORMAT}' metadata): "
                                     "pass a file written by tools/train_aux.py")
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise LearngeneError(f"{path} is truncated or not a safetensors learngene file ({e}): "
                             "write it again with tools/train_aux.py") from None
    return Learngene(state, meta["model"], json.loads(meta["model_args"]), meta["kind"], json.loads(meta["extra"]))


def save_model_folder(model: torch.nn.Module, out_dir: str | os.PathLike, extra_files: dict[str, dict] | None = None,
                      model_args: dict | None = None) -> None:
    """Write ``model`` as a timm local-dir folder plus extra JSON files (e.g. ``plan.json``), atomically."""
    from timm.models import save_for_hf

    with atomic_dir(out_dir) as tmp:
        save_for_hf(model, str(tmp), model_args=model_args, safe_serialization=True)
        for name, data in (extra_files or {}).items():
            (tmp / name).write_text(json.dumps(data, indent=2) + "\n")


def load_model_folder(model_dir: str | os.PathLike, **kwargs) -> torch.nn.Module:
    """Load a timm local-dir folder written by :func:`save_model_folder` (or by timm itself)."""
    import timm

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise LearngeneError(f"{model_dir} is not a model folder (no config.json): pass a folder from tools/expand.py "
                             "or a training run")
    try:
        return timm.create_model(f"local-dir:{model_dir}", pretrained=True, **kwargs)
    except (SafetensorError, RuntimeError, OSError, ValueError, KeyError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LearngeneError(f"cannot load model folder {model_dir}: {first_line}") from None


def stored_parameter_count(artifact: str | os.PathLike) -> int:
    """Number of values stored in a learngene file or a model folder's ``model.safetensors``."""
    path = Path(artifact)
    if path.is_dir():
        path = path / "model.safetensors"
    with safe_open(str(path), framework="pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
