"""Stem, head, default cfg and entry-point builder shared by the Aux-Nets, laid out like their Des-Nets.

Des-Nets are timm ``VisionTransformer(class_token=False, global_pool="avg")``: patch embed, learned
position embedding for the patch tokens only, blocks, mean over tokens, then ``fc_norm`` and
``head``. The Aux-Nets here use the same parameter names and the same order of operations (pool
*before* the final LayerNorm, eps 1e-6), so an Aux-Net and the Des-Net expanded to its own layout
compute the same function. The SWS reference code normalizes tokens before pooling instead, which
makes the expanded Des-Net a different function; we avoid that mismatch.
"""
from __future__ import annotations

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import LayerNorm, PatchEmbed, calculate_drop_path_rates, drop_path, get_device_dtype, trunc_normal_
from timm.models.vision_transformer import Block, init_weights_vit_timm
from timm.models import build_model_with_cfg, named_apply
from torch import nn
from torch.utils.checkpoint import checkpoint

from learngene.errors import LearngeneError

# DeiT-Ti/S/B widths of the ``*_aux_vit_{size}_patch16_224`` entry points.
WIDTHS = {"tiny": dict(embed_dim=192, num_heads=3), "small": dict(embed_dim=384, num_heads=6),
          "base": dict(embed_dim=768, num_heads=12)}
AUX_PREFIXES = ("sws_aux_", "tleg_aux_")


def aux_net_cfg() -> dict:
    """The pretrained cfg of every Aux-Net entry point. No released weights: they are trained with tools/train_aux.py."""
    return dict(url="", num_classes=1000, input_size=(3, 224, 224), pool_size=None, crop_pct=0.875,
                interpolation="bicubic", fixed_input_size=True, mean=IMAGENET_DEFAULT_MEAN,
                std=IMAGENET_DEFAULT_STD, first_conv="patch_embed.proj", classifier="head")


def build_aux_net(model_cls, variant: str, pretrained: bool = False, **kwargs):
    """An Aux-Net entry point: the variant's width (its ``{size}`` word) and 16-pixel patches, overridable."""
    width = WIDTHS[variant.split("_")[-3]]
    # features_only=True gives the applied layers' outputs through forward_intermediates, as for timm's ViTs.
    return build_model_with_cfg(model_cls, variant, pretrained, feature_cfg=dict(out_indices=3, feature_cls="getter"),
                                **{**width, "patch_size": 16, **kwargs})


def des_architecture(aux_name: str) -> str:
    """The timm ViT name a Des-Net of this Aux-Net is built as (its args override the details)."""
    for prefix in AUX_PREFIXES:
        if aux_name.startswith(prefix):
            return aux_name[len(prefix):]
    return aux_name


def check_global_pool(global_pool: str) -> str:
    if global_pool not in ("avg", ""):
        raise LearngeneError(f"global_pool {global_pool!r} is not supported: use 'avg' or '' (no pooling)")
    return global_pool


class PooledViT(nn.Module):
    """A ViT without cls token that averages its tokens; subclasses decide how layers are applied.

    ``num_layers`` is the number of *applied* layers, which sets the per-layer drop-path rates.
    ``global_pool`` is "avg" (the Des-Nets') or "" (no pooling: the head sees every token).
    ``learngene_kind``: the ``kind`` its learngene files record (``learngene.checkpoint.save_learngene``).
    """

    learngene_kind: str

    def __init__(self, num_layers: int, img_size=224, patch_size=16, in_chans=3, num_classes=1000, embed_dim=768,
                 num_heads=12, mlp_ratio=4.0, qkv_bias=True, drop_rate=0.0, drop_path_rate=0.0, global_pool="avg",
                 device=None, dtype=None):
        super().__init__()
        check_global_pool(global_pool)
        dd = dict(device=device, dtype=dtype)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.num_features = self.head_hidden_size = self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.qkv_bias = qkv_bias
        self.global_pool = global_pool
        self.num_prefix_tokens = 0
        self.grad_checkpointing = False
        self.patch_embed = PatchEmbed(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
                                      **dd)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches, embed_dim, **dd))
        self.pos_drop = nn.Dropout(drop_rate)
        self.layer_drop_path = calculate_drop_path_rates(drop_path_rate, num_layers)
        self.fc_norm = LayerNorm(embed_dim, **dd)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes, **dd) if num_classes > 0 else nn.Identity()
        # One entry per applied layer, read through forward_intermediates (applied layers are not modules to hook).
        self.feature_info = [dict(module=f"layer{i}", num_chs=embed_dim, reduction=self.patch_embed.feat_ratio())
                             for i in range(num_layers)]

    def make_block(self, **kwargs) -> Block:
        """A timm Block of this width; ``kwargs`` override its arguments (``drop_path``, ``device``).

        Drop path is applied per applied layer (its rate set by depth), so by default the block has none.
        """
        return Block(self.embed_dim, self.num_heads, mlp_ratio=self.mlp_ratio, qkv_bias=self.qkv_bias,
                     norm_layer=LayerNorm, **{**get_device_dtype(self), **kwargs})

    def init_weights(self) -> None:
        trunc_normal_(self.pos_embed, std=0.02)
        named_apply(init_weights_vit_timm, self)

    def apply_layer(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """:meth:`run_layer`, recomputed in the backward pass when gradient checkpointing is on."""
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(self.run_layer, x, layer, use_reentrant=False)
        return self.run_layer(x, layer)

    def block_layer(self, block: Block, x: torch.Tensor, layer: int) -> torch.Tensor:
        """``block``'s pre-norm residual attention and MLP as applied layer ``layer`` (which fixes its drop path)."""
        p = self.layer_drop_path[layer]
        x = x + drop_path(block.ls1(block.attn(block.norm1(x))), p, self.training)
        return x + drop_path(block.ls2(block.mlp(block.norm2(x))), p, self.training)

    def run_layer(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """Applied layer number ``layer`` (set by each family)."""
        raise NotImplementedError

    def forward_layers(self, x: torch.Tensor) -> torch.Tensor:
        for layer in range(len(self.layer_drop_path)):
            x = self.apply_layer(x, layer)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pos_drop(self.patch_embed(x) + self.pos_embed)
        return self.forward_layers(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == "avg":
            x = x.mean(dim=1)
        x = self.head_drop(self.fc_norm(x))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def layer_groups(self) -> list[tuple]:
        """``group_matcher`` patterns of the learngene layers, in depth order (set by each family)."""
        raise NotImplementedError

    # timm model conventions, so optimizers, EMA and training scripts treat it like any timm ViT.
    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        """Parameter groups in depth order, for timm's layer-wise lr decay (``create_optimizer_v2(layer_decay=)``)."""
        return dict(stem=r"^pos_embed|patch_embed", blocks=[*self.layer_groups(), (r"^fc_norm", (99999,))])

    def forward_intermediates(self, x: torch.Tensor, indices: int | list[int] | None = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW", intermediates_only: bool = False):
        """The tokens after applied layers ``indices`` (the last ``n`` if an int, all if None), as timm's ViT.

        Returns ``(final_features, intermediates)``, or only the intermediates; ``norm`` applies ``fc_norm``
        to each, ``output_fmt`` "NCHW" lays them out as feature maps, "NLC" keeps tokens.
        """
        if output_fmt not in ("NCHW", "NLC"):
            raise ValueError(f"output_fmt {output_fmt!r} must be NCHW or NLC")
        num_layers = len(self.layer_drop_path)
        take = self.take_indices(indices)
        batch, _, height, width = x.shape
        x = self.pos_drop(self.patch_embed(x) + self.pos_embed)
        intermediates = []
        for layer in range(max(take) + 1 if stop_early else num_layers):
            x = self.apply_layer(x, layer)
            if layer in take:
                intermediates.append(self.fc_norm(x) if norm else x)
        if output_fmt == "NCHW":
            grid_h, grid_w = self.patch_embed.dynamic_feat_size((height, width))
            intermediates = [y.reshape(batch, grid_h, grid_w, -1).permute(0, 3, 1, 2).contiguous()
                             for y in intermediates]
        return intermediates if intermediates_only else (x, intermediates)

    def take_indices(self, indices: int | list[int] | None) -> list[int]:
        """The applied layers ``indices`` names: the last ``n`` if an int, all if None, else each modulo the depth."""
        num_layers = len(self.layer_drop_path)
        if indices is None:
            return list(range(num_layers))
        if isinstance(indices, int):
            return list(range(num_layers - indices, num_layers))
        return [i % num_layers for i in indices]

    @torch.jit.ignore
    def prune_intermediate_layers(self, indices: int | list[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """From now on apply only the layers up to the last of ``indices`` (timm's contract for feature extraction);
        returns their numbers. ``prune_head`` drops ``fc_norm`` and the head; ``prune_norm`` changes nothing: the
        applied layers' tokens are already the features (``fc_norm`` follows the pooling)."""
        take = self.take_indices(indices)
        self.layer_drop_path = self.layer_drop_path[:max(take) + 1]
        self.drop_unapplied()
        if prune_head:
            self.fc_norm = nn.Identity()
            self.reset_classifier(0, "")
        return take

    def drop_unapplied(self) -> None:
        """Remove the learngene tensors no applied layer reads any more (set by each family)."""
        raise NotImplementedError

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed"}

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool is not None:
            self.global_pool = check_global_pool(global_pool)
        self.num_classes = num_classes
        dd = get_device_dtype(self)
        self.head = nn.Linear(self.embed_dim, num_classes, **dd) if num_classes > 0 else nn.Identity()
        self.head.train(self.training)

    def vit_args(self) -> dict:
        """The constructor arguments an Aux-Net shares with its Des-Nets (JSON-serializable)."""
        return dict(img_size=list(self.patch_embed.img_size), patch_size=list(self.patch_embed.patch_size),
                    in_chans=self.in_chans, num_classes=self.num_classes, embed_dim=self.embed_dim,
                    num_heads=self.num_heads, mlp_ratio=self.mlp_ratio, qkv_bias=self.qkv_bias)

    def layer_args(self) -> dict:
        """The family's own constructor arguments: how its layers are made (e.g. ``stage_sizes``)."""
        raise NotImplementedError

    def architecture_args(self) -> dict:
        """Constructor arguments that rebuild this architecture (JSON-serializable)."""
        return {**self.vit_args(), **self.layer_args()}

    def des_model_args(self, depth: int) -> dict:
        """Arguments for the timm VisionTransformer Des-Net of ``depth`` layers matching this Aux-Net."""
        return dict(self.vit_args(), depth=depth, class_token=False, global_pool="avg")
