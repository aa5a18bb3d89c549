"""scikit-learn's bundled handwritten digits (1,797 real 8x8 images), held in memory as tensors.

It is the toolkit's quick, offline dataset: small enough for tests and CPU runs, real enough to learn.
The split is fixed (stratified, ``random_state=0``): 1,077 training, 360 validation and 360 test images.
Recipes are chosen on validation; the test images are for reported results only (the benchmark). The
validation images are the ones the digits recipes were tuned on before the test split existed, and the
test images were drawn from the remaining ones, so no choice was tuned on test.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset

NUM_CLASSES = 10
NATIVE_SIZE = 8
MAX_PIXEL = 16.0  # load_digits pixel values are integers 0..16
VAL_SIZE = 360
TEST_SIZE = 360
SPLIT_SEED = 0


@dataclasses.dataclass(eq=False)
class DigitsDataset(Dataset):
    """Normalized (1, S, S) float images and int labels; optional random translation per item.

    ``shift`` > 0 moves each image by a random integer offset in [-shift, shift] pixels on both axes,
    filling the uncovered border with ``background`` (raw pixel 0, normalized). The offsets come from torch's
    global RNG, which training loaders seed per item (``learngene.data.seeded``).
    """

    images: torch.Tensor
    labels: torch.Tensor
    background: float
    shift: int = 0
    classes = tuple(str(digit) for digit in range(NUM_CLASSES))  # each label's name: the digit itself

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if self.shift:
            image = self._translate(image)
        return image, int(self.labels[index])

    def _translate(self, image: torch.Tensor) -> torch.Tensor:
        s = self.shift
        height, width = image.shape[-2:]
        padded = F.pad(image, (s, s, s, s), value=self.background)
        top, left = torch.randint(0, 2 * s + 1, (2,)).tolist()
        return padded[:, top:top + height, left:left + width]


def split_indices(target: np.ndarray) -> dict[str, torch.Tensor]:
    """Positions in ``sklearn.datasets.load_digits()`` (whose labels are ``target``) of the train, val and test
    images (fixed, stratified)."""
    # val is the 360 images every digits recipe was tuned on (the project's earlier val split); test is drawn
    # from the earlier training images, which no choice was ever measured on.
    rest, val = train_test_split(np.arange(len(target)), test_size=VAL_SIZE, stratify=target,
                                 random_state=SPLIT_SEED)
    train, test = train_test_split(rest, test_size=TEST_SIZE, stratify=target[rest], random_state=SPLIT_SEED)
    return {"train": torch.from_numpy(train), "val": torch.from_numpy(val), "test": torch.from_numpy(test)}


def load_digits_splits(img_size: int, shift: int = 0) -> tuple[dict[str, DigitsDataset], float, float]:
    """Return ``({"train", "val", "test"} -> dataset, mean, std)``; images scaled to [0, 1], resized, normalized.

    ``mean`` and ``std`` are the pixel statistics of the whole (resized) training split, so the
    normalization never depends on how many training images a run uses. Only ``train`` is augmented.
    """
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / MAX_PIXEL
    labels = torch.tensor(digits.target, dtype=torch.long)
    indices = split_indices(digits.target)
    if img_size != NATIVE_SIZE:
        # antialias only matters when shrinking; resizing once here keeps items cheap
        images = F.interpolate(images, size=(img_size, img_size), mode="bilinear", align_corners=False, antialias=True)

    std, mean = torch.std_mean(images[indices["train"]])
    mean, std = mean.item(), std.item()
    images = (images - mean) / std
    background = -mean / std  # raw pixel 0, normalized
    splits = {}
    for split, idx in indices.items():
        splits[split] = DigitsDataset(images[idx], labels[idx], background, shift=shift if split == "train" else 0)
    return splits, mean, std
