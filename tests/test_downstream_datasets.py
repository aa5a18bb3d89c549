"""The papers' downstream datasets, read by torchvision from small files in each dataset's own on-disk format."""
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import torchvision.datasets.flowers102
import torchvision.datasets.stl10
import torchvision.datasets.svhn
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from learngene.data import DataConfig, build_splits
from learngene.data.factory import DOWNSTREAM, EUROSAT_TEST_FRACTION, targets_of
from learngene.errors import LearngeneError

VAL_HOLDOUT = 0.25


def colour(label: int) -> int:
    """Every image of class ``label`` is one flat grey, so an item's pixels show which file it was read from."""
    return (37 * label) % 200 + 30


def write_jpg(path: Path, label: int, size=12) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (colour(label),) * 3).save(path, quality=100)


def held_out(per_class: list[int], fraction: float) -> int:
    """The documented holdout rule: round(fraction * n) images of a class of n, at least one and never all."""
    return sum(min(max(round(fraction * n), 1), n - 1) for n in per_class)


# ------------------------------------------------------- writers: each returns the files' split labels and classes


def write_food101(root: Path):
    classes = ["apple_pie", "baby_back_ribs", "ramen"]
    meta = {"train": {}, "test": {}}
    labels = {"train": [], "test": []}
    for label, name in enumerate(classes):
        for split, count in (("train", 4), ("test", 2)):
            ids = [f"{name}/{split}{i}" for i in range(count)]
            meta[split][name] = ids
            labels[split] += [label] * count
            for image_id in ids:
                write_jpg(root / "food-101" / "images" / f"{image_id}.jpg", label)
    (root / "food-101" / "meta").mkdir(parents=True)
    for split in meta:
        (root / "food-101" / "meta" / f"{split}.json").write_text(json.dumps(meta[split]))
    return labels, classes


def write_stanford_cars(root: Path):
    classes = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012"]
    base = root / "stanford_cars"
    (base / "devkit").mkdir(parents=True)
    scipy.io.savemat(base / "devkit" / "cars_meta.mat", {"class_names": np.array(classes, dtype=object)})
    labels = {"train": [0, 1, 0, 1, 0, 1, 0, 1], "test": [1, 0, 1, 0]}
    for split, mat in (("train", base / "devkit" / "cars_train_annos.mat"),
                       ("test", base / "cars_test_annos_withlabels.mat")):
        annotations = np.zeros(len(labels[split]), dtype=[("fname", object), ("class", object)])
        annotations["fname"] = [f"{i:05d}.jpg" for i in range(len(labels[split]))]
        annotations["class"] = [label + 1 for label in labels[split]]  # the devkit counts classes from 1
        scipy.io.savemat(mat, {"annotations": annotations})
        for name, label in zip(annotations["fname"], labels[split]):
            write_jpg(base / f"cars_{split}" / name, label)
    return labels, classes


def write_flowers102(root: Path):
    base = root / "flowers-102"
    image_labels = [0, 4, 101, 0, 4, 101, 0, 4, 101, 0, 4, 101, 0, 4]  # image_00001 ... image_00014
    for image_id, label in enumerate(image_labels, 1):
        write_jpg(base / "jpg" / f"image_{image_id:05d}.jpg", label)
    scipy.io.savemat(base / "imagelabels.mat", {"labels": np.array([image_labels]) + 1})
    ids = {"train": [1, 2, 3, 4, 5, 6], "val": [7, 8, 9], "test": [10, 11, 12, 13, 14]}
    scipy.io.savemat(base / "setid.mat", {"trnid": np.array([ids["train"]]), "valid": np.array([ids["val"]]),
                                          "tstid": np.array([ids["test"]])})
    labels = {split: [image_labels[i - 1] for i in members] for split, members in ids.items()}
    return labels, torchvision.datasets.Flowers102.classes


def write_oxford_iiit_pet(root: Path):
    breeds = ["Abyssinian", "american_bulldog", "Bengal"]  # the species is in the case: cats upper, dogs lower
    base = root / "oxford-iiit-pet"
    (base / "annotations").mkdir(parents=True)
    labels = {"train": [], "test": []}
    for split, file, count in (("train", "trainval.txt", 4), ("test", "test.txt", 2)):
        lines = []
        for label, breed in enumerate(breeds):
            for i in range(count):
                image_id = f"{breed}_{split}{i}"
                lines.append(f"{image_id} {label + 1} {1 if breed[0].isupper() else 2} {i + 1}")
                labels[split].append(label)
                write_jpg(base / "images" / f"{image_id}.jpg", label)
        (base / "annotations" / file).write_text("\n".join(lines) + "\n")
    return labels, ["Abyssinian", "American Bulldog", "Bengal"]


def write_stl10(root: Path):
    classes = ["airplane", "bird", "car"]
    base = root / "stl10_binary"
    base.mkdir(parents=True)
    labels = {"train": [0, 1, 2] * 4, "test": [2, 1, 0] * 2}
    for split in labels:
        pixels = np.stack([np.full((3, 96, 96), colour(label), np.uint8) for label in labels[split]])
        pixels.tofile(base / f"{split}_X.bin")
        (np.array(labels[split], np.uint8) + 1).tofile(base / f"{split}_y.bin")
    (base / "unlabeled_X.bin").write_bytes(b"")  # torchvision checks it exists; the labelled splits never read it
    (base / "class_names.txt").write_text("\n".join(classes) + "\n")
    return labels, classes


def write_dtd(root: Path):
    classes = ["banded", "blotchy", "zigzagged"]
    base = root / "dtd" / "dtd"
    (base / "labels").mkdir(parents=True)
    labels = {}
    for split, count in (("train", 3), ("val", 2), ("test", 1)):
        lines = []
        for label, name in enumerate(classes):
            for i in range(count):
                lines.append(f"{name}/{name}_{split}{i}.jpg")
                write_jpg(base / "images" / name / f"{name}_{split}{i}.jpg", label)
        (base / "labels" / f"{split}1.txt").write_text("\n".join(lines) + "\n")
        labels[split] = [label for label in range(len(classes)) for _ in range(count)]
    return labels, classes


def write_svhn(root: Path):
    root.mkdir(parents=True, exist_ok=True)
    labels = {"train": [0, 1, 9] * 4, "test": [9, 1, 0] * 2}
    for split in labels:
        pixels = np.stack([np.full((32, 32, 3), colour(label), np.uint8) for label in labels[split]], axis=3)
        stored = np.array([[label if label else 10] for label in labels[split]])  # SVHN files label the digit 0 as 10
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": pixels, "y": stored})
    return labels, [str(digit) for digit in range(10)]


def write_eurosat(root: Path):
    classes = ["AnnualCrop", "Forest", "River"]
    for label, name in enumerate(classes):
        for i in range(10):
            write_jpg(root / "eurosat" / "2750" / name / f"{name}_{i + 1}.jpg", label)
    return {"all": [label for label in range(len(classes)) for _ in range(10)]}, classes


WRITERS = {"food101": write_food101, "stanford_cars": write_stanford_cars, "flowers102": write_flowers102,
           "oxford_iiit_pet": write_oxford_iiit_pet, "stl10": write_stl10, "dtd": write_dtd, "svhn": write_svhn,
           "eurosat": write_eurosat}


@pytest.fixture
def skip_md5(monkeypatch):
    """Generated files cannot match torchvision's md5 sums: check only that they exist (as test_data does for CIFAR)."""
    for module in (torchvision.datasets.flowers102, torchvision.datasets.stl10, torchvision.datasets.svhn):
        check_integrity = module.check_integrity
        monkeypatch.setattr(module, "check_integrity", lambda path, md5=None, check=check_integrity: check(path))


def config(name: str, root: Path, **overrides) -> DataConfig:
    return DataConfig(name=name, root=str(root), img_size=8, crop_pct=1.0, augment=False, val_holdout=VAL_HOLDOUT,
                      **overrides)


def grey_of(image: torch.Tensor) -> float:
    """An item's mean pixel value (0-255) once ImageNet's normalization is undone."""
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_DEFAULT_STD).view(3, 1, 1)
    return float((image * std + mean).mean() * 255)


def test_every_downstream_dataset_has_a_writer():
    assert sorted(WRITERS) == sorted(DOWNSTREAM)


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_downstream_dataset_loads_its_real_format(tmp_path, skip_md5, name):
    labels, classes = WRITERS[name](tmp_path)
    splits, info = build_splits(config(name, tmp_path))

    assert (info.num_classes, info.in_chans) == (len(classes), 3)
    assert (info.mean, info.std) == (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
    if "val" in labels:  # Flowers-102 and DTD: the dataset's own three splits, as they are
        assert (info.num_train, info.num_val, info.num_test) == tuple(len(labels[s]) for s in ("train", "val", "test"))
        expected = labels
    else:
        if "all" in labels:  # EuroSAT: a stratified fraction of the one set is the test split
            per_class = list(Counter(labels["all"]).values())
            num_test = held_out(per_class, EUROSAT_TEST_FRACTION)
            train_per_class = [n - held_out([n], EUROSAT_TEST_FRACTION) for n in per_class]
            all_labels = labels["all"]
        else:
            num_test, all_labels = len(labels["test"]), labels["train"]
            train_per_class = list(Counter(labels["train"]).values())
        num_val = held_out(train_per_class, VAL_HOLDOUT)
        assert (info.num_train, info.num_val, info.num_test) == (sum(train_per_class) - num_val, num_val, num_test)
        # every split's items come from the files' images of their label, and the splits share no image
        expected = None
        assert sorted(targets_of(splits["train"]) + targets_of(splits["val"]) + targets_of(splits["test"])) == \
            sorted(all_labels + labels.get("test", []))
    for split, dataset in splits.items():
        items = [dataset[i] for i in range(len(dataset))]
        assert [label for _, label in items] == targets_of(dataset)
        if expected is not None:
            assert targets_of(dataset) == expected[split]
        for image, label in items:
            assert image.shape == (3, 8, 8)
            assert abs(grey_of(image) - colour(label)) < 2
    for dataset in (splits["test"], *[d.dataset for d in (splits["train"], splits["val"]) if hasattr(d, "dataset")]):
        assert list(dataset.classes) == list(classes)


def test_two_split_datasets_hold_val_out_of_train_by_class(tmp_path, skip_md5):
    write_food101(tmp_path)
    splits, _ = build_splits(config("food101", tmp_path))
    train, val = splits["train"], splits["val"]
    assert sorted(train.indices + val.indices) == list(range(12)) and targets_of(val) == [0, 1, 2]
    assert build_splits(config("food101", tmp_path))[0]["val"].indices == val.indices  # the same images every run


def _error(cfg: DataConfig) -> str:
    with pytest.raises(LearngeneError) as e:
        build_splits(cfg)
    assert "\n" not in str(e.value)
    return str(e.value)


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_missing_files_name_the_folder_and_what_to_put_there(tmp_path, name):
    spec = DOWNSTREAM[name]
    folder = tmp_path / spec.folder
    message = _error(config(name, tmp_path))
    if spec.folder:
        assert f"missing folder {folder}" in message
    else:  # SVHN's files lie in the root itself
        assert f"missing {', '.join(spec.files)} in {tmp_path}" in message
    assert f"(from {spec.source})" in message and ("data.download=true" in message) == spec.downloadable


def test_missing_file_inside_the_folder_is_named(tmp_path):
    write_food101(tmp_path)
    (tmp_path / "food-101" / "meta" / "test.json").unlink()
    message = _error(config("food101", tmp_path))
    assert f"missing meta/test.json in {tmp_path / 'food-101'}" in message


def test_corrupted_files_fail_torchvisions_md5_in_one_line(tmp_path):
    write_svhn(tmp_path)  # real torchvision checks: generated files fail their md5
    message = _error(config("svhn", tmp_path))
    assert f"{tmp_path} has corrupted files" in message and "data.download=true" in message


def test_stanford_cars_cannot_be_downloaded(tmp_path):
    message = _error(config("stanford_cars", tmp_path, download=True))
    assert "torchvision cannot download stanford_cars" in message and "devkit/cars_meta.mat" in message
    assert not (tmp_path / "stanford_cars").exists()


def test_download_goes_through_torchvision_into_the_root(tmp_path, skip_md5, monkeypatch):
    root = tmp_path / "data"
    calls = []

    def fake_download(self):  # what torchvision's download leaves behind: the unpacked files under root
        calls.append(self.root)
        if not (Path(self.root) / "oxford-iiit-pet").exists():
            write_oxford_iiit_pet(Path(self.root))

    monkeypatch.setattr(torchvision.datasets.OxfordIIITPet, "_download", fake_download)
    splits, info = build_splits(config("oxford_iiit_pet", root, download=True))
    assert calls == [str(root)] * 2 and (info.num_train + info.num_val, info.num_test) == (12, 6)
