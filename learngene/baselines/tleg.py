"""TLEG expansion: a Des-Net of depth ``D`` gets ``W_i = B + (i / D) * A`` in block ``i`` (i = 0 .. D-1).

``B`` and ``A`` are the ``base.*`` and ``slope.*`` tensors of a :class:`learngene.models.TLEGAuxViT`;
the coefficient is ``i / D`` (not ``i / (D - 1)``), as in the reference code, so a Des-Net of the
Aux-Net's own depth is the Aux-Net's function.
"""
from __future__ import annotations

import torch

from learngene.errors import LearngeneError
from learngene.expand.plan import check_depth
from learngene.expand.state_dict import expand_layers


def expand_tleg(learngene_state: dict[str, torch.Tensor], depth: int,
                include_head: bool = True) -> dict[str, torch.Tensor]:
    """State dict for timm ``VisionTransformer(class_token=False, global_pool="avg", depth=depth)``."""
    check_depth(depth)
    parts: dict[str, dict[str, torch.Tensor]] = {"base": {}, "slope": {}}
    rest = {}
    for key, value in learngene_state.items():
        prefix, _, name = key.partition(".")
        if prefix in parts:
            parts[prefix][name] = value
        else:
            rest[key] = value
    base, slope = parts["base"], parts["slope"]
    if not base or base.keys() != slope.keys():
        raise LearngeneError("state dict has no matching base.* and slope.* layers: is it a TLEG Aux-Net learngene "
                             "(model tleg_aux_vit_*)?")
    layers = [{name: b + (i / depth) * slope[name] for name, b in base.items()} for i in range(depth)]
    return expand_layers(layers, rest, list(range(depth)), include_head)
