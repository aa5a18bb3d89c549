"""Building the trained model and the teacher from their config nodes.

Both come from the same sources: a timm model name (``pretrained=True`` for timm's weights, e.g. the
SWS ancestry ``levit_384``), a ``local-dir:DIR`` model folder (a Des-Net from tools/expand.py or the
``model/`` folder of a finished run), and optionally a weights file (``checkpoint``) loaded strictly
on top, which may be a safetensors file, a torch state dict, or a training state such as ``last.pt``.
"""
from __future__ import annotations

import timm
import torch
from timm.layers import trunc_normal_
from timm.models import load_checkpoint
from torch import nn

from learngene.checkpoint import load_model_folder
from learngene.config import ModelConfig, TeacherConfig
from learngene.data import DatasetInfo
from learngene.errors import LearngeneError

LOCAL_DIR = "local-dir:"


def build_model(name: str, *, pretrained: bool = False, checkpoint: str = "", what: str = "model",
                **kwargs) -> nn.Module:
    """A timm model by name or ``local-dir:DIR``; ``checkpoint`` (a file) replaces any pretrained weights."""
    load_pretrained = pretrained and not checkpoint
    try:
        if name.startswith(LOCAL_DIR) and load_pretrained:
            model = load_model_folder(name[len(LOCAL_DIR):], **kwargs)
        else:
            model = timm.create_model(name, pretrained=load_pretrained, **kwargs)
    except (RuntimeError, TypeError, ValueError, OSError) as e:  # unknown name, bad kwargs, weights not available
        raise LearngeneError(f"cannot create {what} {name!r} with {kwargs}: {_first_line(e)}") from None
    if checkpoint:
        try:
            # use_ema=False: the trained weights, not an EMA copy (SWS keeps the non-EMA Aux-Net weights)
            load_checkpoint(model, checkpoint, use_ema=False, strict=True)
        except FileNotFoundError:
            raise LearngeneError(f"{what}.checkpoint {checkpoint} does not exist: check the path") from None
        except (RuntimeError, KeyError, ValueError, OSError) as e:
            raise LearngeneError(f"{what}.checkpoint {checkpoint} does not fit {name!r}: {_first_line(e)}") from None
    return model


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
    return model


def build_teacher(cfg: TeacherConfig, info: DatasetInfo) -> nn.Module:
    """The frozen teacher in eval mode (timm's LeViT then averages its class and distillation heads)."""
    teacher = build_model(cfg.name, pretrained=cfg.pretrained, checkpoint=cfg.checkpoint, what="teacher",
                          **cfg.kwargs)
    if teacher.num_classes != info.num_classes:
        raise LearngeneError(f"teacher {cfg.name!r} predicts {teacher.num_classes} classes but the data has "
                             f"{info.num_classes}: use a teacher trained on this data's {info.num_classes} classes")
    return teacher.eval().requires_grad_(False)


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
