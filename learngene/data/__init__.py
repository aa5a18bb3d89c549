"""Data for training and evaluation: ``DataConfig`` -> datasets, loaders and timm Mixup."""
from learngene.data.factory import (SPLITS, DataConfig, DatasetInfo, build_datasets, build_eval_loader, build_loaders,
                                     build_mixup, build_splits)

__all__ = ["SPLITS", "DataConfig", "DatasetInfo", "build_datasets", "build_eval_loader", "build_loaders", "build_mixup",
           "build_splits"]
