"""Aux-Net model families, one file each (blocks, model class, cfgs, timm entry points registered on
``import learngene.models``): ``sws_aux`` (SWS) and ``tleg_aux`` (TLEG), on the shared stem and head of ``pooled_vit``."""
from learngene.models.pooled_vit import PooledViT, des_architecture
from learngene.models.sws_aux import DEFAULT_STAGE_SIZES, SWSAuxViT, check_stage_sizes
from learngene.models.tleg_aux import TLEGAuxViT

__all__ = ["PooledViT", "SWSAuxViT", "TLEGAuxViT", "DEFAULT_STAGE_SIZES", "check_stage_sizes", "des_architecture"]
