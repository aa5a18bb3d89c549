"""The SWS Aux-Net: a ViT whose applied layers are grouped into stages sharing one block each."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from learngene.errors import LearngeneError
from learngene.models.pooled_vit import PooledViT

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

    def __init__(self, stage_sizes: Sequence[int] = DEFAULT_STAGE_SIZES, **kwargs):
        sizes = check_stage_sizes(stage_sizes)
        super().__init__(num_layers=sum(sizes), **kwargs)
        self.stage_sizes = sizes
        self.layer_stages = [s for s, n in enumerate(sizes) for _ in range(n)]
        self.stages = nn.ModuleList(self.make_block() for _ in sizes)
        self.init_weights()

    def forward_layers(self, x: torch.Tensor) -> torch.Tensor:
        for layer, stage in enumerate(self.layer_stages):
            x = self.apply_layer(self.stages[stage], x, layer)
        return x

    def architecture_args(self) -> dict:
        return dict(super().architecture_args(), stage_sizes=list(self.stage_sizes))

    def des_model_args(self, depth: int) -> dict:
        args = super().des_model_args(depth)
        del args["stage_sizes"]
        return args
