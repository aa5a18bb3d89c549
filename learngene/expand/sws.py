"""SWS expansion: copy each stage's learngene layer into the Des-Net layers that the plan assigns to it."""
from __future__ import annotations

from typing import Sequence

import torch

from learngene.expand.state_dict import expand_layers, split_stage_state


def expand_sws(learngene_state: dict[str, torch.Tensor], layer_sources: Sequence[int],
               include_head: bool = True) -> dict[str, torch.Tensor]:
    """State dict for timm ``VisionTransformer(class_token=False, global_pool="avg", depth=len(layer_sources))``.

    Patch embed, pos embed, ``fc_norm`` and (optionally) ``head`` are copied from the Aux-Net, whose parameter names
    already match timm's; block i copies every tensor of stage ``layer_sources[i]``.
    """
    layers, rest = split_stage_state(learngene_state)
    return expand_layers(layers, rest, layer_sources, include_head)
