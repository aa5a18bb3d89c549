"""Pure state-dict helpers shared by every initializer: split an Aux-Net state into its layers, lay layers
out as a Des-Net's ``blocks.{i}``, count a model's layers, and load the result into a target that must fit."""
from __future__ import annotations

import re
from typing import Sequence

import torch

from learngene.checkpoint import state_dict_mismatch
from learngene.errors import LearngeneError

STAGE_KEY = re.compile(r"^stages\.(\d+)\.(.+)$")
HEAD_PREFIX = "head."
# A layer of a layer group in timm names: ViT "blocks.3.", ConvNeXt "stages.1.blocks.3.", ResNet "layer2.3.".
LAYER_KEY = re.compile(r"^(blocks|stages\.\d+\.blocks|layer\d+)\.(\d+)\.")


def split_stage_state(state: dict[str, torch.Tensor]) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    """Split an Aux-Net state dict into per-stage layer tensors and the shared rest (embeddings, fc_norm, head)."""
    stages: dict[int, dict[str, torch.Tensor]] = {}
    rest = {}
    for key, value in state.items():
        match = STAGE_KEY.match(key)
        if match:
            stages.setdefault(int(match.group(1)), {})[match.group(2)] = value
        else:
            rest[key] = value
    if not stages or sorted(stages) != list(range(len(stages))):
        raise LearngeneError("state dict has no stages.0 ... stages.M-1 layers: is it an SWS Aux-Net learngene?")
    return [stages[s] for s in range(len(stages))], rest


def expand_layers(layers: Sequence[dict[str, torch.Tensor]], rest: dict[str, torch.Tensor],
                  layer_sources: Sequence[int], include_head: bool = True) -> dict[str, torch.Tensor]:
    """Des-Net state dict: ``blocks.{i}.*`` from ``layers[layer_sources[i]]``, plus the shared rest.

    Tensors are cloned so the Des-Net owns independent weights (no sharing is left after expansion).
    With ``include_head=False`` the head is left out for the target to keep its own init (other label space).
    """
    if not layer_sources:
        raise LearngeneError("layer_sources is empty: a Des-Net needs depth >= 1")
    bad = [s for s in layer_sources if not 0 <= s < len(layers)]
    if bad:
        raise LearngeneError(f"layer_sources name stages {sorted(set(bad))} but the learngene has {len(layers)} stages")
    out = {k: v.clone() for k, v in rest.items() if include_head or not k.startswith(HEAD_PREFIX)}
    for i, source in enumerate(layer_sources):
        out.update({f"blocks.{i}.{name}": t.clone() for name, t in layers[source].items()})
    return out


def layer_counts(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """Number of layers in each layer group, e.g. ``{"blocks": 12}`` or ``{"layer1": 3, ..., "layer4": 3}``."""
    counts: dict[str, int] = {}
    for key in state:
        match = LAYER_KEY.match(key)
        if match:
            group, index = match.group(1), int(match.group(2))
            counts[group] = max(counts.get(group, 0), index + 1)
    return counts


def load_expanded(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load an expanded state into a freshly built target, checking it fits exactly.

    Every given tensor must exist in the target with the same shape; only ``head.*`` may be missing (it then keeps the
    target's own init). Anything else is a learngene of the wrong architecture: the error names the first
    missing keys, unexpected keys and shape differences.
    """
    target = model.state_dict()
    mismatch = state_dict_mismatch(target, state, may_miss=(HEAD_PREFIX,))
    if mismatch:
        raise LearngeneError(f"learngene does not fit the target model {type(model).__name__} ({mismatch}): "
                             "build the target with the architecture arguments of the learngene's Des-Nets")
    model.load_state_dict({**target, **state}, strict=True)
