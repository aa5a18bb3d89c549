"""Simple-LG (SWS paper, Table 3): a normally trained shallow ViT expanded as if each block were a stage.

Block ``i`` of the source plays SWS stage ``i``; the Des-Net layers come from the same cyclic plan as
SWS (default order front-mid-last), e.g. 5 blocks to depth 12: ``[0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4]``.
"""
from __future__ import annotations

import re

import torch

from learngene.errors import LearngeneError
from learngene.expand import ExpansionPlan, expand_sws, layer_counts, make_plan

BLOCK_PREFIX = re.compile(r"^blocks\.")


def expand_simple_lg(source_state: dict[str, torch.Tensor], depth: int, order=None,
                     include_head: bool = True) -> tuple[dict[str, torch.Tensor], ExpansionPlan]:
    """Des-Net state dict of ``depth`` blocks from a timm ViT's ``blocks.*``, and the plan that placed them."""
    num_blocks = layer_counts(source_state).get("blocks", 0)
    if not num_blocks:
        raise LearngeneError("source has no blocks.* layers: Simple-LG expands a trained timm ViT (e.g. 5 layers)")
    plan = make_plan(depth, [1] * num_blocks, "cyclic", order)
    as_stages = {BLOCK_PREFIX.sub("stages.", key): value for key, value in source_state.items()}
    return expand_sws(as_stages, plan.layer_sources, include_head), plan
