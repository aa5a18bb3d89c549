"""The TLEG Aux-Net (Xia et al., AAAI 2024): every applied layer is a linear function of its depth.

Layer ``l`` of ``L`` applied layers is timm's ``Block`` with the tensors ``W_l = B + (l / L) * A``
(l = 0 .. L-1) for every one of its tensors (qkv, proj, fc1, fc2, norm1, norm2). ``B`` and ``A`` are two
timm ``Block``s named ``base`` and ``slope``; their tensors are the learngene. A Des-Net of any depth
``D`` expands it as ``W_i = B + (i / D) * A`` (:func:`learngene.baselines.tleg.expand_tleg`).
Its timm entry points are ``tleg_aux_vit_{tiny,small,base}_patch16_224``.

Init as in the reference code: linear weights of both blocks trunc_normal(0.02), biases 0; ``base``
norms weight 1, bias 0; ``slope`` norms all zeros (every layer starts with the same norms).
"""
from __future__ import annotations

from operator import attrgetter

import torch
from timm.layers import register_notrace_module
from timm.models import generate_default_cfgs, register_model
from timm.models.vision_transformer import Block
from torch import nn

from learngene.models.pooled_vit import WIDTHS, PooledViT, aux_net_cfg, build_aux_net


@register_notrace_module  # torch.fx (timm's feature extraction) calls it whole: its Block has no tensors to trace
class InterpolatedLayer(nn.Module):
    """An applied layer: timm's ``block`` (its drop path the layer's) run on the tensors it is given, ``B + t A``,
    through ``torch.func.functional_call``. The block's parameters are set to None: it holds no state."""

    def __init__(self, block: Block):
        super().__init__()
        self.block = block
        for module in block.modules():
            for name, _ in list(module.named_parameters(recurse=False)):
                module.register_parameter(name, None)

    def forward(self, x: torch.Tensor, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.func.functional_call(self.block, tensors, (x,))


class TLEGAuxViT(PooledViT):
    """``num_layers`` applied layers whose tensors interpolate linearly between ``base`` and ``slope``."""

    learngene_kind = "tleg"

    def __init__(self, num_layers: int = 12, **kwargs):
        super().__init__(num_layers=num_layers, **kwargs)
        self.num_layers = num_layers
        self.base = self.make_block()
        self.slope = self.make_block()
        self.init_weights()
        for norm in (self.slope.norm1, self.slope.norm2):
            nn.init.zeros_(norm.weight)
            nn.init.zeros_(norm.bias)
        self.layers = nn.ModuleList(InterpolatedLayer(self.make_block(drop_path=p, device="meta"))
                                    for p in self.layer_drop_path)

    def run_layer(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        t = layer / self.num_layers
        # Each tensor read as a module attribute, which torch.fx records as the parameter (named_parameters() hands
        # it the values: a trace without base and slope, whose GraphModule gets no gradients to them).
        tensors = {name: attrgetter(name)(self.base) + t * attrgetter(name)(self.slope)
                   for name, _ in self.base.named_parameters()}
        return self.layers[layer](x, tensors)

    def drop_unapplied(self) -> None:
        self.layers = self.layers[:len(self.layer_drop_path)]  # base and slope make every layer: both stay

    def layer_groups(self) -> list[tuple]:
        return [(r"^(?:base|slope)\.", (0,))]  # every applied layer is made of both: one layer group

    def layer_args(self) -> dict:
        return {"num_layers": self.num_layers}


default_cfgs = generate_default_cfgs({f"tleg_aux_vit_{size}_patch16_224": aux_net_cfg() for size in WIDTHS})


@register_model
def tleg_aux_vit_tiny_patch16_224(pretrained: bool = False, **kwargs) -> TLEGAuxViT:  # DeiT-Ti width
    return build_aux_net(TLEGAuxViT, "tleg_aux_vit_tiny_patch16_224", pretrained, **kwargs)


@register_model
def tleg_aux_vit_small_patch16_224(pretrained: bool = False, **kwargs) -> TLEGAuxViT:  # DeiT-S width
    return build_aux_net(TLEGAuxViT, "tleg_aux_vit_small_patch16_224", pretrained, **kwargs)


@register_model
def tleg_aux_vit_base_patch16_224(pretrained: bool = False, **kwargs) -> TLEGAuxViT:  # DeiT-B width
    return build_aux_net(TLEGAuxViT, "tleg_aux_vit_base_patch16_224", pretrained, **kwargs)
