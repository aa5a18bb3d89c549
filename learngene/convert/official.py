"""Aux-Net checkpoints of the official SWS and TLEG code -> this project's learngenes, as state-dict functions.

The official code (AlphaXia/SWS ``SWS_vit.py`` / ``aux_models.py``; AlphaXia/TLEG ``TLEG_vit.py`` /
``modules_with_LE.py``) trains DeiT-style and saves ``checkpoint.pth`` = ``{'model': state_dict, 'model_ema',
'optimizer', 'lr_scheduler', 'epoch', 'scaler', 'args'}``. Its Aux-Net keeps one ``blocks.block`` whose
sub-layers hold one module per stage in ``instances``; the tensors have timm's shapes and layouts (fused qkv
as ``[3 * dim, dim]`` ordered q, k, v then heads), so converting is renaming, value for value:

* :func:`sws_key_table` maps ``blocks.block.<layer>.instances.{s}.<weight|bias>`` to ``stages.{s}.<layer>.*``;
* :func:`tleg_key_table` maps ``blocks.block.<layer>.instances.0.<weight|bias>_base`` to ``base.<layer>.*``
  and ``..._ilayer`` to ``slope.<layer>.*`` (official ``W_l = base + (l / L) * ilayer``, ours ``B + (l / L) * A``);
* both map the stem and head as they are and the final ``norm`` to ``fc_norm``.

What the renaming does not carry over is recorded in the learngene's metadata (``extra``) and documented in
docs/sharing.md:

* LayerNorm eps: the official Aux-Nets use PyTorch's 1e-5 everywhere, ours and every timm Des-Net 1e-6;
  weights are kept as they are, so each LayerNorm divides by ``sqrt(var + 1e-6)`` instead of
  ``sqrt(var + 1e-5)`` (a relative change below ``4.5e-6 / var``).
* Pooling: the official Aux-Net normalizes every token and then averages; ours (and timm's Des-Nets, and the
  Des-Nets of the official code) average and then apply ``fc_norm``. The converted Aux-Net and its Des-Nets
  compute mean-then-LN, so the converted Aux-Net's accuracy can differ from the official one's.
* Head count: it splits the same tensors differently and is not stored in a checkpoint, so it is an argument.
  The official default is 12 heads for SWS (Aux-S: 12 heads of 32 dims, while the official Des-S uses 6 of 64)
  and DeiT's 64-dim heads for TLEG (Aux-S 6, Aux-B 12).
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Callable

import torch

from learngene.checkpoint import Learngene, file_sha256, save_learngene
from learngene.errors import LearngeneError
from learngene.models.sws_aux import DEFAULT_STAGE_SIZES, check_stage_sizes

OFFICIAL_LAYER_NORM_EPS = 1e-5
OFFICIAL_SWS_NUM_HEADS = 12
DEIT_HEAD_DIM = 64  # official TLEG Aux-Nets are DeiT widths: tiny 3, small 6, base 12 heads
OFFICIAL_TLEG_NUM_LAYERS = 12

# The sub-layers of one transformer block, as timm names them (``norm1``, ``attn.qkv``, ...).
BLOCK_LAYERS = ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")

STEM_KEY_TABLE = {
    "patch_embed.proj.weight": "patch_embed.proj.weight",
    "patch_embed.proj.bias": "patch_embed.proj.bias",
    "pos_embed": "pos_embed",
    "norm.weight": "fc_norm.weight",
    "norm.bias": "fc_norm.bias",
    "head.weight": "head.weight",
    "head.bias": "head.bias",
}


def sws_key_table(num_stages: int) -> dict[str, str]:
    """Official SWS key -> our SWSAuxViT key, for an Aux-Net of ``num_stages`` stages."""
    table = dict(STEM_KEY_TABLE)
    for stage in range(num_stages):
        for layer in BLOCK_LAYERS:
            for param in ("weight", "bias"):
                table[f"blocks.block.{layer}.instances.{stage}.{param}"] = f"stages.{stage}.{layer}.{param}"
    return table


def tleg_key_table() -> dict[str, str]:
    """Official TLEG key -> our TLEGAuxViT key (one linearly expanded block: ``_base`` -> B, ``_ilayer`` -> A)."""
    table = dict(STEM_KEY_TABLE)
    for layer in BLOCK_LAYERS:
        for param in ("weight", "bias"):
            table[f"blocks.block.{layer}.instances.0.{param}_base"] = f"base.{layer}.{param}"
            table[f"blocks.block.{layer}.instances.0.{param}_ilayer"] = f"slope.{layer}.{param}"
    return table


def rename(state: dict[str, torch.Tensor], table: dict[str, str], what: str) -> dict[str, torch.Tensor]:
    """``state`` under the new names of ``table``; every table key must be there and nothing else."""
    missing = [k for k in table if k not in state]
    unexpected = [k for k in state if k not in table]
    if missing:
        raise LearngeneError(f"{what} misses {len(missing)} key(s), e.g. {', '.join(missing[:3])}: pass the "
                             "checkpoint.pth the official code saved for its Aux-Net")
    if unexpected:
        raise LearngeneError(f"{what} has key(s) no official Aux-Net has, e.g. {', '.join(unexpected[:3])}: "
                             "pass the official Aux-Net's checkpoint, not a Des-Net's or another model's")
    return {table[k]: v for k, v in state.items()}


def architecture_args(state: dict[str, torch.Tensor], num_heads: int, what: str) -> dict:
    """Our Aux-Net constructor arguments read from the official stem, head and first block."""
    embed_dim, in_chans, patch_h, patch_w = state["patch_embed.proj.weight"].shape
    num_patches = state["pos_embed"].shape[1]
    grid = math.isqrt(num_patches)
    if grid * grid != num_patches or patch_h != patch_w:
        raise LearngeneError(f"{what} has {num_patches} patches of {patch_h}x{patch_w}: only square images of "
                             "square patches are supported")
    if num_heads < 1 or embed_dim % num_heads:
        raise LearngeneError(f"{what} has width {embed_dim}, which {num_heads} heads do not divide: pass "
                             "--num-heads with a divisor of the width")
    fc1 = next(v for k, v in state.items() if k.startswith("blocks.block.mlp.fc1.") and v.dim() == 2)
    return dict(img_size=[grid * patch_h] * 2, patch_size=[patch_h, patch_w], in_chans=in_chans,
                num_classes=state["head.weight"].shape[0], embed_dim=embed_dim, num_heads=num_heads,
                mlp_ratio=fc1.shape[0] / embed_dim, qkv_bias=True)


def aux_model_name(kind: str, embed_dim: int) -> str:
    # The registry's width names; model_args set every size, so other widths use the tiny entry point.
    size = {192: "tiny", 384: "small", 768: "base"}.get(embed_dim, "tiny")
    return f"{kind}_aux_vit_{size}_patch16_224"


def conversion_record(source: str, num_heads: int, official_num_heads: int | str) -> dict:
    return {
        "converted_from": source,
        "num_heads": num_heads,
        "official_num_heads": official_num_heads,
        "official_layer_norm_eps": OFFICIAL_LAYER_NORM_EPS,
        "layer_norm_eps": 1e-6,
        "official_pooling": "layer norm on every token, then mean",
        "pooling": "mean over tokens, then fc_norm",
    }


def convert_sws_official(state: dict[str, torch.Tensor], stage_sizes=DEFAULT_STAGE_SIZES,
                         num_heads: int = OFFICIAL_SWS_NUM_HEADS) -> Learngene:
    """An official SWS Aux-Net state dict as our SWS learngene (``stage_sizes``: the official schedule)."""
    sizes = check_stage_sizes(stage_sizes)
    what = "the SWS checkpoint"
    if "blocks.block.attn.qkv.instances.0.weight" not in state:
        raise LearngeneError(f"{what} has no blocks.block.attn.qkv.instances.0.weight: it is not an official SWS "
                             "Aux-Net (for TLEG pass --from tleg-official)")
    num_stages = len({k.split(".")[5] for k in state if k.startswith("blocks.block.attn.qkv.instances.")})
    if num_stages != len(sizes):
        raise LearngeneError(f"{what} has {num_stages} stages but --stage-sizes {','.join(map(str, sizes))} gives "
                             f"{len(sizes)}: pass the schedule it was trained with")
    renamed = rename(state, sws_key_table(num_stages), what)
    args = dict(architecture_args(state, num_heads, what), stage_sizes=list(sizes))
    extra = conversion_record("sws-official", num_heads, OFFICIAL_SWS_NUM_HEADS)
    return Learngene(renamed, aux_model_name("sws", args["embed_dim"]), args, "sws", extra)


def convert_tleg_official(state: dict[str, torch.Tensor], num_layers: int = OFFICIAL_TLEG_NUM_LAYERS,
                          num_heads: int | None = None) -> Learngene:
    """An official TLEG Aux-Net state dict as our TLEG learngene; ``num_heads`` defaults to DeiT's width / 64."""
    what = "the TLEG checkpoint"
    if "blocks.block.attn.qkv.instances.0.weight_base" not in state:
        raise LearngeneError(f"{what} has no blocks.block.attn.qkv.instances.0.weight_base: it is not an official "
                             "TLEG Aux-Net (for SWS pass --from sws-official)")
    if num_layers < 1:
        raise LearngeneError(f"--num-layers {num_layers} must be >= 1 (the official Aux-Nets apply 12)")
    renamed = rename(state, tleg_key_table(), what)
    if num_heads is None:
        embed_dim = state["patch_embed.proj.weight"].shape[0]
        if embed_dim % DEIT_HEAD_DIM:
            raise LearngeneError(f"{what} has width {embed_dim}, not a DeiT width with {DEIT_HEAD_DIM}-dim heads: "
                                 "pass --num-heads")
        num_heads = embed_dim // DEIT_HEAD_DIM
    args = dict(architecture_args(state, num_heads, what), num_layers=num_layers)
    extra = conversion_record("tleg-official", num_heads, f"width / {DEIT_HEAD_DIM} (DeiT)")
    return Learngene(renamed, aux_model_name("tleg", args["embed_dim"]), args, "tleg", extra)


def load_official_checkpoint(path: str | Path, state_key: str = "model") -> tuple[dict[str, torch.Tensor], dict]:
    """The Aux-Net state dict of an official ``checkpoint.pth`` and a record of where it came from.

    Read with ``torch.load(weights_only=True)``; the checkpoint's ``args`` (an ``argparse.Namespace`` of plain
    values: the training recipe) is the one class allowed beyond tensors and containers. A file that is a bare
    state dict is accepted as well.
    """
    path = Path(path)
    if not path.is_file():
        raise LearngeneError(f"checkpoint {path} does not exist: check the path")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated, foreign or unsafe files
        raise LearngeneError(f"cannot read {path} ({type(e).__name__}): it is not a torch file, or it holds Python "
                             "objects besides tensors and plain data; pass the official checkpoint.pth, or, if you "
                             "trust the file, torch.save its ['model'] state dict alone and pass that") from None
    if not isinstance(checkpoint, dict):
        raise LearngeneError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint dict: pass the "
                             "checkpoint.pth written by the official code")
    if state_key in checkpoint:
        state = checkpoint[state_key]
    elif checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        state, state_key = checkpoint, ""  # a bare state dict
    else:
        state = None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise LearngeneError(f"{path} has no state dict under {state_key!r}: pass the official checkpoint.pth "
                             "(or a bare state dict) and --state model or model_ema")
    record = {"file": path.name, "sha256": file_sha256(path), "state": state_key}
    if isinstance(checkpoint.get("epoch"), int):
        record["epoch"] = checkpoint["epoch"]
    if isinstance(checkpoint.get("args"), argparse.Namespace):
        # The official training recipe; json round trip keeps it plain data for the learngene metadata.
        record["args"] = json.loads(json.dumps(vars(checkpoint["args"]), default=str))
    return state, record


CONVERTERS: dict[str, Callable[..., Learngene]] = {
    "sws-official": convert_sws_official,
    "tleg-official": convert_tleg_official,
}


def convert_checkpoint(path: str | Path, source: str, out: str | Path, state_key: str = "model",
                       **options) -> Learngene:
    """Convert the official checkpoint ``path`` with ``CONVERTERS[source]`` and write the learngene file ``out``.

    The result is loaded strictly into our Aux-Net before it is written; ``extra`` records the conversion and the
    official checkpoint (file, sha256, epoch, training arguments; its teacher as the learngene's ``teacher``).
    """
    out = Path(out)
    if out.exists():
        raise LearngeneError(f"output {out} already exists: choose a new --out or remove it")
    state, record = load_official_checkpoint(path, state_key)
    learngene = CONVERTERS[source](state, **options)
    learngene.extra["official_checkpoint"] = record
    official_args = record.get("args", {})
    if official_args.get("distillation_type", "none") != "none":
        learngene.extra["teacher"] = official_args.get("teacher_model")
    learngene.path = str(path)
    aux = learngene.build_aux(advice="pass an unmodified official Aux-Net checkpoint")
    save_learngene(aux, out, kind=learngene.kind, extra=learngene.extra)
    return learngene
