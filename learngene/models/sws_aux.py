"""The SWS Aux-Net: a ViT whose applied layers are grouped into stages sharing one block each.

Its timm entry points ``sws_aux_vit_{tiny,small,base}_patch16_224`` (DeiT-Ti/S/B widths) are registered on
``import learngene.models``; any constructor argument can be overridden, e.g. a CPU-sized model::

    timm.create_model("sws_aux_vit_tiny_patch16_224", img_size=8, patch_size=2, in_chans=1,
                      num_classes=10, embed_dim=64, num_heads=4)
"""
from __future__ import annotations

from typing import Sequence

import torch
from timm.models import generate_default_cfgs, register_model
from torch import nn

from learngene.errors import LearngeneError
from learngene.models.pooled_vit import WIDTHS, PooledViT, aux_net_cfg, build_aux_net

DEFAULT_STAGE_SIZES = (3, 3, 4, 3, 3)


def check_stage_sizes(stage_sizes: Sequence[int]) -> tuple[int, ...]:
    sizes = tuple(stage_sizes)
    if not sizes:
        raise LearngeneError("stage_sizes is empty: give at least one stage, e.g. stage_sizes=[3,3,4,3,3]")
    if any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in sizes):
        raise LearngeneError(f"stage_sizes {list(sizes)} must all be positive integers, e.g. [3,3,4,3,3]")
    return sizes


class SWSAuxViT(PooledViT):
    """Stage-wise weight sharing: ``stages[s]`` is one timm ``Block`` applied ``stage_sizes[s]`` times.

    Each block is registered once (``stages.{s}.attn.qkv.weight``, ...), so the state dict holds one
    copy of every learngene layer and autograd sums the gradients of its applications.
    """

    learngene_kind = "sws"

    def __init__(self, stage_sizes: Sequence[int] = DEFAULT_STAGE_SIZES, **kwargs):
        sizes = check_stage_sizes(stage_sizes)
        super().__init__(num_layers=sum(sizes), **kwargs)
        self.stage_sizes = sizes
        self.layer_stages = [s for s, n in enumerate(sizes) for _ in range(n)]
        self.stages = nn.ModuleList(self.make_block() for _ in sizes)
        self.init_weights()

    def run_layer(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        return self.block_layer(self.stages[self.layer_stages[layer]], x, layer)

    def drop_unapplied(self) -> None:
        applied = set(self.layer_stages[:len(self.layer_drop_path)])
        for s in range(len(self.stages)):
            if s not in applied:
                self.stages[s] = nn.Identity()

    def layer_groups(self) -> list[tuple]:
        return [(r"^stages\.(\d+)", None)]  # stage s is layer group s: stages are applied in order

    def layer_args(self) -> dict:
        return {"stage_sizes": list(self.stage_sizes)}


default_cfgs = generate_default_cfgs({f"sws_aux_vit_{size}_patch16_224": aux_net_cfg() for size in WIDTHS})


@register_model
def sws_aux_vit_tiny_patch16_224(pretrained: bool = False, **kwargs) -> SWSAuxViT:
    """SWS Aux-Net at DeiT-Ti width (192 wide, 3 heads); stages 3, 3, 4, 3, 3 unless ``stage_sizes`` says."""
    return build_aux_net(SWSAuxViT, "sws_aux_vit_tiny_patch16_224", pretrained, **kwargs)


@register_model
def sws_aux_vit_small_patch16_224(pretrained: bool = False, **kwargs) -> SWSAuxViT:
    """SWS Aux-Net at DeiT-S width (384 wide, 6 heads); stages 3, 3, 4, 3, 3 unless ``stage_sizes`` says."""
    return build_aux_net(SWSAuxViT, "sws_aux_vit_small_patch16_224", pretrained, **kwargs)


@register_model
def sws_aux_vit_base_patch16_224(pretrained: bool = False, **kwargs) -> SWSAuxViT:
    """SWS Aux-Net at DeiT-B width (768 wide, 12 heads); stages 3, 3, 4, 3, 3 unless ``stage_sizes`` says."""
    return build_aux_net(SWSAuxViT, "sws_aux_vit_base_patch16_224", pretrained, **kwargs)
