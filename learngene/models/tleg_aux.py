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
import torch.nn.functional as F
from timm.layers import drop_path
from timm.models import generate_default_cfgs
from torch import nn

from learngene.models.pooled_vit import WIDTHS, PooledViT, aux_net_cfg, register_aux_nets


def interpolate(base: nn.Module, slope: nn.Module, t: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight and bias of a linear or norm layer at depth fraction ``t``: ``B + t * A`` for each."""
    return base.weight + t * slope.weight, base.bias + t * slope.bias


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

    def run_layer(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """timm's ``Block.forward`` written out, every tensor interpolated to depth fraction ``layer / num_layers``."""
        t = layer / self.num_layers
        base, slope = self.base, self.slope
        p = self.layer_drop_path[layer]
        y = F.layer_norm(x, base.norm1.normalized_shape, *interpolate(base.norm1, slope.norm1, t), base.norm1.eps)
        x = x + drop_path(self.attention(y, t), p, self.training)
        y = F.layer_norm(x, base.norm2.normalized_shape, *interpolate(base.norm2, slope.norm2, t), base.norm2.eps)
        y = F.linear(F.gelu(F.linear(y, *interpolate(base.mlp.fc1, slope.mlp.fc1, t))),
                     *interpolate(base.mlp.fc2, slope.mlp.fc2, t))
        return x + drop_path(y, p, self.training)

    def attention(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """timm's ``Attention.forward`` (no dropout: the blocks have none) with interpolated qkv and proj."""
        attn = self.base.attn
        batch, tokens, dim = x.shape
        qkv = F.linear(x, *interpolate(attn.qkv, self.slope.attn.qkv, t))
        q, k, v = qkv.reshape(batch, tokens, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if attn.fused_attn:
            x = F.scaled_dot_product_attention(q, k, v)
        else:
            x = (q * attn.scale @ k.transpose(-2, -1)).softmax(dim=-1) @ v
        x = x.transpose(1, 2).reshape(batch, tokens, dim)
        return F.linear(x, *interpolate(attn.proj, self.slope.attn.proj, t))

    def layer_groups(self) -> list[tuple]:
        return [(r"^(?:base|slope)\.", (0,))]  # every applied layer is made of both: one layer group

    def layer_args(self) -> dict:
        return {"num_layers": self.num_layers}


default_cfgs = generate_default_cfgs({f"tleg_aux_vit_{size}_patch16_224": aux_net_cfg() for size in WIDTHS})

# timm entry points tleg_aux_vit_{tiny,small,base}_patch16_224 (DeiT-Ti/S/B widths), also names of this module
globals().update(register_aux_nets(TLEGAuxViT, "tleg_aux", __name__))
