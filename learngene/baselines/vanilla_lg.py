"""Vanilla-LG (Wang et al., AAAI 2022) for ViTs: the top blocks of a trained ancestry on a fresh model.

The learngene is the last ``num_layers`` (default 3) blocks of a trained ancestry ViT of the same
width. They become the top ``num_layers`` blocks of the Des-Net; its lower blocks, patch embed and pos
embed keep the Des-Net's own fresh init. ``fc_norm`` and ``head`` come from the ancestry where the
shapes match (same label space), else they stay fresh too.
"""
from __future__ import annotations

import torch

from learngene.errors import LearngeneError
from learngene.expand.state_dict import layer_counts

ANCESTRY_TOP_PREFIXES = ("fc_norm.", "head.")


def expand_vanilla_lg(ancestry_state: dict[str, torch.Tensor], target_state: dict[str, torch.Tensor],
                      num_layers: int = 3) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``target_state`` (the Des-Net's own init) with its top blocks replaced by the ancestry's last blocks.

    Also returns the keys taken from the ancestry (the learngene), in order.
    """
    ancestry_depth = layer_counts(ancestry_state).get("blocks", 0)
    target_depth = layer_counts(target_state).get("blocks", 0)
    if not isinstance(num_layers, int) or not 1 <= num_layers <= min(ancestry_depth, target_depth):
        raise LearngeneError(f"num_layers {num_layers!r} must be between 1 and the depth of both the ancestry "
                             f"({ancestry_depth}) and the Des-Net ({target_depth})")
    out = {key: value.clone() for key, value in target_state.items()}
    copied = []
    offset = ancestry_depth - target_depth  # Des-Net block i <- ancestry block i + offset
    for i in range(target_depth - num_layers, target_depth):
        prefix = f"blocks.{i}."
        for key in (k for k in target_state if k.startswith(prefix)):
            source_key = f"blocks.{i + offset}.{key[len(prefix):]}"
            source = ancestry_state.get(source_key)
            if source is None or source.shape != target_state[key].shape:
                raise LearngeneError(f"ancestry has no {source_key} shaped {tuple(target_state[key].shape)}: "
                                     "Vanilla-LG needs a trained ViT of the Des-Net's width and block layout")
            out[key] = source.clone()
            copied.append(key)
    for key in (k for k in target_state if k.startswith(ANCESTRY_TOP_PREFIXES)):
        if key in ancestry_state and ancestry_state[key].shape == target_state[key].shape:
            out[key] = ancestry_state[key].clone()  # else another label space: the head stays fresh
            copied.append(key)
    return out, copied
