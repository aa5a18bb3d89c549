"""Aux-Net models, registered as timm entry points on ``import learngene``."""
from learngene.models.pooled_vit import PooledViT
from learngene.models.sws_aux import DEFAULT_STAGE_SIZES, SWSAuxViT, check_stage_sizes
from learngene.models import registry  # noqa: F401  (registers the timm entry points)
from learngene.models.tleg_aux import TLEGAuxViT  # noqa: F401  (registers the tleg_aux_* entry points)

__all__ = ["PooledViT", "SWSAuxViT", "DEFAULT_STAGE_SIZES", "check_stage_sizes"]
