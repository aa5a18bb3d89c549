"""Datasets, loaders and mixup for training and evaluation, built from one ``data`` config node.

Datasets: ``digits`` (scikit-learn's 8x8 digits, in memory), ``imagefolder`` (``root/train/<class>/*``
and ``root/val/<class>/*``, optionally ``root/test/<class>/*``), ``cifar10`` / ``cifar100`` (torchvision's
files under ``root``, never downloaded). Image datasets use timm's transforms and ImageNet mean/std, so
ImageNet-pretrained models see the inputs they expect.

Every dataset has three splits. ``train`` is trained on, ``val`` is what training runs report and what
recipes are chosen on, and ``test`` is read only by the benchmark's reported results. Where a dataset
ships only two splits (CIFAR's train/test, an image folder with train/ and val/ only), its second split
becomes ``test`` and ``val`` is a stratified ``data.val_holdout`` fraction of the training images, the
same images on every run (``HOLDOUT_SEED``).
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
SPLITS = ("train", "val", "test")
HOLDOUT_SEED = 0


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
    # Datasets with two splits only (cifar, imagefolder without test/): the fraction of each training class held
    # out as the val split; the dataset's own second split is then the test split.
    val_holdout: float = 0.1


@dataclass
class DatasetInfo:
    num_classes: int
    in_chans: int
    img_size: int
    mean: tuple
    std: tuple
    num_train: int
    num_val: int
    num_test: int


def build_datasets(cfg: DataConfig) -> tuple[Dataset, Dataset, DatasetInfo]:
    """Return ``(train, val, info)``; items are ``(float image tensor (C, H, W), int label)``."""
    splits, info = build_splits(cfg)
    return splits["train"], splits["val"], info


def build_splits(cfg: DataConfig) -> tuple[dict[str, Dataset], DatasetInfo]:
    """Return ``({"train", "val", "test"} -> dataset, info)`` (see the module docstring for the splits)."""
    if cfg.name not in DATASET_NAMES:
        raise LearngeneError(f"unknown data.name {cfg.name!r}: choose one of {', '.join(DATASET_NAMES)}")
    if cfg.img_size < 1:
        raise LearngeneError(f"data.img_size must be a positive number of pixels, got {cfg.img_size}")
    if cfg.digits_shift < 0:
        raise LearngeneError(f"data.digits_shift must be 0 (off) or a positive pixel count, got {cfg.digits_shift}")
    if not 0.0 < cfg.val_holdout < 1.0:
        raise LearngeneError(f"data.val_holdout must be a fraction between 0 and 1, got {cfg.val_holdout}")
    if cfg.name == "digits":
        splits, mean, std = digits.load_digits_splits(cfg.img_size, shift=cfg.digits_shift)
        num_classes, in_chans, mean, std = digits.NUM_CLASSES, 1, (mean,), (std,)
    else:
        train_tf, val_tf = _timm_transforms(cfg)
        if cfg.name == "imagefolder":
            splits = _image_folders(cfg.root, train_tf, val_tf)
        else:
            cifar = CIFAR10 if cfg.name == "cifar10" else CIFAR100
            splits = _cifar(cifar, cfg.root, train_tf, val_tf)
        num_classes, in_chans, mean, std = len(splits["train"].classes), 3, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
        if "val" not in splits:  # two splits shipped: hold val out of train, seen with the evaluation transform
            train_idx, val_idx = holdout_indices(splits["train"].targets, cfg.val_holdout)
            if not val_idx:
                raise LearngeneError(f"data.val_holdout={cfg.val_holdout} holds out no training image (no class has "
                                     "two images): add training images or give the dataset its own val split")
            splits["train"], splits["val"] = Subset(splits["train"], train_idx), Subset(splits.pop("train_eval"), val_idx)

    if cfg.train_limit > 0:
        splits["train"] = Subset(splits["train"], range(min(cfg.train_limit, len(splits["train"]))))
    info = DatasetInfo(
        num_classes=num_classes,
        in_chans=in_chans,
        img_size=cfg.img_size,
        mean=tuple(mean),
        std=tuple(std),
        num_train=len(splits["train"]),
        num_val=len(splits["val"]),
        num_test=len(splits["test"]),
    )
    return splits, info


def holdout_indices(targets, fraction: float, seed: int = HOLDOUT_SEED) -> tuple[list[int], list[int]]:
    """Stratified ``(kept, held_out)`` indices: ``round(fraction * n)`` images of each class of ``n``, at least one
    (and never all) when the class has two or more, chosen by a fixed seed."""
    targets = torch.as_tensor(targets)
    generator = torch.Generator().manual_seed(seed)
    held_out = []
    for label in targets.unique().tolist():
        members = (targets == label).nonzero().flatten()
        count = min(max(round(fraction * len(members)), 1), len(members) - 1)
        held_out.append(members[torch.randperm(len(members), generator=generator)[:count]])
    mask = torch.ones(len(targets), dtype=torch.bool)
    mask[torch.cat(held_out)] = False
    return mask.nonzero().flatten().tolist(), (~mask).nonzero().flatten().tolist()


def build_eval_loader(cfg: DataConfig, split: str) -> DataLoader:
    """A loader over the whole ``val`` or ``test`` split, in order (for evaluation)."""
    if split not in SPLITS[1:]:
        raise LearngeneError(f"evaluation split {split!r} is not one of {', '.join(SPLITS[1:])}")
    dataset = build_splits(cfg)[0][split]
    return DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.num_workers,
                      pin_memory=torch.cuda.is_available())


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


def _image_folders(cfg_root: str, train_tf, val_tf) -> dict[str, ImageFolder]:
    """``train/`` and ``val/`` (and ``test/`` if present); with no ``test/``, ``val/`` is the test split and the
    training images are also returned with the evaluation transform (``train_eval``) to hold val out of."""
    layout = "a folder holding train/<class>/<image> and val/<class>/<image> (optionally test/<class>/<image>)"
    root = _require_root(cfg_root, layout)
    has_test = (root / "test").is_dir()
    folders = {"train": ("train", train_tf), "val": ("val", val_tf), "test": ("test", val_tf)} if has_test else \
        {"train": ("train", train_tf), "train_eval": ("train", val_tf), "test": ("val", val_tf)}
    splits = {}
    for split, (name, transform) in folders.items():
        split_dir = root / name
        if not split_dir.is_dir():
            raise LearngeneError(f"missing folder {split_dir}: data.root must be {layout}")
        try:
            splits[split] = ImageFolder(str(split_dir), transform=transform)
        except FileNotFoundError as e:  # no class folders, or a class folder without images
            raise LearngeneError(f"{split_dir}: {e}; data.root must be {layout}") from None
    train = splits["train"]
    for split, folder in splits.items():
        if folder.classes != train.classes:
            other = Path(folder.root)
            only_train = sorted(set(train.classes) - set(folder.classes))
            only_other = sorted(set(folder.classes) - set(train.classes))
            raise LearngeneError(
                f"class folders differ between {root / 'train'} and {other} (only in train: {only_train}, "
                f"only in {other.name}: {only_other}): give every split the same class subfolders"
            )
    return splits


def _cifar(cifar: type[CIFAR10], cfg_root: str, train_tf, val_tf) -> dict[str, CIFAR10]:
    """CIFAR's train and test files; the training images also with the evaluation transform (to hold val out of)."""
    archive = cifar.filename  # e.g. cifar-10-python.tar.gz, which unpacks to cifar.base_folder
    layout = f"the folder that holds {cifar.base_folder}/ (unpacked from {archive})"
    root = _require_root(cfg_root, layout)
    folder = root / cifar.base_folder
    if not folder.is_dir():
        raise LearngeneError(f"missing folder {folder}: unpack {archive} into {root} or point data.root at {layout}")
    try:
        return {
            "train": cifar(str(root), train=True, transform=train_tf, download=False),
            "train_eval": cifar(str(root), train=True, transform=val_tf, download=False),
            "test": cifar(str(root), train=False, transform=val_tf, download=False),
        }
    except RuntimeError:  # torchvision's "not found or corrupted": a file is missing or fails its md5 check
        raise LearngeneError(
            f"{folder} has missing or corrupted files (torchvision checks each file's md5): "
            f"unpack a fresh {archive} into {root}"
        ) from None
