"""Training items whose random augmentation depends only on (seed, epoch, sample index), never on the model.

A training step draws from the global random generators too (a student's dropout and drop path, Mixup),
so augmentation that also drew from them would give two students different pixels for the same
(seed, epoch, step), and a teacher-logit cache recorded with one student could not be replayed with
another. :class:`SeededItems` runs each item's ``__getitem__`` with the torch (CPU), python ``random``
and numpy generators seeded from ``(seed, epoch, index, draw)`` and puts the global states back
afterwards, in the main process and in loader workers alike. :class:`SeededItemSampler` yields those
``(index, draw)`` keys and hands the epoch to the dataset in ``set_epoch``, which the training loop calls
before it creates the epoch's iterator (loader workers, not persistent, copy the dataset at that point).
"""
from __future__ import annotations

import contextlib
import random
from collections import Counter

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


@contextlib.contextmanager
def seeded_rng(*key: int):
    """Run a block with python, numpy and torch (CPU) generators seeded from ``key``; then continue them as before.

    For draws that must be a function of ``key`` alone, whatever else (a student's init, its drop path) has drawn
    from the global generators, and without moving those generators for the draws that follow: an item's
    augmentation (seed, epoch, index, draw) here, Mixup/CutMix of a batch (seed, epoch, step, rank) in the
    training loop. The CUDA generator is left alone.
    """
    seed = int(np.random.SeedSequence(key).generate_state(1)[0])  # a hash: nearby keys give unrelated streams
    saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_rng_state(saved[2])


class SeededItems(Dataset):
    """``dataset[index]`` drawn with generators seeded by ``(seed, epoch, index, draw)``.

    Keys are ``(index, draw)`` pairs (a plain index means draw 0). ``draw`` tells apart the copies of one
    image within an epoch (repeated augmentation), so they still get different augmentations.
    """

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        index, draw = key if isinstance(key, tuple) else (key, 0)
        with seeded_rng(self.seed, self.epoch, index, draw):
            return self.dataset[index]


class SeededItemSampler(Sampler):
    """Wraps a per-epoch index sampler: yields ``(index, draw)`` keys for :class:`SeededItems`.

    ``draw = occurrence * num_replicas + rank``: unique per copy of an index across the processes of an
    epoch. ``set_epoch`` sets the wrapped sampler's epoch and the dataset's.
    """

    def __init__(self, sampler: Sampler, dataset: SeededItems, rank: int = 0, num_replicas: int = 1):
        self.sampler = sampler
        self.dataset = dataset
        self.rank = rank
        self.num_replicas = num_replicas

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)
        self.dataset.epoch = epoch

    def __iter__(self):
        seen = Counter()
        for index in self.sampler:
            yield index, seen[index] * self.num_replicas + self.rank
            seen[index] += 1
