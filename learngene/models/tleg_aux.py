"""The TLEG Aux-Net (Xia et al., AAAI 2024): every applied layer is a linear function of its depth.

Layer ``l`` of ``L`` applied layers uses the tensors ``W_l = B + (l / L) * A`` (l = 0 .. L-1) for qkv,
proj, fc1, fc2 (weights and biases) and norm1, norm2. ``B`` and ``A`` are two timm ``Block``s named
``base`` and ``slope``; their tensors are the learngene. A Des-Net of any depth ``D`` expands it as
``W_i = B + (i / D) * A`` (:func:`learngene.baselines.tleg.expand_tleg`).
Its timm entry points are ``tleg_aux_vit_{tiny,small,base}_patch16_224``.

Init as in the reference code: linear weights of both blocks trunc_normal(0.02), biases 0; ``base``
norms weight 1, bias 0; ``slope`` norms all zeros (every layer starts with the same norms).
"""
from __future__ import annotations

import torch
from timm.models import generate_default_cfgs, register_model
from torch import nn

from learngene.models.pooled_vit import WIDTHS, PooledViT, aux_net_cfg, build_aux_net


class LayerView:
    """A block's sub-modules run with one layer's tensors: ``view.attn(x)`` calls ``template.attn`` through
    ``torch.func.functional_call``, so :meth:`PooledViT._residual_layer` applies it like a real block."""

    def __init__(self, template: nn.Module, tensors: dict[str, torch.Tensor]):
        self.template = template
        self.tensors = tensors

    def __getattr__(self, name: str):
        module = getattr(self.template, name)
        prefix = f"{name}."
        tensors = {k[len(prefix):]: v for k, v in self.tensors.items() if k.startswith(prefix)}
        return lambda x: torch.func.functional_call(module, tensors, (x,))


class TLEGAuxViT(PooledViT):
    """``num_layers`` applied layers whose tensors interpolate linearly between ``base`` and ``slope``."""

    def __init__(self, num_layers: int = 12, **kwargs):
        super().__init__(num_layers=num_layers, **kwargs)
        self.num_layers = num_layers
        self.base = self.make_block()
        self.slope = self.make_block()
        self.init_weights()
        for norm in (self.slope.norm1, self.slope.norm2):
            nn.init.zeros_(norm.weight)
            nn.init.zeros_(norm.bias)

    def layer_tensors(self, layer: int) -> dict[str, torch.Tensor]:
        """``B + (layer / num_layers) * A`` for every tensor of the block."""
        slope = dict(self.slope.named_parameters())
        return {name: b + (layer / self.num_layers) * slope[name] for name, b in self.base.named_parameters()}

    def run_layer(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        return self.apply_layer(LayerView(self.base, self.layer_tensors(layer)), x, layer)

    def layer_groups(self) -> list[tuple]:
        return [(r"^(?:base|slope)\.", (0,))]  # every applied layer is made of both: one layer group

    def architecture_args(self) -> dict:
        return dict(super().architecture_args(), num_layers=self.num_layers)

    def des_model_args(self, depth: int) -> dict:
        args = super().des_model_args(depth)
        del args["num_layers"]
        return args


default_cfgs = generate_default_cfgs({f"tleg_aux_vit_{size}_patch16_224": aux_net_cfg() for size in WIDTHS})


@register_model
def tleg_aux_vit_tiny_patch16_224(pretrained: bool = False, **kwargs) -> TLEGAuxViT:
    return build_aux_net(TLEGAuxViT, "tleg_aux_vit_tiny_patch16_224", pretrained, **kwargs)


@register_model
def tleg_aux_vit_small_patch16_224(pretrained: bool = False, **kwargs) -> TLEGAuxViT:
    return build_aux_net(TLEGAuxViT, "tleg_aux_vit_small_patch16_224", pretrained, **kwargs)


@register_model
def tleg_aux_vit_base_patch16_224(pretrained: bool = False, **kwargs) -> TLEGAuxViT:
    return build_aux_net(TLEGAuxViT, "tleg_aux_vit_base_patch16_224", pretrained, **kwargs)
