"""What a student sees never depends on the student: augmented batches under different inits and drop path."""
import dataclasses
import math

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from learngene.config import ModelConfig, OptimConfig, TeacherConfig, TrainConfig
from learngene.data import DataConfig, build_loaders
from learngene.engine import train
from spies import teacher_batches


def student_epoch(cfg: DataConfig, student_seed: int, depth: int, epoch: int = 1) -> list[torch.Tensor]:
    """One epoch's batches as a training loop with its own student sees them: a ViT with drop path, initialized
    under ``student_seed``, runs forward and backward between batches (drawing from the global RNG)."""
    torch.manual_seed(student_seed)
    loader, _, info = build_loaders(cfg, seed=0)
    student = timm.create_model("vit_tiny_patch16_224", img_size=cfg.img_size, patch_size=4, in_chans=info.in_chans,
                                num_classes=info.num_classes, embed_dim=16, depth=depth, num_heads=2,
                                drop_path_rate=0.5).train()
    loader.sampler.set_epoch(epoch)
    batches = []
    for images, _ in loader:
        batches.append(images)
        student(images).sum().backward()
    return batches


def assert_same_batches(a, b):
    assert len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def test_students_see_identical_shifted_digits():
    cfg = DataConfig(digits_shift=1, batch_size=32, train_limit=128)
    first = student_epoch(cfg, student_seed=1, depth=1)
    assert_same_batches(first, student_epoch(cfg, student_seed=2, depth=3))
    unshifted = student_epoch(dataclasses.replace(cfg, digits_shift=0), student_seed=1, depth=1)
    assert not torch.equal(torch.cat(first), torch.cat(unshifted))  # the batches are augmented


@pytest.mark.parametrize("num_workers", [0, 2])
def test_students_see_identical_imagefolder_batches_under_timm_training_transform(tmp_path, num_workers):
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("val", 2)):
        for name in ("a", "b"):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / name / f"{i}.png")
    cfg = DataConfig(name="imagefolder", root=str(tmp_path), img_size=16, batch_size=8, num_workers=num_workers)
    first = student_epoch(cfg, student_seed=1, depth=1)
    assert_same_batches(first, student_epoch(cfg, student_seed=2, depth=3))
    assert not torch.equal(torch.cat(first), torch.cat(student_epoch(cfg, student_seed=1, depth=1, epoch=2)))


def test_teacher_cache_replays_shifted_digits_for_another_student(tmp_path, monkeypatch):
    """The issue's failure: a cache recorded with one student, replayed with another, on augmented data."""
    tiny_vit = dict(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=16, depth=2, num_heads=2,
                    class_token=False, global_pool="avg")
    data = DataConfig(name="digits", batch_size=16, train_limit=128, digits_shift=1)

    def config(output, model, depth, drop_path, **changes):
        return TrainConfig(model=ModelConfig(name=model, kwargs={**tiny_vit, "depth": depth},
                                             drop_path_rate=drop_path),
                           data=data, optim=OptimConfig(lr=3e-3, epochs=2, min_lr=1e-4), output=str(tmp_path / output),
                           device="cpu", deterministic=True, **changes)

    train(config("teacher", "vit_small_patch16_224", 2, 0.0))
    teacher = TeacherConfig(name=f"local-dir:{tmp_path / 'teacher' / 'model'}")
    distill = dataclasses.replace(TrainConfig().distill, teacher_cache=str(tmp_path / "cache"), teacher_cache_topk=10)
    train(config("first", "vit_small_patch16_224", 1, 0.1, teacher=teacher, distill=distill))

    calls = teacher_batches(monkeypatch)
    train(config("second", "vit_small_patch16_224", 3, 0.5, teacher=teacher, distill=distill, seed=0))
    assert len(calls) == math.ceil(360 / 16)  # validation only: every training batch was replayed
