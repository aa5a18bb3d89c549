"""Data for training and evaluation: ``DataConfig`` -> datasets, loaders and timm Mixup."""
from learngene.data.factory import DataConfig, DatasetInfo, build_datasets, build_loaders, build_mixup

__all__ = ["DataConfig", "DatasetInfo", "build_datasets", "build_loaders", "build_mixup"]
