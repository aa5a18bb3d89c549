import dataclasses
import pickle
import random
import urllib.error
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar
from PIL import Image
from sklearn.datasets import load_digits
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, Mixup
from timm.data.distributed_sampler import RepeatAugSampler
from timm.data.random_erasing import RandomErasing
from torch.utils.data import DistributedSampler

from learngene.data import DataConfig, build_datasets, build_eval_loader, build_loaders, build_mixup, build_splits
from learngene.data.digits import split_indices
from learngene.data.factory import holdout_indices
from learngene.data.seeded import seeded_rng
from learngene.errors import LearngeneError


def _stack(dataset):
    images, labels = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(images), list(labels)


def _raise_message(cfg):
    with pytest.raises(LearngeneError) as e:
        build_datasets(cfg)
    message = str(e.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits():
    return build_datasets(DataConfig())


def test_digits_split_is_exact_and_stratified(digits):
    train, val, info = digits
    test = build_splits(DataConfig())[0]["test"]
    assert (info.num_train, info.num_val, info.num_test, len(train), len(val), len(test)) == (
        1077, 360, 360, 1077, 360, 360)
    assert (info.num_classes, info.in_chans, info.img_size) == (10, 1, 8)
    full = Counter(load_digits().target.tolist())
    train_counts, val_counts, test_counts = (Counter(_stack(split)[1]) for split in (train, val, test))
    assert train_counts + val_counts + test_counts == full
    for label, n in full.items():  # stratified: every class keeps its share (360 / 1797) in val and in test
        assert abs(val_counts[label] - 360 / 1797 * n) <= 1 and abs(test_counts[label] - 360 / 1797 * n) <= 1
    # the three splits partition load_digits(), and each holds exactly the images at its positions
    indices = split_indices(load_digits().target)
    assert sorted(torch.cat(list(indices.values())).tolist()) == list(range(1797))
    raw = torch.tensor(load_digits().images, dtype=torch.float32)
    (mean,), (std,) = info.mean, info.std
    for split, dataset in zip(("train", "val", "test"), (train, val, test)):
        assert torch.allclose((_stack(dataset)[0][:, 0] * std + mean) * 16, raw[indices[split]], atol=1e-4)


def test_digits_normalized_with_training_stats(digits):
    train, val, info = digits
    (mean,), (std,) = info.mean, info.std
    train_images, _ = _stack(train)
    assert train_images.shape == (1077, 1, 8, 8)
    assert train_images.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert train_images.std(correction=0).item() == pytest.approx(1.0, abs=1e-5)
    # undoing the normalization gives back the raw 0..16 pixel levels, for val as well
    for images in (train_images, _stack(val)[0]):
        levels = (images * std + mean) * 16
        assert torch.allclose(levels, levels.round(), atol=1e-4)
        assert levels.round().min() == 0 and levels.round().max() == 16


def test_digits_resized_to_img_size():
    train, val, info = build_datasets(DataConfig(img_size=16))
    image, _ = train[0]
    assert image.shape == (1, 16, 16) and val[0][0].shape == (1, 16, 16)
    assert info.img_size == 16
    train_images, _ = _stack(train)
    assert train_images.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert train_images.std(correction=0).item() == pytest.approx(1.0, abs=1e-5)


def test_train_limit_keeps_the_first_images(digits):
    full_train, _, _ = digits
    train, val, info = build_datasets(DataConfig(train_limit=100))
    assert (len(train), info.num_train, info.num_val, info.num_test) == (100, 100, 360, 360)
    for i in (0, 57, 99):
        assert torch.equal(train[i][0], full_train[i][0]) and train[i][1] == full_train[i][1]


def _epoch_labels(loader, epoch):
    loader.sampler.set_epoch(epoch)
    return torch.cat([y for _, y in loader]).tolist()


def test_train_order_depends_only_on_seed_and_epoch():
    cfg = DataConfig(batch_size=128)
    train_loader, val_loader, _ = build_loaders(cfg, seed=3)
    assert isinstance(train_loader.sampler, DistributedSampler)
    assert len(train_loader) == 1077 // 128
    assert all(len(y) == 128 for _, y in train_loader)  # drop_last: full batches only

    first = _epoch_labels(train_loader, 1)
    again = _epoch_labels(build_loaders(cfg, seed=3)[0], 1)
    assert first == again
    assert first != _epoch_labels(train_loader, 2)
    assert first != _epoch_labels(build_loaders(cfg, seed=4)[0], 1)

    # validation: everything, in dataset order, last batch kept
    sizes = [len(y) for _, y in val_loader]
    assert sizes == [128, 128, 104]
    assert torch.cat([y for _, y in val_loader]).tolist() == _stack(val_loader.dataset)[1]


def test_repeated_aug_uses_timm_sampler_seeded():
    cfg = DataConfig(repeated_aug=True, batch_size=64)
    train_loader, _, _ = build_loaders(cfg, seed=0)
    assert isinstance(train_loader.sampler, RepeatAugSampler)
    # DeiT's sampler: each image three times in a row, then cut to a multiple of 256 for one process
    train_loader.sampler.set_epoch(5)
    indices = list(train_loader.sampler)
    assert len(indices) == 1077 // 256 * 256
    assert all(indices[i] == indices[i + 1] == indices[i + 2] for i in range(0, len(indices) - 2, 3))
    assert _epoch_labels(train_loader, 5) == _epoch_labels(build_loaders(cfg, seed=0)[0], 5)
    assert _epoch_labels(train_loader, 5) != _epoch_labels(train_loader, 6)
    assert _epoch_labels(train_loader, 5) != _epoch_labels(build_loaders(cfg, seed=1)[0], 5)


@pytest.mark.parametrize("repeated_aug", [False, True])
def test_adjacent_seeds_do_not_share_epoch_orders(repeated_aug):
    """seed + epoch (torch's and timm's rule) would give seed 4 epoch e exactly the order of seed 3 epoch e + 1."""
    cfg = DataConfig(batch_size=64, repeated_aug=repeated_aug)

    def orders(seed):
        sampler, epochs = build_loaders(cfg, seed=seed)[0].sampler, []
        for epoch in range(4):
            sampler.set_epoch(epoch)
            epochs.append(list(sampler))
        return epochs

    three, four = orders(3), orders(4)
    assert all(a != b for a in three for b in four)  # no epoch of one run has an epoch order of the other
    assert len({tuple(order) for order in three}) == 4 and three == orders(3)


def test_negative_num_workers_is_one_line():
    for build in (lambda cfg: build_loaders(cfg, seed=0), lambda cfg: build_eval_loader(cfg, "val")):
        with pytest.raises(LearngeneError, match=r"^data.num_workers must be 0 \(load in the main process\) or a "
                                                 r"number of loader processes, got -1$"):
            build(DataConfig(num_workers=-1))


def _translations(image, shift, background):
    """Every translation of ``image`` by offsets in [-shift, shift], with background filling the border."""
    size = image.shape[-1]
    padded = torch.nn.functional.pad(image, (shift,) * 4, value=background)
    return [padded[:, t:t + size, l:l + size] for t in range(2 * shift + 1) for l in range(2 * shift + 1)]


def test_digits_shift_translates_training_images_only(digits):
    plain_train, plain_val, info = digits
    train, val, _ = build_datasets(DataConfig(digits_shift=2))
    background = -info.mean[0] / info.std[0]
    torch.manual_seed(0)
    shifted = [train[i] for i in range(40)]
    changed = 0
    for i, (image, label) in enumerate(shifted):
        original, original_label = plain_train[i]
        assert label == original_label
        assert any(torch.equal(image, t) for t in _translations(original, 2, background))
        changed += not torch.equal(image, original)
    assert changed > 20  # 24 of 25 offsets move the image
    torch.manual_seed(0)  # offsets come from torch's global RNG: restoring it repeats them
    assert all(torch.equal(train[i][0], shifted[i][0]) for i in range(40))
    assert all(torch.equal(val[i][0], plain_val[i][0]) for i in range(0, 360, 37))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_shifted_batches_depend_only_on_seed_epoch_and_index(num_workers):
    cfg = DataConfig(digits_shift=1, batch_size=32, train_limit=64, num_workers=num_workers)
    train_loader, _, _ = build_loaders(cfg, seed=3)
    raw = build_datasets(cfg)[0]

    def epoch(loader, epoch, global_seed):
        loader.sampler.set_epoch(epoch)
        torch.manual_seed(global_seed)  # whatever the global RNG holds (a student's draws) does not matter
        return [x for x, _ in loader]

    batches = epoch(train_loader, 1, global_seed=7)
    assert len(batches) == 2 and batches[0].shape == (32, 1, 8, 8) and batches[0].dtype == torch.float32
    assert all(torch.equal(a, b) for a, b in zip(batches, epoch(train_loader, 1, global_seed=8)))
    assert not torch.equal(batches[0], epoch(train_loader, 2, global_seed=7)[0])
    assert not torch.equal(batches[0], epoch(build_loaders(cfg, seed=4)[0], 1, global_seed=7)[0])
    # each image is the dataset's item drawn under its own seed (seed, epoch, index, draw 0)
    train_loader.sampler.set_epoch(1)
    order = [index for index, _ in train_loader.sampler]
    for position in (0, 5, 33):
        with seeded_rng(3, 1, order[position], 0):
            expected = raw[order[position]][0]
        assert torch.equal(torch.cat(batches)[position], expected)
    # in the main process the global generators are left as they were
    if num_workers == 0:
        state = torch.get_rng_state(), random.getstate(), np.random.get_state()[1].tolist()
        image = train_loader.dataset[(0, 0)][0]
        assert torch.equal(image, train_loader.dataset[(0, 0)][0])
        assert not all(torch.equal(image, train_loader.dataset[(0, draw)][0]) for draw in range(1, 4))
        assert torch.equal(torch.get_rng_state(), state[0])
        assert (random.getstate(), np.random.get_state()[1].tolist()) == state[1:]


def test_repeated_copies_of_an_image_get_their_own_draws():
    cfg = DataConfig(repeated_aug=True, digits_shift=2, batch_size=64)
    train_loader, _, _ = build_loaders(cfg, seed=0)
    train_loader.sampler.set_epoch(5)
    keys = list(train_loader.sampler)
    assert [draw for _, draw in keys[:6]] == [0, 1, 2, 0, 1, 2]  # DeiT's three copies in a row
    images = torch.cat([x for x, _ in train_loader])
    copies = images[:len(images) // 3 * 3].view(-1, 3, 1, 8, 8)
    differ = [not (torch.equal(c[0], c[1]) and torch.equal(c[1], c[2])) for c in copies]
    assert sum(differ) > 0.9 * len(differ)  # 25 offsets each: three equal draws are rare


def test_bad_digits_configs():
    assert "fashion_mnist" in _raise_message(DataConfig(name="caltech256"))
    assert "digits_shift" in _raise_message(DataConfig(digits_shift=-1))
    assert "set data.digits_shift=0" in _raise_message(DataConfig(digits_shift=1, augment=False))
    assert "data.scale=[0.5]" in _raise_message(DataConfig(scale=[0.5]))
    assert "data.scale=[0.5, 1.5]" in _raise_message(DataConfig(scale=[0.5, 1.5]))
    assert "data.ratio=[1.3, 0.7]" in _raise_message(DataConfig(ratio=[1.3, 0.7]))
    assert "data.hflip" in _raise_message(DataConfig(hflip=1.5))
    with pytest.raises(LearngeneError, match="batch_size 2000"):
        build_loaders(DataConfig(batch_size=2000), seed=0)


def test_build_mixup():
    assert build_mixup(DataConfig(smoothing=0.1), 10) is None
    mixup = build_mixup(DataConfig(mixup=0.8, cutmix=1.0, smoothing=0.1, batch_size=4), 10)
    assert isinstance(mixup, Mixup)
    assert (mixup.mixup_alpha, mixup.cutmix_alpha, mixup.label_smoothing, mixup.num_classes) == (0.8, 1.0, 0.1, 10)
    x, target = mixup(torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]))
    assert x.shape == (4, 1, 8, 8) and target.shape == (4, 10)
    assert torch.allclose(target.sum(1), torch.ones(4))
    with pytest.raises(LearngeneError, match="even"):
        build_mixup(DataConfig(mixup=0.8, batch_size=5), 10)


# ---------------------------------------------------------------- imagefolder


def _write_pngs(folder, classes, per_class=4, size=16, seed=0):
    rng = np.random.default_rng(seed)
    pixels = {}
    for name in classes:
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            array = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            path = folder / name / f"{i}.png"
            Image.fromarray(array).save(path)
            pixels[str(path)] = array
    return pixels


def _unnormalize(image):
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_DEFAULT_STD).view(3, 1, 1)
    return image * std + mean


def test_imagefolder_loads_classes_and_images(tmp_path):
    train_pixels = _write_pngs(tmp_path / "train", ["cat", "dog"])
    val_pixels = _write_pngs(tmp_path / "val", ["cat", "dog"], seed=1)
    cfg = DataConfig(name="imagefolder", root=str(tmp_path), img_size=16, crop_pct=1.0, batch_size=2,
                     val_holdout=0.25)
    splits, info = build_splits(cfg)
    train, val, test = splits["train"], splits["val"], splits["test"]
    # train/ and val/ only: val/ is the test split, and one of each class's four training images is held out as val
    assert train.dataset.classes == test.classes == ["cat", "dog"]
    assert (info.num_classes, info.in_chans, info.img_size, info.num_train, info.num_val, info.num_test) == (
        2, 3, 16, 6, 2, 8)
    assert info.mean == IMAGENET_DEFAULT_MEAN and info.std == IMAGENET_DEFAULT_STD
    assert sorted(train.indices + val.indices) == list(range(8)) and [val[i][1] for i in range(2)] == [0, 1]
    assert train[0][0].shape == (3, 16, 16)
    assert build_splits(cfg)[0]["val"].indices == val.indices  # the same images on every run
    # eval at the native size with crop_pct 1: the PNG's pixels, ImageNet-normalized (held-out val and test alike)
    held_out = [(val.dataset.samples[j][0], val[i][0]) for i, j in enumerate(val.indices)]
    for path, image in held_out:
        expected = torch.from_numpy(train_pixels[path]).permute(2, 0, 1) / 255
        assert torch.allclose(_unnormalize(image), expected, atol=1e-5)
    for (path, _), i in zip(test.samples, range(8)):
        expected = torch.from_numpy(val_pixels[path]).permute(2, 0, 1) / 255
        assert torch.allclose(_unnormalize(test[i][0]), expected, atol=1e-5)

    train_loader, val_loader, _ = build_loaders(cfg, seed=0)
    assert [x.shape for x, _ in train_loader] == [(2, 3, 16, 16)] * 3
    assert sum(len(y) for _, y in val_loader) == 2
    assert torch.cat([y for _, y in build_eval_loader(cfg, "test")]).tolist() == [0] * 4 + [1] * 4


def test_imagefolder_with_a_test_folder_keeps_its_three_splits(tmp_path):
    for split, seed in (("train", 0), ("val", 1), ("test", 2)):
        _write_pngs(tmp_path / split, ["cat", "dog"], seed=seed)
    splits, info = build_splits(DataConfig(name="imagefolder", root=str(tmp_path), img_size=16))
    assert (info.num_train, info.num_val, info.num_test) == (8, 8, 8)
    assert [Path(splits[s].root).name for s in ("train", "val", "test")] == ["train", "val", "test"]


def test_imagefolder_training_transform_follows_config(tmp_path):
    _write_pngs(tmp_path / "train", ["a", "b"])
    _write_pngs(tmp_path / "val", ["a", "b"])
    cfg = DataConfig(
        name="imagefolder", root=str(tmp_path), img_size=12, auto_augment="rand-m9-mstd0.5-inc1", reprob=0.25
    )
    train, val, _ = build_datasets(cfg)
    steps = train.dataset.transform.transforms
    assert any(isinstance(t, RandomErasing) and t.probability == 0.25 for t in steps)
    assert any("RandAugment" in type(t).__name__ for t in steps)
    assert train[0][0].shape == val[0][0].shape == (3, 12, 12)


def test_imagefolder_transform_knobs_and_no_augmentation(tmp_path):
    _write_pngs(tmp_path / "train", ["a", "b"], size=20)
    _write_pngs(tmp_path / "val", ["a", "b"], size=20)
    cfg = DataConfig(name="imagefolder", root=str(tmp_path), img_size=16, scale=[0.5, 0.9], ratio=[0.8, 1.25],
                     hflip=0.0)
    steps = build_datasets(cfg)[0].dataset.transform.transforms
    crop = steps[0]
    assert type(crop).__name__ == "RandomResizedCropAndInterpolation"
    assert (crop.scale, crop.ratio) == ((0.5, 0.9), (0.8, 1.25))
    assert not any("Flip" in type(t).__name__ for t in steps)
    flips = [t for t in build_datasets(DataConfig(name="imagefolder", root=str(tmp_path), img_size=16, hflip=0.3))[0]
             .dataset.transform.transforms if "Flip" in type(t).__name__]
    assert [t.p for t in flips] == [0.3]

    # augment=false: training images get the evaluation transform, and loaders leave them unseeded
    cfg = DataConfig(name="imagefolder", root=str(tmp_path), img_size=16, augment=False, batch_size=2)
    splits, _ = build_splits(cfg)
    train, test = splits["train"], splits["test"]
    assert repr(train.dataset.transform) == repr(test.transform)
    assert torch.equal(train[0][0], train[0][0])
    assert isinstance(build_loaders(cfg, seed=0)[0].sampler, DistributedSampler)


def _truncate(path, keep=60):
    path.write_bytes(path.read_bytes()[:keep])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_unreadable_image_stops_with_one_line_naming_it(tmp_path, num_workers):
    _write_pngs(tmp_path / "train", ["a", "b"])
    _write_pngs(tmp_path / "val", ["a", "b"])
    bad = tmp_path / "train" / "b" / "2.png"
    _truncate(bad)
    cfg = DataConfig(name="imagefolder", root=str(tmp_path), img_size=16, batch_size=6, val_holdout=0.25,
                     num_workers=num_workers)
    train_loader, _, _ = build_loaders(cfg, seed=0)
    with pytest.raises(LearngeneError) as e:
        list(train_loader)
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"cannot read image {bad} (") and "replace or delete" in message


def test_imagefolder_errors(tmp_path):
    assert "data.root is empty" in _raise_message(DataConfig(name="imagefolder"))
    assert "is not a folder" in _raise_message(DataConfig(name="imagefolder", root=str(tmp_path / "nope")))

    _write_pngs(tmp_path / "train", ["a", "b"])
    message = _raise_message(DataConfig(name="imagefolder", root=str(tmp_path)))
    assert f"missing folder {tmp_path / 'val'}" in message and "train/<class>/<image>" in message

    _write_pngs(tmp_path / "val", ["a", "c"])
    message = _raise_message(DataConfig(name="imagefolder", root=str(tmp_path)))
    assert "class folders differ" in message and "only in train: ['b']" in message and "only in val: ['c']" in message

    (tmp_path / "val" / "b").mkdir()  # a class folder without images
    assert str(tmp_path / "val") in _raise_message(DataConfig(name="imagefolder", root=str(tmp_path)))


# ---------------------------------------------------------------- CIFAR


def _write_cifar(root, cifar10: bool, per_file=2, seed=0):
    """Tiny files in torchvision's CIFAR layout; returns (train, test) as (uint8 HWC arrays, labels)."""
    rng = np.random.default_rng(seed)
    if cifar10:
        folder, train_files, test_file = "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch"
        meta, meta_key, label_key, num_classes = "batches.meta", "label_names", "labels", 10
    else:
        folder, train_files, test_file = "cifar-100-python", ["train"], "test"
        meta, meta_key, label_key, num_classes = "meta", "fine_label_names", "fine_labels", 100
    (root / folder).mkdir(parents=True)
    splits = {}
    for split, files, n in (("train", train_files, per_file), ("test", [test_file], 3)):
        arrays, labels = [], []
        for name in files:
            data = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
            batch_labels = rng.integers(0, num_classes, n).tolist()
            with open(root / folder / name, "wb") as f:
                pickle.dump({"data": data, label_key: batch_labels}, f)
            arrays.append(data.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1))
            labels += batch_labels
        splits[split] = (np.concatenate(arrays), labels)
    with open(root / folder / meta, "wb") as f:
        pickle.dump({meta_key: [f"class{i}" for i in range(num_classes)]}, f)
    return splits["train"], splits["test"]


@pytest.fixture
def skip_cifar_md5(monkeypatch):
    """Generated files cannot match torchvision's md5 sums: check only that they exist."""
    check_integrity = torchvision.datasets.cifar.check_integrity
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: check_integrity(path))


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_loads_torchvision_files(tmp_path, skip_cifar_md5, name):
    (train_pixels, train_labels), (test_pixels, test_labels) = _write_cifar(
        tmp_path, cifar10=name == "cifar10", per_file=8 if name == "cifar10" else 40)
    cfg = DataConfig(name=name, root=str(tmp_path), img_size=32, crop_pct=1.0, batch_size=2)
    splits, info = build_splits(cfg)
    train, val, test = splits["train"], splits["val"], splits["test"]
    num_classes = 10 if name == "cifar10" else 100
    assert (info.num_classes, info.in_chans, info.img_size) == (num_classes, 3, 32)
    assert (info.num_train + info.num_val, info.num_test) == (len(train_labels), 3) and info.num_val > 0
    assert sorted(train.indices + val.indices) == list(range(len(train_labels)))
    assert [train[i][1] for i in range(len(train))] == [train_labels[j] for j in train.indices]
    assert train[0][0].shape == (3, 32, 32)
    for i, j in enumerate(val.indices):  # held-out training images, with the evaluation transform
        image, label = val[i]
        assert label == train_labels[j]
        assert torch.allclose(_unnormalize(image), torch.from_numpy(train_pixels[j]).permute(2, 0, 1) / 255, atol=1e-5)
    for i in range(3):
        image, label = test[i]
        assert label == test_labels[i]
        assert torch.allclose(_unnormalize(image), torch.from_numpy(test_pixels[i]).permute(2, 0, 1) / 255, atol=1e-5)

    resized, _, _ = build_datasets(DataConfig(name=name, root=str(tmp_path), img_size=48))
    assert resized[0][0].shape == (3, 48, 48)


def test_holdout_is_stratified_and_refuses_to_hold_out_nothing(tmp_path, skip_cifar_md5):
    kept, held_out = holdout_indices([0] * 10 + [1] * 20 + [2], 0.1)
    assert sorted(kept + held_out) == list(range(31))
    assert [sum(1 for i in held_out if lo <= i < hi) for lo, hi in ((0, 10), (10, 30), (30, 31))] == [1, 2, 0]
    _write_cifar(tmp_path, cifar10=False, per_file=2)  # 10 images over 100 classes: no class has two
    assert "holds out no training image" in _raise_message(DataConfig(name="cifar100", root=str(tmp_path)))
    assert "val_holdout must be a fraction" in _raise_message(DataConfig(val_holdout=1.0))


def test_cifar_download_is_passed_through(tmp_path, skip_cifar_md5, monkeypatch):
    root = tmp_path / "data"
    assert "data.download=true" in _raise_message(DataConfig(name="cifar10", root=str(root)))
    calls = []

    def fake_download(self):  # what torchvision's download leaves behind: the unpacked files under root
        calls.append(self.root)
        _write_cifar(Path(self.root), cifar10=True, per_file=4)

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", fake_download)
    splits, info = build_splits(DataConfig(name="cifar10", root=str(root), download=True, img_size=32))
    assert calls == [str(root)] and (info.num_train + info.num_val, info.num_test) == (20, 3)


# ---------------------------------------------------------------- MNIST and Fashion-MNIST


def _write_idx(path, array):
    """torchvision's raw MNIST format: a big-endian header (uint8 type, number of dims, each dim), then the bytes."""
    path.write_bytes(bytes([0, 0, 8, array.ndim]) + np.array(array.shape, dtype=">i4").tobytes()
                     + array.astype(np.uint8).tobytes())


def _write_mnist(root, folder="MNIST", train=40, test=10, seed=0):
    """Tiny files in torchvision's MNIST layout (root/<folder>/raw/); returns (train, test) as (images, labels)."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    splits = []
    for prefix, n in (("train", train), ("t10k", test)):
        images, labels = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), np.arange(n) % 10
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        splits.append((images, labels.tolist()))
    return splits


@pytest.mark.parametrize("name,folder,mean,std", [("mnist", "MNIST", 0.1307, 0.3081),
                                                  ("fashion_mnist", "FashionMNIST", 0.2860, 0.3530)])
def test_mnist_loads_torchvision_files_in_one_channel(tmp_path, name, folder, mean, std):
    (train_pixels, train_labels), (test_pixels, test_labels) = _write_mnist(tmp_path, folder)
    cfg = DataConfig(name=name, root=str(tmp_path), img_size=28, crop_pct=1.0, batch_size=4, scale=[0.8, 1.0],
                     hflip=0.0)
    splits, info = build_splits(cfg)
    train, val, test = splits["train"], splits["val"], splits["test"]
    assert (info.num_classes, info.in_chans, info.img_size, info.mean, info.std) == (10, 1, 28, (mean,), (std,))
    assert (info.num_train, info.num_val, info.num_test) == (30, 10, 10)  # one of each class's 4 held out as val
    for i, j in enumerate(val.indices):  # evaluation transform: the pixels, normalized with the training statistics
        image, label = val[i]
        assert image.shape == (1, 28, 28) and label == train_labels[j]
        assert torch.allclose(image * std + mean, torch.from_numpy(train_pixels[j] / 255).float()[None], atol=1e-5)
    assert torch.allclose(test[3][0] * std + mean, torch.from_numpy(test_pixels[3] / 255).float()[None], atol=1e-5)
    assert train[0][0].shape == (1, 28, 28)
    train_loader, _, _ = build_loaders(cfg, seed=0)
    assert [x.shape for x, _ in train_loader] == [(4, 1, 28, 28)] * 7


def test_mnist_missing_files_name_the_download_flag(tmp_path):
    message = _raise_message(DataConfig(name="mnist", root=str(tmp_path)))
    assert f"missing folder {tmp_path / 'MNIST' / 'raw'}" in message and "data.download=true" in message
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    message = _raise_message(DataConfig(name="mnist", root=str(tmp_path)))
    assert "missing or corrupted files" in message and "data.download=true" in message


def test_mnist_download_goes_into_the_root(tmp_path, monkeypatch):
    calls = []

    def fake_download(self):
        calls.append((type(self).__name__, self.root))
        if not (Path(self.root) / "FashionMNIST").exists():
            _write_mnist(Path(self.root), "FashionMNIST")

    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "download", fake_download)
    root = tmp_path / "data"
    _, info = build_splits(DataConfig(name="fashion_mnist", root=str(root), download=True, img_size=28))
    assert calls == [("FashionMNIST", str(root))] and info.num_test == 10
    assert not (root / "MNIST").exists()


@pytest.mark.parametrize("error", [urllib.error.URLError(OSError(101, "Network is unreachable")),
                                   RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://"
                                                "ossci-datasets.s3.amazonaws.com/mnist/, got:\n<urlopen error "
                                                "[Errno -3] Temporary failure in name resolution>\n")])
def test_mnist_download_offline_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, error):
    def offline(self):
        Path(self.raw_folder).mkdir(parents=True, exist_ok=True)  # as torchvision does before its first request
        raise error

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    root = tmp_path / "data"
    message = _raise_message(DataConfig(name="mnist", root=str(root), download=True))
    assert message.startswith(f"could not download mnist into {root} (") and "check the network" in message
    assert "Network is unreachable" in message or "name resolution" in message
    assert not root.exists()  # the folders the attempt created are gone
    root.mkdir()
    _raise_message(DataConfig(name="mnist", root=str(root), download=True))
    assert list(root.iterdir()) == []


def test_cifar_errors(tmp_path):
    message = _raise_message(DataConfig(name="cifar10", root=str(tmp_path)))
    assert f"missing folder {tmp_path / 'cifar-10-batches-py'}" in message and "cifar-10-python.tar.gz" in message
    assert "cifar-100-python" in _raise_message(DataConfig(name="cifar100", root=str(tmp_path)))
    assert "data.root is empty" in _raise_message(DataConfig(name="cifar10"))

    _write_cifar(tmp_path, cifar10=True)  # real torchvision checks: the generated files fail their md5
    assert "missing or corrupted" in _raise_message(DataConfig(name="cifar10", root=str(tmp_path)))


# ---------------------------------------------------------------- benchmark presets


@pytest.mark.parametrize("preset", ["mnist", "fashion_mnist", "cifar10", "cifar100"])
def test_benchmark_presets_read_their_dataset_from_the_root(tmp_path, skip_cifar_md5, monkeypatch, preset):
    """Every part of a preset trains on the preset's dataset, in the shape its models take; with the files under
    data.root it loads them, and asked to download while offline it stops with one line."""
    from learngene.benchmark.config import BenchmarkConfig
    from learngene.config import TrainConfig, load_config
    from tools.benchmark import PRESETS

    cfg = load_config(PRESETS[preset], [], BenchmarkConfig)
    parts = {name: load_config(getattr(cfg, name).config, getattr(cfg, name).overrides, TrainConfig)
             for name in ("ancestry", "sws_aux", "tleg_aux", "simple_lg", "finetune", "trained")}
    assert {part.data.name for part in parts.values()} == {preset} and cfg.methods and cfg.depths == [6, 12]
    data = parts["ancestry"].data
    if preset.startswith("cifar"):
        _write_cifar(tmp_path, cifar10=preset == "cifar10", per_file=40 if preset == "cifar100" else 30)
    else:
        _write_mnist(tmp_path, "MNIST" if preset == "mnist" else "FashionMNIST", train=300)
    local = dataclasses.replace(data, root=str(tmp_path), batch_size=8)
    loader, _, info = build_loaders(local, seed=0)
    images, labels = next(iter(loader))
    for name, part in parts.items():
        assert part.data == data, name  # one data config for every part
        kwargs = part.model.kwargs
        if name != "finetune":  # the fine-tune's model comes from the Des-Net folder
            assert (kwargs["img_size"], kwargs["in_chans"], kwargs.get("num_classes", 10)) == (
                info.img_size, info.in_chans, info.num_classes)
            assert (kwargs["img_size"] // kwargs["patch_size"]) ** 2 == 16
    assert images.shape == (8, info.in_chans, info.img_size, info.img_size)

    def offline(self):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(type(loader.dataset.dataset.dataset), "download", offline)
    empty = tmp_path / "empty"
    message = _raise_message(dataclasses.replace(data, root=str(empty), download=True))
    assert message.startswith(f"could not download {preset} into {empty}") and "name resolution" in message
