"""timm entry points: ``timm.create_model("sws_aux_vit_small_patch16_224", ...)`` after ``import learngene``.

Widths follow DeiT-Ti/S/B. Any constructor argument can be overridden through ``create_model``
kwargs, e.g. a CPU-sized model::

    timm.create_model("sws_aux_vit_tiny_patch16_224", img_size=8, patch_size=2, in_chans=1,
                      num_classes=10, embed_dim=64, num_heads=4)
"""
from __future__ import annotations

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from learngene.models.sws_aux import SWSAuxViT

WIDTHS = {"tiny": dict(embed_dim=192, num_heads=3), "small": dict(embed_dim=384, num_heads=6),
          "base": dict(embed_dim=768, num_heads=12)}


def _cfg() -> dict:
    # No released weights: these models are trained with tools/train_aux.py.
    return dict(url="", num_classes=1000, input_size=(3, 224, 224), pool_size=None, crop_pct=0.875,
                interpolation="bicubic", fixed_input_size=True, mean=IMAGENET_DEFAULT_MEAN,
                std=IMAGENET_DEFAULT_STD, first_conv="patch_embed.proj", classifier="head")


def des_architecture(aux_name: str) -> str:
    """The timm ViT name a Des-Net of this Aux-Net is built as (its args override the details)."""
    for prefix in ("sws_aux_", "tleg_aux_"):
        if aux_name.startswith(prefix):
            return aux_name[len(prefix):]
    return aux_name


def build(model_cls, variant: str, pretrained: bool = False, **kwargs):
    width = WIDTHS[variant.split("_")[-3]]
    return build_model_with_cfg(model_cls, variant, pretrained, **{**width, "patch_size": 16, **kwargs})


default_cfgs = generate_default_cfgs({f"sws_aux_vit_{size}_patch16_224": _cfg() for size in WIDTHS})


@register_model
def sws_aux_vit_tiny_patch16_224(pretrained: bool = False, **kwargs) -> SWSAuxViT:
    return build(SWSAuxViT, "sws_aux_vit_tiny_patch16_224", pretrained, **kwargs)


@register_model
def sws_aux_vit_small_patch16_224(pretrained: bool = False, **kwargs) -> SWSAuxViT:
    return build(SWSAuxViT, "sws_aux_vit_small_patch16_224", pretrained, **kwargs)


@register_model
def sws_aux_vit_base_patch16_224(pretrained: bool = False, **kwargs) -> SWSAuxViT:
    return build(SWSAuxViT, "sws_aux_vit_base_patch16_224", pretrained, **kwargs)
