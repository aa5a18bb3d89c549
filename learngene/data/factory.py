"""Datasets, loaders and mixup for training and evaluation, built from one ``data`` config node.

Datasets: ``digits`` (scikit-learn's 8x8 digits, in memory), ``imagefolder`` (``root/train/<class>/*``
and ``root/val/<class>/*``), ``cifar10`` / ``cifar100`` (torchvision's files under ``root``, never
downloaded). Image datasets use timm's transforms and ImageNet mean/std, so ImageNet-pretrained
models see the inputs they expect.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, Mixup, create_transform
from timm.data.distributed_sampler import RepeatAugSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from torchvision.datasets import CIFAR10, CIFAR100, ImageFolder

from learngene.data import digits
from learngene.errors import LearngeneError

DATASET_NAMES = ("digits", "imagefolder", "cifar10", "cifar100")


@dataclass
class DataConfig:
    name: str = "digits"  # digits | imagefolder | cifar10 | cifar100
    root: str = ""  # imagefolder: folder holding train/ and val/ class subfolders; cifar: torchvision root
    img_size: int = 8  # resolution fed to the model (digits native 8x8, 1 channel)
    batch_size: int = 128  # per process
    num_workers: int = 0
    auto_augment: Optional[str] = None  # timm create_transform auto_augment, e.g. "rand-m9-mstd0.5-inc1"
    reprob: float = 0.0  # random erasing prob
    color_jitter: float = 0.0
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    repeated_aug: bool = False  # timm RepeatAugSampler (DeiT)
    mixup: float = 0.0  # timm Mixup alpha
    cutmix: float = 0.0
    smoothing: float = 0.0  # label smoothing (applied by Mixup / the loss)
    digits_shift: int = 0  # digits only: random translation in pixels for training (0 = none)
    train_limit: int = 0  # >0: use only the first N training images (quick runs / tests)


@dataclass
class DatasetInfo:
    num_classes: int
    in_chans: int
    img_size: int
    mean: tuple
    std: tuple
    num_train: int
    num_val: int


def build_datasets(cfg: DataConfig) -> tuple[Dataset, Dataset, DatasetInfo]:
    """Return ``(train, val, info)``; items are ``(float image tensor (C, H, W), int label)``."""
    if cfg.name not in DATASET_NAMES:
        raise LearngeneError(f"unknown data.name {cfg.name!r}: choose one of {', '.join(DATASET_NAMES)}")
    if cfg.img_size < 1:
        raise LearngeneError(f"data.img_size must be a positive number of pixels, got {cfg.img_size}")
    if cfg.digits_shift < 0:
        raise LearngeneError(f"data.digits_shift must be 0 (off) or a positive pixel count, got {cfg.digits_shift}")
    if cfg.name == "digits":
        train, val, mean, std = digits.load_digits_splits(cfg.img_size, shift=cfg.digits_shift)
        num_classes, in_chans, mean, std = digits.NUM_CLASSES, 1, (mean,), (std,)
    else:
        train_tf, val_tf = _timm_transforms(cfg)
        if cfg.name == "imagefolder":
            train, val = _image_folders(cfg.root, train_tf, val_tf)
        else:
            cifar = CIFAR10 if cfg.name == "cifar10" else CIFAR100
            train, val = _cifar(cifar, cfg.root, train_tf, val_tf)
        num_classes, in_chans, mean, std = len(train.classes), 3, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    if cfg.train_limit > 0:
        train = Subset(train, range(min(cfg.train_limit, len(train))))
    info = DatasetInfo(
        num_classes=num_classes,
        in_chans=in_chans,
        img_size=cfg.img_size,
        mean=tuple(mean),
        std=tuple(std),
        num_train=len(train),
        num_val=len(val),
    )
    return train, val, info


def build_loaders(
    cfg: DataConfig, *, seed: int, distributed: bool = False
) -> tuple[DataLoader, DataLoader, DatasetInfo]:
    """Return ``(train_loader, val_loader, info)``.

    The train order depends only on ``(seed, epoch)``: call ``train_loader.sampler.set_epoch(epoch)``
    before each epoch. The sampler is a ``DistributedSampler`` even in a single process, or timm's
    ``RepeatAugSampler`` (seeded as below) with ``repeated_aug``. Every process gets the whole
    validation set, in order.
    """
    train, val, info = build_datasets(cfg)
    if cfg.batch_size < 1:
        raise LearngeneError(f"data.batch_size must be positive, got {cfg.batch_size}")
    num_replicas, rank = (dist.get_world_size(), dist.get_rank()) if distributed else (1, 0)
    if cfg.repeated_aug:
        sampler = SeededRepeatAugSampler(train, seed, num_replicas=num_replicas, rank=rank, shuffle=True)
    else:
        sampler = DistributedSampler(
            train, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
    if len(sampler) < cfg.batch_size:
        raise LearngeneError(
            f"data.batch_size {cfg.batch_size} is larger than the {len(sampler)} training images each process "
            f"sees per epoch: lower data.batch_size or use more training images"
        )
    # No persistent workers: each epoch's workers are then seeded from the main process's RNG,
    # so a resumed run draws the same augmentations as an uninterrupted one.
    common = dict(batch_size=cfg.batch_size, num_workers=cfg.num_workers, pin_memory=torch.cuda.is_available())
    train_loader = DataLoader(train, sampler=sampler, drop_last=True, **common)
    val_loader = DataLoader(val, shuffle=False, drop_last=False, **common)
    return train_loader, val_loader, info


class SeededRepeatAugSampler(RepeatAugSampler):
    """timm's RepeatAugSampler shuffles by epoch alone; like DistributedSampler, shuffle by seed + epoch."""

    def __init__(self, dataset: Dataset, seed: int, **kwargs):
        super().__init__(dataset, **kwargs)
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(self.seed + epoch)


def build_mixup(cfg: DataConfig, num_classes: int) -> Optional[Mixup]:
    """timm's batch Mixup/CutMix (with label smoothing), or None when both alphas are 0."""
    if cfg.mixup == 0 and cfg.cutmix == 0:
        return None
    if cfg.batch_size % 2:
        raise LearngeneError(f"mixup/cutmix need an even data.batch_size, got {cfg.batch_size}")
    return Mixup(
        mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, label_smoothing=cfg.smoothing, num_classes=num_classes
    )


def _timm_transforms(cfg: DataConfig):
    train_tf = create_transform(
        cfg.img_size,
        is_training=True,
        auto_augment=cfg.auto_augment,
        re_prob=cfg.reprob,
        color_jitter=cfg.color_jitter,
        interpolation=cfg.interpolation,
    )
    val_tf = create_transform(cfg.img_size, is_training=False, interpolation=cfg.interpolation, crop_pct=cfg.crop_pct)
    return train_tf, val_tf


def _require_root(cfg_root: str, what: str) -> Path:
    if not cfg_root:
        raise LearngeneError(f"data.root is empty: set data.root to {what}")
    root = Path(os.path.expanduser(cfg_root))
    if not root.is_dir():
        raise LearngeneError(f"data.root {root} is not a folder: set data.root to {what}")
    return root


def _image_folders(cfg_root: str, train_tf, val_tf) -> tuple[ImageFolder, ImageFolder]:
    layout = "a folder holding train/<class>/<image> and val/<class>/<image>"
    root = _require_root(cfg_root, layout)
    folders = []
    for split, transform in (("train", train_tf), ("val", val_tf)):
        split_dir = root / split
        if not split_dir.is_dir():
            raise LearngeneError(f"missing folder {split_dir}: data.root must be {layout}")
        try:
            folders.append(ImageFolder(str(split_dir), transform=transform))
        except FileNotFoundError as e:  # no class folders, or a class folder without images
            raise LearngeneError(f"{split_dir}: {e}; data.root must be {layout}") from None
    train, val = folders
    if train.classes != val.classes:
        only_train = sorted(set(train.classes) - set(val.classes))
        only_val = sorted(set(val.classes) - set(train.classes))
        raise LearngeneError(
            f"class folders differ between {root / 'train'} and {root / 'val'} (only in train: {only_train}, "
            f"only in val: {only_val}): give both splits the same class subfolders"
        )
    return train, val


def _cifar(cifar: type[CIFAR10], cfg_root: str, train_tf, val_tf) -> tuple[CIFAR10, CIFAR10]:
    archive = cifar.filename  # e.g. cifar-10-python.tar.gz, which unpacks to cifar.base_folder
    layout = f"the folder that holds {cifar.base_folder}/ (unpacked from {archive})"
    root = _require_root(cfg_root, layout)
    folder = root / cifar.base_folder
    if not folder.is_dir():
        raise LearngeneError(f"missing folder {folder}: unpack {archive} into {root} or point data.root at {layout}")
    try:
        return (
            cifar(str(root), train=True, transform=train_tf, download=False),
            cifar(str(root), train=False, transform=val_tf, download=False),
        )
    except RuntimeError:  # torchvision's "not found or corrupted": a file is missing or fails its md5 check
        raise LearngeneError(
            f"{folder} has missing or corrupted files (torchvision checks each file's md5): "
            f"unpack a fresh {archive} into {root}"
        ) from None
