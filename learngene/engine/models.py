"""Building the trained model and the teacher from their config nodes.

Both come from the same sources: a timm model name (``pretrained=True`` for timm's weights, e.g. the
SWS ancestry ``levit_384``), a ``local-dir:DIR`` model folder (a Des-Net from tools/expand.py or the
``model/`` folder of a finished run), and optionally a weights file (``checkpoint``) loaded strictly
on top, which may be a safetensors file, a torch state dict, or a training state such as ``last.pt``.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import timm
import torch
from safetensors import SafetensorError
from huggingface_hub.errors import LocalEntryNotFoundError
from safetensors.torch import load_file
from timm.layers import trunc_normal_
from torch import nn

from learngene.checkpoint import load_model_folder, load_torch_file, state_dict_mismatch, tensor_bytes
from learngene.config import ModelConfig, TeacherConfig, TrainConfig
from learngene.data import DatasetInfo
from learngene.errors import LearngeneError, first_line
from learngene.hub import quiet_retries, unreachable

LOCAL_DIR = "local-dir:"
# Where a torch checkpoint may keep its weights, non-EMA first (timm's order, then its EMA copies).
STATE_DICT_KEYS = ("model", "state_dict", "model_ema", "state_dict_ema")


def build_model(name: str, *, pretrained: bool = False, checkpoint: str = "", what: str = "model",
                **kwargs) -> nn.Module:
    """A timm model by name or ``local-dir:DIR``; ``checkpoint`` (a file) replaces any pretrained weights."""
    load_pretrained = pretrained and not checkpoint
    try:
        if name.startswith(LOCAL_DIR) and load_pretrained:
            model = load_model_folder(name[len(LOCAL_DIR):], **kwargs)
        else:
            with quiet_retries():
                model = timm.create_model(name, pretrained=load_pretrained, **kwargs)
    except LocalEntryNotFoundError as e:  # an OSError: the weights are neither downloadable nor cached
        raise LearngeneError(f"cannot download the pretrained weights of {what} {name!r}: {unreachable(e)}; or set "
                             f"{what}.checkpoint=FILE, or {what}.pretrained=false to start from timm's init") from None
    except (AssertionError, RuntimeError, TypeError, ValueError, OSError) as e:
        # unknown name, bad kwargs (timm asserts e.g. that num_heads divides the width), weights not available
        raise LearngeneError(f"cannot create {what} {name!r} with {kwargs}: {first_line(e)}: "
                             f"check {what}.name and {what}.kwargs") from None
    if checkpoint:
        load_weights_file(model, checkpoint, f"{what}.checkpoint", name)
    return model


def load_weights_file(model: nn.Module, path: str | Path, what: str, name: str) -> None:
    """Load a weights file into ``model`` strictly, never unpickling code; ``what`` names it in errors
    (e.g. ``teacher.checkpoint``).

    A ``.safetensors`` file, or a torch file read with ``weights_only=True`` holding a state dict or a
    dict that keeps one under ``model`` / ``state_dict`` (non-EMA first, e.g. ``last.pt``), as timm does.
    """
    path = Path(path)
    if not path.is_file():
        raise LearngeneError(f"{what} {path} does not exist: check the path")
    if path.suffix == ".safetensors":
        try:
            state = load_file(path)
        except (SafetensorError, OSError) as e:
            raise LearngeneError(f"{what} {path} is truncated or not a safetensors file ({first_line(e)}): "
                                 "write it again") from None
    else:
        state = unwrap_state_dict(load_torch_file(path, what))
        if state is None:
            raise LearngeneError(f"{what} {path} holds no state dict of tensors: pass a safetensors file, a state "
                                 "dict or a training state (last.pt)")
    load_fitting_state_dict(model, state, f"{what} {path} does not fit {name!r}")


def unwrap_state_dict(checkpoint) -> dict[str, torch.Tensor] | None:
    """The state dict inside a torch checkpoint (DDP's ``module.`` prefixes removed), or None if it has none."""
    if isinstance(checkpoint, dict):
        for key in STATE_DICT_KEYS:
            if isinstance(checkpoint.get(key), dict):
                checkpoint = checkpoint[key]
                break
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return None
    return {k.removeprefix("module."): v for k, v in checkpoint.items()}


def load_fitting_state_dict(model: nn.Module, state: dict[str, torch.Tensor], does_not_fit: str) -> None:
    """``model.load_state_dict(state, strict=True)``; a mismatch names its first keys and shapes."""
    mismatch = state_dict_mismatch(model.state_dict(), state)
    if mismatch:
        raise LearngeneError(f"{does_not_fit}: {mismatch}")
    model.load_state_dict(state, strict=True)


def build_student(cfg: ModelConfig, info: DatasetInfo) -> nn.Module:
    """The model to train; ``num_classes`` and ``in_chans`` default to the data's."""
    kwargs = {"num_classes": info.num_classes, "in_chans": info.in_chans, **cfg.kwargs}
    if cfg.drop_path_rate:
        kwargs["drop_path_rate"] = cfg.drop_path_rate
    model = build_model(cfg.name, pretrained=cfg.pretrained, checkpoint=cfg.checkpoint, **kwargs)
    if cfg.pos_embed_std and not (cfg.pretrained or cfg.checkpoint):
        if not isinstance(getattr(model, "pos_embed", None), torch.Tensor):
            raise LearngeneError(f"model.pos_embed_std is set but {cfg.name!r} has no pos_embed: set it to 0")
        trunc_normal_(model.pos_embed, std=cfg.pos_embed_std)
    if model.num_classes != info.num_classes:
        raise LearngeneError(f"model {cfg.name!r} predicts {model.num_classes} classes but the data has "
                             f"{info.num_classes}: set model.kwargs.num_classes={info.num_classes}")
    check_image_size(model, info, "model", cfg.name)
    return model


def build_teacher(cfg: TeacherConfig, info: DatasetInfo) -> nn.Module:
    """The frozen teacher in eval mode (timm's LeViT then averages its class and distillation heads)."""
    teacher = build_model(cfg.name, pretrained=cfg.pretrained, checkpoint=cfg.checkpoint, what="teacher",
                          **cfg.kwargs)
    if teacher.num_classes != info.num_classes:
        raise LearngeneError(f"teacher {cfg.name!r} predicts {teacher.num_classes} classes but the data has "
                             f"{info.num_classes}: use a teacher trained on this data's {info.num_classes} classes")
    check_image_size(teacher, info, "teacher", cfg.name)
    return teacher.eval().requires_grad_(False)


def check_image_size(model: nn.Module, info: DatasetInfo, what: str, name: str) -> None:
    """Refuse, before training, a model whose patch embedding takes another image size than the data's."""
    patch_embed = getattr(model, "patch_embed", None)
    size = getattr(patch_embed, "img_size", None)
    if size is None or not getattr(patch_embed, "strict_img_size", False) or getattr(model, "dynamic_img_size", False):
        return  # no fixed input size to compare (e.g. LeViT's convolutional stem, dynamic-size ViTs)
    if tuple(size) != (info.img_size, info.img_size):
        raise LearngeneError(f"{what} {name!r} takes {size[0]}x{size[1]} images but data.img_size is {info.img_size}: "
                             f"set {what}.kwargs.img_size={info.img_size} or data.img_size={size[0]}")


def teacher_fingerprint(teacher: nn.Module, cfg: TrainConfig) -> str:
    """A sha256 (hex) of everything that decides the teacher's outputs on a batch, for the teacher-logit cache.

    The weights (every state-dict tensor: name, dtype, shape, bytes), the architecture (each module's class
    and plain attributes, e.g. ``num_heads``, ``global_pool``, norm ``eps``), how it is run (``teacher.kwargs``,
    ``teacher.pretrained``, ``amp``, ``channels_last``) and the torch / timm versions. The teacher's name is
    not part of it: the same weights under another path share a cache, other weights under the same path do
    not. The data pipeline is keyed by the cache itself (its data config hash).
    """
    digest = hashlib.sha256()
    for key, tensor in teacher.state_dict().items():
        digest.update(json.dumps([key, str(tensor.dtype), list(tensor.shape)]).encode())
        digest.update(tensor_bytes(tensor))
    architecture = [(name, type(module).__qualname__, plain_attributes(module))
                    for name, module in teacher.named_modules()]
    run = {"kwargs": cfg.teacher.kwargs, "pretrained": cfg.teacher.pretrained, "amp": cfg.amp,
           "channels_last": cfg.channels_last, "torch": torch.__version__, "timm": timm.__version__}
    digest.update(json.dumps([architecture, run], sort_keys=True, default=repr).encode())
    return digest.hexdigest()


def plain_attributes(module: nn.Module) -> dict:
    """A module's public attributes that are numbers, strings or tuples of them (its hyperparameters)."""
    def plain(value) -> bool:
        if isinstance(value, (tuple, list)):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, (bool, int, float, str))

    return {k: v for k, v in vars(module).items() if not k.startswith("_") and k != "training" and plain(v)}

