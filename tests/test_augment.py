"""Every RandAugment op of every shipped policy, at every magnitude, through the project's training transform:
timm's own images, and for posterize to 0 bits the black image Pillow < 13 returned (Pillow 13 refuses 0 bits)."""
import copy
import random
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from timm.data.auto_augment import AugmentOp, RandAugment

from learngene.data import DataConfig, build_splits

REPO = Path(__file__).resolve().parents[1]
SHIPPED_POLICIES = sorted({cfg["data"]["auto_augment"] for path in REPO.glob("configs/**/*.yaml")
                           if (cfg := yaml.safe_load(path.read_text())) and cfg.get("data", {}).get("auto_augment")})
POSTERIZE_OPS = ("Posterize", "PosterizeIncreasing", "PosterizeOriginal")


def old_pillow_posterize(img: Image.Image, bits: int) -> Image.Image:
    """``PIL.ImageOps.posterize`` as Pillow 12 and earlier computed it, for 0 to 8 bits."""
    mask = ~(2 ** (8 - bits) - 1)
    return img.point([i & mask for i in range(256)] * len(img.getbands()))


def training_rand_augment(tmp_path: Path, policy: str) -> RandAugment:
    """The RandAugment of the training transform ``build_splits`` gives an image folder with ``policy``."""
    for split, count in (("train", 2), ("val", 1)):
        for label in ("a", "b"):
            (tmp_path / split / label).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (20, 20)).save(tmp_path / split / label / f"{i}.png")
    splits, _ = build_splits(DataConfig(name="imagefolder", root=str(tmp_path), img_size=32, auto_augment=policy,
                                        val_holdout=0.5))
    transform = splits["train"].dataset.transform  # the train split is a Subset of the ImageFolder
    found = [t for t in transform.transforms if isinstance(t, RandAugment)]
    assert len(found) == 1, transform
    return found[0]


def at_magnitude(op: AugmentOp, magnitude: float) -> AugmentOp:
    """The op always applied, at exactly ``magnitude``."""
    op = copy.copy(op)
    op.prob, op.magnitude, op.magnitude_std = 1.0, magnitude, 0
    return op


def seeded_call(op, img: Image.Image) -> np.ndarray:
    random.seed(0)  # a random sign (rotate, shear, translate) and resampling filter: the same draws for both
    return np.asarray(op(img))


@pytest.fixture(scope="module")
def image():
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8))


def test_the_configs_ship_the_deit_rand_augment_policy():
    assert "rand-m9-mstd0.5-inc1" in SHIPPED_POLICIES  # the glob finds the ImageNet recipes' policy


@pytest.mark.parametrize("policy", SHIPPED_POLICIES)
def test_every_op_at_every_magnitude_is_timms_image_or_black_for_zero_bits(tmp_path, image, policy):
    rand_augment = training_rand_augment(tmp_path, policy)
    assert len(rand_augment.ops) == 15 and any(op.name.startswith("Posterize") for op in rand_augment.ops)
    for op in rand_augment.ops:
        for magnitude in range(11):
            got = seeded_call(at_magnitude(op, magnitude), image)
            timm_op = AugmentOp(op.name, prob=1.0, magnitude=magnitude, hparams={**op.hparams, "magnitude_std": 0})
            if op.name in POSTERIZE_OPS:
                bits = timm_op.level_fn(magnitude, timm_op.hparams)[0]
                np.testing.assert_array_equal(got, np.asarray(old_pillow_posterize(image, bits)))
                if bits == 0:
                    assert not got.any(), f"{op.name} at magnitude {magnitude} keeps 0 bits: a black image"
                    continue  # timm's own op raises ValueError here on Pillow 13
            np.testing.assert_array_equal(got, seeded_call(timm_op, image), err_msg=f"{op.name} m={magnitude}")


@pytest.mark.parametrize("policy", SHIPPED_POLICIES)
def test_magnitude_std_extremes_clip_to_0_and_10(tmp_path, image, policy, monkeypatch):
    rand_augment = training_rand_augment(tmp_path, policy)
    for op in rand_augment.ops:
        assert op.magnitude_std > 0, op  # mstd: every call draws its magnitude around op.magnitude
        for drawn, clipped in ((op.magnitude + 100 * op.magnitude_std, 10), (op.magnitude - 100 * op.magnitude_std, 0)):
            monkeypatch.setattr(random, "gauss", lambda mu, sigma, drawn=drawn: drawn)
            always = copy.copy(op)
            always.prob = 1.0
            got = seeded_call(always, image)
            monkeypatch.undo()
            np.testing.assert_array_equal(got, seeded_call(at_magnitude(op, clipped), image),
                                          err_msg=f"{op.name} drawn {drawn}")
    posterize = next(op for op in rand_augment.ops if op.name == "PosterizeIncreasing")
    monkeypatch.setattr(random, "gauss", lambda mu, sigma: mu + 100 * sigma)
    always = copy.copy(posterize)
    always.prob = 1.0
    assert not seeded_call(always, image).any()  # the top of mstd0.5 around 9: 0 bits, black
