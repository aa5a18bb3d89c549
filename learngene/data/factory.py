"""Datasets, loaders and mixup for training and evaluation, built from one ``data`` config node.

Datasets: ``digits`` (scikit-learn's 8x8 digits, in memory), ``imagefolder`` (``root/train/<class>/*``
and ``root/val/<class>/*``, optionally ``root/test/<class>/*``), and through torchvision ``mnist``,
``fashion_mnist`` (1-channel 28x28), ``cifar10`` and ``cifar100`` (3-channel 32x32) and the papers' other
downstream datasets (``DOWNSTREAM``: ``food101``, ``stanford_cars``, ``flowers102``, ``oxford_iiit_pet``,
``stl10``, ``dtd``, ``svhn``, ``eurosat``): torchvision's files under ``data.root``, downloaded there only with
``data.download=true`` (Stanford Cars cannot be: torchvision's URL is gone). Every split dataset returned
exposes ``classes`` (names) and per-item ``targets`` (:func:`targets_of` reads them through Subsets
too). Image datasets use timm's
transforms: for training timm's RandomResizedCrop (``data.scale``, ``data.ratio``) and flip
(``data.hflip``) plus the optional augmentations, or with ``data.augment=false`` the evaluation transform.
Colour datasets are normalized with ImageNet's mean/std, so ImageNet-pretrained models see the inputs they
expect; MNIST and Fashion-MNIST with the statistics of their own training files (``GRAY_STATS``).

Every dataset has three splits. ``train`` is trained on, ``val`` is what training runs report and what
recipes are chosen on, and ``test`` is read only by the benchmark's reported results. Where a dataset
ships only two splits (CIFAR's train/test, an image folder with train/ and val/ only), its second split
becomes ``test`` and ``val`` is a stratified ``data.val_holdout`` fraction of the training images, the
same images on every run (``HOLDOUT_SEED``). Flowers-102 and DTD ship all three and keep them; EuroSAT ships
one set of images, of which a stratified ``EUROSAT_TEST_FRACTION`` is the test split (then val as above).

What a training run sees depends on ``(seed, epoch)`` alone, never on the model being trained: the
sampler order is a function of them, and every random augmentation of a training image (timm's
transforms, the digits shift) draws from generators seeded by ``(seed, epoch, index, draw)``
(``learngene.data.seeded``), with or without loader workers, leaving the global generators as they were.
So a student's init, dropout or drop path cannot change the pixels of a batch: two students with the
same data config and seed get identical batches (what a teacher-logit cache replay needs), and a
resumed run re-draws the same ones. Mixup/CutMix act on whole batches in the training loop, not here.
"""
from __future__ import annotations

import contextlib
import inspect
import io
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, Mixup, create_transform
from timm.data.distributed_sampler import RepeatAugSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from torchvision.datasets import (CIFAR10, CIFAR100, DTD, MNIST, STL10, SVHN, EuroSAT, FashionMNIST, Flowers102,
                                  Food101, ImageFolder, OxfordIIITPet, StanfordCars)
from torchvision.datasets.folder import pil_loader

from learngene.data import digits
from learngene.data.augment import posterize_zero_bits_black
from learngene.data.seeded import SeededItems, SeededItemSampler
from learngene.errors import LearngeneError, first_line

DATASET_NAMES = ("digits", "imagefolder", "mnist", "fashion_mnist", "cifar10", "cifar100", "food101", "stanford_cars",
                 "flowers102", "oxford_iiit_pet", "stl10", "dtd", "svhn", "eurosat")
TORCHVISION = {"mnist": MNIST, "fashion_mnist": FashionMNIST, "cifar10": CIFAR10, "cifar100": CIFAR100}
# Pixel mean and std (values in [0, 1]) over all 60,000 images of each training file: MNIST's are the values
# torchvision's own MNIST example uses, Fashion-MNIST's the equally common ones for its training file.
GRAY_STATS = {"mnist": ((0.1307,), (0.3081,)), "fashion_mnist": ((0.2860,), (0.3530,))}
SPLITS = ("train", "val", "test")
HOLDOUT_SEED = 0
# EuroSAT ships no split: this stratified fraction of its images is the test split (its authors' 80/20 ratio).
EUROSAT_TEST_FRACTION = 0.2


@dataclass(frozen=True)
class Downstream:
    """A torchvision dataset of the papers' transfer experiments: which of its splits the project reads and the
    files torchvision needs under ``data.root/folder``."""

    dataset: type
    splits: dict  # project split -> torchvision's constructor arguments; without "val" it is held out of "train"
    folder: str  # where torchvision reads the files, under data.root ("" for the root itself)
    files: tuple  # what must be there ("name/" for a folder), checked before torchvision reads them
    source: str  # where the files come from, for a user who puts them there by hand
    downloadable: bool = True
    class_names: tuple = ()  # for a torchvision class that keeps no names (SVHN)
    test_holdout: float | None = None  # one set of images only: this stratified fraction of it is the test split


DOWNSTREAM = {
    "food101": Downstream(Food101, {"train": dict(split="train"), "test": dict(split="test")}, "food-101",
                          ("images/", "meta/train.json", "meta/test.json"), "food-101.tar.gz"),
    "stanford_cars": Downstream(
        StanfordCars, {"train": dict(split="train"), "test": dict(split="test")}, "stanford_cars",
        ("devkit/cars_meta.mat", "devkit/cars_train_annos.mat", "cars_train/", "cars_test/",
         "cars_test_annos_withlabels.mat"), "the Stanford Cars images and devkit, e.g. a Kaggle copy",
        downloadable=False),
    "flowers102": Downstream(Flowers102, {split: dict(split=split) for split in SPLITS}, "flowers-102",
                             ("jpg/", "imagelabels.mat", "setid.mat"), "102flowers.tgz, imagelabels.mat, setid.mat"),
    "oxford_iiit_pet": Downstream(OxfordIIITPet, {"train": dict(split="trainval"), "test": dict(split="test")},
                                  "oxford-iiit-pet", ("images/", "annotations/trainval.txt", "annotations/test.txt"),
                                  "images.tar.gz and annotations.tar.gz"),
    "stl10": Downstream(STL10, {"train": dict(split="train"), "test": dict(split="test")}, "stl10_binary",
                        ("train_X.bin", "train_y.bin", "unlabeled_X.bin", "test_X.bin", "test_y.bin",
                         "class_names.txt"),
                        "stl10_binary.tar.gz"),
    "dtd": Downstream(DTD, {split: dict(split=split, partition=1) for split in SPLITS}, "dtd/dtd",
                      ("images/", "labels/train1.txt", "labels/val1.txt", "labels/test1.txt"), "dtd-r1.0.1.tar.gz"),
    "svhn": Downstream(SVHN, {"train": dict(split="train"), "test": dict(split="test")}, "",
                       ("train_32x32.mat", "test_32x32.mat"), "the cropped-digits files of the SVHN site",
                       class_names=tuple(str(digit) for digit in range(10))),
    "eurosat": Downstream(EuroSAT, {"train": {}}, "eurosat/2750", (), "EuroSAT.zip, the RGB version",
                          test_holdout=EUROSAT_TEST_FRACTION),
}


@dataclass
class DataConfig:
    name: str = "digits"  # one of DATASET_NAMES: digits | imagefolder | mnist | fashion_mnist | cifar10 | ... | eurosat
    root: str = ""  # imagefolder: folder holding train/ and val/ class subfolders; else torchvision's root
    download: bool = False  # mnist, fashion_mnist, cifar10/100: download torchvision's files into root if missing
    img_size: int = 8  # resolution fed to the model (digits native 8x8, 1 channel)
    batch_size: int = 128  # per process
    num_workers: int = 0
    # Training transform of image datasets (all but digits): timm's create_transform(is_training=True) with
    # these knobs (defaults: timm's ImageNet ones), or with augment=false the evaluation transform.
    augment: bool = True  # false: no random crop, flip or augmentation (digits: set digits_shift=0 instead)
    scale: list[float] = field(default_factory=lambda: [0.08, 1.0])  # RandomResizedCrop area fraction range
    ratio: list[float] = field(default_factory=lambda: [3 / 4, 4 / 3])  # RandomResizedCrop aspect ratio range
    hflip: float = 0.5  # horizontal flip probability
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
    train_limit: int | None = None  # N: use only the first N training images (quick runs / tests); null: all
    # A class subset, by index or class name, e.g. [0,1,2,3,4] or [cat,dog]: every split keeps those classes'
    # images, relabelled 0..k-1 in this order (one dataset split into an upstream and a downstream task); []: all.
    classes: list[Any] = field(default_factory=list)
    # Datasets with two splits only (cifar, imagefolder without test/): the fraction of each training class held
    # out as the val split; the dataset's own second split is then the test split.
    val_holdout: float = 0.1


# DataConfig fields that change neither the pixels of a training batch nor the order of the batches: where the
# files are and whether to download them, how many loader processes read them (every item is seeded by (seed,
# epoch, index), learngene.data.seeded), and the labels' smoothing. A teacher-logit cache ignores them.
NOT_PIXEL_FIELDS = ("root", "download", "num_workers", "smoothing")


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
    class_names: tuple[str, ...] = ()  # the dataset's name of each label 0..num_classes-1


def build_datasets(cfg: DataConfig) -> tuple[Dataset, Dataset, DatasetInfo]:
    """Return ``(train, val, info)``; items are ``(float image tensor (C, H, W), int label)``."""
    splits, info = build_splits(cfg)
    return splits["train"], splits["val"], info


def build_splits(cfg: DataConfig) -> tuple[dict[str, Dataset], DatasetInfo]:
    """Return ``({"train", "val", "test"} -> dataset, info)`` (see the module docstring for the splits)."""
    check_data_config(cfg)
    if cfg.name == "digits":
        splits, mean, std = digits.load_digits_splits(cfg.img_size, shift=cfg.digits_shift)
        num_classes, in_chans, mean, std = digits.NUM_CLASSES, 1, (mean,), (std,)
    else:
        mean, std = GRAY_STATS.get(cfg.name, (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD))
        train_tf, val_tf = _timm_transforms(cfg, mean, std)
        if cfg.name == "imagefolder":
            splits = _image_folders(cfg.root, train_tf, val_tf)
        elif cfg.name in DOWNSTREAM:
            splits = _downstream(DOWNSTREAM[cfg.name], cfg, train_tf, val_tf)
        else:
            splits = _torchvision(TORCHVISION[cfg.name], cfg, train_tf, val_tf)
        num_classes, in_chans = len(splits["train"].classes), len(mean)
        if "val" not in splits:  # two splits shipped: hold val out of train, seen with the evaluation transform
            train_idx, val_idx = holdout_indices(splits["train"].targets, cfg.val_holdout)
            if not val_idx:
                raise LearngeneError(f"data.val_holdout={cfg.val_holdout} holds out no training image (no class has "
                                     "two images): add training images or give the dataset its own val split")
            splits["train"], splits["val"] = Subset(splits["train"], train_idx), Subset(splits.pop("train_eval"), val_idx)

    names = class_names(splits["test"])
    if cfg.classes:
        keep = class_indices(cfg.classes, names, cfg.name)
        splits = {split: ClassSubset(dataset, keep) for split, dataset in splits.items()}
        num_classes, names = len(keep), tuple(names[c] for c in keep)
    if cfg.train_limit is not None:
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
        class_names=names,
    )
    return splits, info


def class_names(dataset: Dataset) -> tuple[str, ...]:
    """The class names of a split (torchvision's ``classes``), looked up through subsets."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return tuple(str(name) for name in dataset.classes)


def class_indices(classes: list, names: tuple[str, ...], dataset: str) -> list[int]:
    """The label of each entry of ``data.classes`` (an index, or a class name), checked: known and distinct."""
    keep, unknown = [], []
    for entry in classes:
        if isinstance(entry, int) and not isinstance(entry, bool):
            index = entry if 0 <= entry < len(names) else None
        else:
            index = names.index(str(entry)) if str(entry) in names else None
        if index is None:
            unknown.append(entry)
        else:
            keep.append(index)
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    if unknown:
        raise LearngeneError(f"data.classes={list(classes)} names {unknown}, which {dataset} does not have: give "
                             f"class indices 0..{len(names) - 1} or class names ({shown})")
    repeated = sorted({names[c] for c in keep if keep.count(c) > 1})
    if repeated:
        raise LearngeneError(f"data.classes={list(classes)} names the classes {repeated} more than once: list each "
                             "class once")
    return keep


class ClassSubset(Dataset):
    """The items of ``dataset`` whose label is one of ``keep``, relabelled to its position in ``keep``."""

    def __init__(self, dataset: Dataset, keep: list[int]):
        self.dataset, self.relabel = dataset, {label: i for i, label in enumerate(keep)}
        targets = targets_of(dataset)
        self.indices = [i for i, label in enumerate(targets) if label in self.relabel]
        self.targets = [self.relabel[targets[i]] for i in self.indices]
        names = class_names(dataset)
        self.classes = [names[label] for label in keep]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        image, label = self.dataset[self.indices[index]]
        return image, self.relabel[label]


def check_data_config(cfg: DataConfig) -> None:
    """The data settings that need no data to check (``learngene.engine.preflight``: before a job is submitted)."""
    check_loader_config(cfg)
    if cfg.name not in DATASET_NAMES:
        raise LearngeneError(f"unknown data.name {cfg.name!r}: choose one of {', '.join(DATASET_NAMES)}")
    if cfg.img_size < 1:
        raise LearngeneError(f"data.img_size must be a positive number of pixels, got {cfg.img_size}")
    if cfg.digits_shift < 0:
        raise LearngeneError(f"data.digits_shift must be 0 (off) or a positive pixel count, got {cfg.digits_shift}")
    if not 0.0 < cfg.val_holdout < 1.0:
        raise LearngeneError(f"data.val_holdout must be a fraction between 0 and 1, got {cfg.val_holdout}")
    if cfg.train_limit is not None and cfg.train_limit < 1:
        raise LearngeneError(f"data.train_limit={cfg.train_limit} keeps no training image: set a positive count, or "
                             "data.train_limit=null for all of them")
    check_train_transform(cfg)


def check_train_transform(cfg: DataConfig) -> None:
    if cfg.name == "digits" and not cfg.augment and cfg.digits_shift:
        raise LearngeneError(f"data.augment=false contradicts data.digits_shift={cfg.digits_shift} (the digits "
                             "augmentation): set data.digits_shift=0 for no augmentation")
    if len(cfg.scale) != 2 or not 0 < cfg.scale[0] <= cfg.scale[1] <= 1:
        raise LearngeneError(f"data.scale={list(cfg.scale)} must be [min, max] fractions of the image area with "
                             "0 < min <= max <= 1, e.g. data.scale=[0.5,1.0]")
    if len(cfg.ratio) != 2 or not 0 < cfg.ratio[0] <= cfg.ratio[1]:
        raise LearngeneError(f"data.ratio={list(cfg.ratio)} must be [min, max] aspect ratios with 0 < min <= max, "
                             "e.g. data.ratio=[0.75,1.33]")
    if not 0.0 <= cfg.hflip <= 1.0:
        raise LearngeneError(f"data.hflip must be a probability between 0 and 1, got {cfg.hflip}")


def train_is_random(cfg: DataConfig) -> bool:
    """Whether a training item draws random numbers (then loaders seed it per item, ``learngene.data.seeded``)."""
    return cfg.digits_shift > 0 if cfg.name == "digits" else cfg.augment


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
    check_loader_config(cfg)
    dataset = build_splits(cfg)[0][split]
    return DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.num_workers,
                      pin_memory=torch.cuda.is_available())


def build_loaders(
    cfg: DataConfig, *, seed: int, distributed: bool = False
) -> tuple[DataLoader, DataLoader, DatasetInfo]:
    """Return ``(train_loader, val_loader, info)``.

    The train order depends only on ``(seed, epoch)``, and so does every random augmentation of a training
    image (``learngene.data.seeded``): call ``train_loader.sampler.set_epoch(epoch)`` before each epoch's
    ``iter()``. The sampler wraps a ``DistributedSampler`` (even in a single process), or timm's
    ``RepeatAugSampler`` with ``repeated_aug``, both shuffled by a hash of (seed, epoch) (:func:`order_seed`).
    Every process gets the whole validation set, in order.
    """
    check_loader_config(cfg)
    train, val, info = build_datasets(cfg)
    num_replicas, rank = (dist.get_world_size(), dist.get_rank()) if distributed else (1, 0)
    if cfg.repeated_aug:
        sampler = SeededRepeatAugSampler(train, seed, num_replicas=num_replicas, rank=rank, shuffle=True)
    else:
        sampler = SeededDistributedSampler(train, seed, num_replicas=num_replicas, rank=rank, shuffle=True,
                                           drop_last=True)
    if len(sampler) < cfg.batch_size:
        raise LearngeneError(
            f"data.batch_size {cfg.batch_size} is larger than the {len(sampler)} training images each process "
            f"sees per epoch: lower data.batch_size or use more training images"
        )
    if train_is_random(cfg):  # items without random draws need no seeding (which costs ~0.1 ms an item)
        train = SeededItems(train, seed)
        sampler = SeededItemSampler(sampler, train, rank=rank, num_replicas=num_replicas)
    # No persistent workers: each epoch's workers copy the dataset, and with it the epoch set_epoch gave it.
    common = dict(batch_size=cfg.batch_size, num_workers=cfg.num_workers, pin_memory=torch.cuda.is_available())
    train_loader = DataLoader(train, sampler=sampler, drop_last=True, **common)
    val_loader = DataLoader(val, shuffle=False, drop_last=False, **common)
    return train_loader, val_loader, info


def check_loader_config(cfg: DataConfig) -> None:
    if cfg.batch_size < 1:
        raise LearngeneError(f"data.batch_size must be positive, got {cfg.batch_size}")
    if cfg.num_workers < 0:
        raise LearngeneError(f"data.num_workers must be 0 (load in the main process) or a number of loader "
                             f"processes, got {cfg.num_workers}")


def order_seed(seed: int, epoch: int) -> int:
    """The seed of the training order of ``epoch`` in a run of ``seed``: a hash of the pair, as the augmentation's
    seeds are (``learngene.data.seeded``). ``seed + epoch``, torch's and timm's rule, gives seed s + 1 the orders
    of seed s one epoch later, so two "independent" runs would share all but one epoch order."""
    return random.Random(f"train order {seed} {epoch}").getrandbits(63)


class SeededOrder:
    """A sampler mixin: epoch ``e`` of a run of ``seed`` is shuffled by :func:`order_seed`. Both samplers below
    seed their shuffle with (their own seed, 0 here, plus) their epoch, so they are given that seed as the epoch."""

    def __init__(self, dataset: Dataset, seed: int, **kwargs):
        super().__init__(dataset, **kwargs)
        self.run_seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(order_seed(self.run_seed, epoch))


class SeededDistributedSampler(SeededOrder, DistributedSampler):
    """torch's DistributedSampler (its seed left at 0), shuffled by :func:`order_seed`."""


class SeededRepeatAugSampler(SeededOrder, RepeatAugSampler):
    """timm's RepeatAugSampler (DeiT's repeated augmentation), which shuffles by epoch alone, by :func:`order_seed`."""


def build_mixup(cfg: DataConfig, num_classes: int) -> Optional[Mixup]:
    """timm's batch Mixup/CutMix (with label smoothing), or None when both alphas are 0."""
    if cfg.mixup == 0 and cfg.cutmix == 0:
        return None
    if cfg.batch_size % 2:
        raise LearngeneError(f"mixup/cutmix need an even data.batch_size, got {cfg.batch_size}")
    return Mixup(
        mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, label_smoothing=cfg.smoothing, num_classes=num_classes
    )


def _timm_transforms(cfg: DataConfig, mean: tuple, std: tuple):
    val_tf = create_transform(cfg.img_size, is_training=False, interpolation=cfg.interpolation, crop_pct=cfg.crop_pct,
                              mean=mean, std=std)
    if not cfg.augment:
        return val_tf, val_tf
    train_tf = posterize_zero_bits_black(create_transform(
        cfg.img_size,
        is_training=True,
        scale=tuple(cfg.scale),
        ratio=tuple(cfg.ratio),
        hflip=cfg.hflip,
        auto_augment=cfg.auto_augment,
        re_prob=cfg.reprob,
        color_jitter=cfg.color_jitter,
        interpolation=cfg.interpolation,
        mean=mean,
        std=std,
    ))  # Pillow 13 refuses posterize to 0 bits, which the DeiT/SWS RandAugment draws
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
            splits[split] = ImageFolder(str(split_dir), transform=transform, loader=read_image)
        except FileNotFoundError as e:  # no class folders, or a class folder without images
            raise LearngeneError(f"{split_dir}: {e}; data.root must be {layout}") from None
    train = splits["train"]
    for folder in splits.values():
        if folder.classes != train.classes:
            other = Path(folder.root)
            only_train = sorted(set(train.classes) - set(folder.classes))
            only_other = sorted(set(folder.classes) - set(train.classes))
            raise LearngeneError(
                f"class folders differ between {root / 'train'} and {other} (only in train: {only_train}, "
                f"only in {other.name}: {only_other}): give every split the same class subfolders"
            )
    return splits


def _torchvision(dataset: type, cfg: DataConfig, train_tf, val_tf) -> dict[str, Dataset]:
    """A torchvision dataset's train and test files under ``data.root`` (downloaded there with ``data.download``);
    the training images also with the evaluation transform (``train_eval``, to hold val out of)."""
    is_cifar = dataset in (CIFAR10, CIFAR100)
    # where torchvision keeps the files under root, and what a user unpacks there by hand
    folder = dataset.base_folder if is_cifar else f"{dataset.__name__}/raw"
    archives = dataset.filename if is_cifar else ", ".join(name for name, _ in dataset.resources)
    layout = f"the folder that holds {folder}/ (from {archives})"
    if cfg.download and cfg.root:
        root = Path(os.path.expanduser(cfg.root))
        _download(lambda: dataset(str(root), train=True, download=True), root, folder, cfg.name)
    root = _require_root(cfg.root, f"{layout}, or with data.download=true the folder to download {cfg.name} into")
    if not (root / folder).is_dir():
        raise LearngeneError(f"missing folder {root / folder}: pass data.download=true to download {cfg.name} into "
                             f"{root}, or unpack {archives} there, or point data.root at {layout}")
    try:
        return {
            "train": dataset(str(root), train=True, transform=train_tf),
            "train_eval": dataset(str(root), train=True, transform=val_tf),
            "test": dataset(str(root), train=False, transform=val_tf),
        }
    except RuntimeError:  # torchvision's "not found (or corrupted)": a file is missing or fails its md5 check
        checked = "torchvision checks each file's md5" if is_cifar else "torchvision needs each of them unpacked"
        raise LearngeneError(f"{root / folder} has missing or corrupted files ({checked}): delete the folder and "
                             f"pass data.download=true, or unpack fresh {archives} into it") from None


def _download(fetch: Callable[[], object], root: Path, folder: str, name: str) -> None:
    """torchvision's download into ``root`` by ``fetch`` (a no-op when the files are there); a failure is one line,
    and the folders this attempt created are removed again."""
    created = next((p for p in (root, root / folder.split("/")[0]) if not p.exists()), None)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # torchvision prints a line per file and mirror tried
            fetch()
    except (OSError, RuntimeError) as e:  # URLError is an OSError; torchvision's MNIST wraps its in a RuntimeError
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        reason = [line for line in str(e).splitlines() if line.strip()][-1:] or [type(e).__name__]
        raise LearngeneError(f"could not download {name} into {root} ({reason[0].strip()}): check the network "
                             f"connection, or put torchvision's files under data.root and drop data.download") from None


def _downstream(spec: Downstream, cfg: DataConfig, train_tf, val_tf) -> dict[str, Dataset]:
    """A :data:`DOWNSTREAM` dataset's splits from torchvision's files under ``data.root`` (downloaded there with
    ``data.download``); with no val split of its own also the training images with the evaluation transform
    (``train_eval``, to hold val out of). Every split has ``classes`` and ``targets``."""
    where = f"{spec.folder}/ under data.root" if spec.folder else "data.root"
    put = f"put {', '.join(spec.files) or 'one folder of .jpg images per class'} in {where} (from {spec.source})"
    if cfg.download and cfg.root:
        if not spec.downloadable:
            raise LearngeneError(f"torchvision cannot download {cfg.name} (its URL is gone): drop data.download and "
                                 f"{put}")
        root = Path(os.path.expanduser(cfg.root))
        _download(lambda: [spec.dataset(str(root), download=True, **kwargs) for kwargs in spec.splits.values()],
                  root, spec.folder, cfg.name)
    root = _require_root(cfg.root, f"the folder that holds {spec.folder or 'the files'} ({put})")
    folder = root / spec.folder
    missing = [name for name in spec.files if not (folder / name).exists()]
    if not folder.is_dir() or missing:
        problem = f"missing {', '.join(missing)} in {folder}" if folder.is_dir() else f"missing folder {folder}"
        how = f"pass data.download=true to download {cfg.name} into {root}, or " if spec.downloadable else ""
        raise LearngeneError(f"{cfg.name}: {problem}: {how}{put}")
    reads_with = {"loader": read_image} if "loader" in inspect.signature(spec.dataset).parameters else {}

    def read(kwargs: dict, transform) -> Dataset:
        dataset = spec.dataset(str(root), transform=transform, **reads_with, **kwargs)
        dataset.targets = targets_of(dataset)
        dataset.classes = list(spec.class_names or dataset.classes)
        return dataset

    try:
        splits = {split: read(kwargs, train_tf if split == "train" else val_tf)
                  for split, kwargs in spec.splits.items()}
        if "val" not in splits:
            splits["train_eval"] = read(spec.splits["train"], val_tf)
    except RuntimeError:  # torchvision's "not found or corrupted": a file fails its md5 check
        raise LearngeneError(f"{folder} has corrupted files (torchvision checks the md5 of its .mat/.bin files): "
                             f"delete them and pass data.download=true, or {put} afresh") from None
    except (FileNotFoundError, ValueError, KeyError) as e:  # no class folders, a label file of another format
        raise LearngeneError(f"{folder} is not {cfg.name}'s layout ({first_line(e)}): {put}") from None
    if spec.test_holdout is not None:
        train_idx, test_idx = holdout_indices(splits["train"].targets, spec.test_holdout)
        splits = {"train": LabelledSubset(splits["train"], train_idx),
                  "train_eval": LabelledSubset(splits["train_eval"], train_idx),
                  "test": LabelledSubset(splits["train_eval"], test_idx)}
    return splits


def targets_of(dataset: Dataset) -> list[int]:
    """The label of every item of a dataset this module builds (a Subset's: its dataset's at its indices) or of a
    torchvision dataset, which keep them under different names."""
    if isinstance(dataset, Subset):
        targets = targets_of(dataset.dataset)
        return [targets[i] for i in dataset.indices]
    for name in ("targets", "_labels", "labels"):  # ImageFolder/CIFAR/MNIST; Food101, Flowers102, Pets, DTD; STL, SVHN
        if hasattr(dataset, name):
            return [int(label) for label in getattr(dataset, name)]
    return [label for _, label in dataset._samples]  # StanfordCars: (path, label) pairs


class LabelledSubset(Subset):
    """A Subset with its dataset's ``classes`` and its own items' ``targets``, as the whole datasets have."""

    def __init__(self, dataset: Dataset, indices: list[int]):
        super().__init__(dataset, indices)
        self.classes = dataset.classes
        self.targets = [dataset.targets[i] for i in indices]


class UnreadableImageError(LearngeneError):
    """An image file that cannot be decoded.

    A DataLoader worker's exception reaches the main process rebuilt from its type and formatted traceback,
    so the constructor keeps only the last line's message: the error stays one line with workers too.
    """

    def __init__(self, message: str):
        prefix = f"{type(self).__module__}.{type(self).__qualname__}: "
        last = message.rstrip().rsplit("\n", 1)[-1]
        super().__init__(last[len(prefix):] if last.startswith(prefix) else message)


def read_image(path: str):
    """ImageFolder's loader (an RGB PIL image), stopping on a file that cannot be decoded with a line naming it."""
    try:
        return pil_loader(path)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise UnreadableImageError(f"cannot read image {path} ({e}): replace or delete the file") from None
