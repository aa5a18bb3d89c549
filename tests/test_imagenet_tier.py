"""The ImageNet tier at toy scale: every shipped ImageNet recipe and benchmark config runs end to end on CPU.

A synthetic JPEG ImageFolder (2 classes, 3 training and 1 validation image each, of unequal sizes above 224 px so
RandomResizedCrop and the evaluation resize both act) replaces ImageNet. Every ``configs/imagenet/*.yaml`` runs
through the real tools, from a working folder holding ``configs/`` like a checkout, with the overrides a user
without ImageNet or network needs: ``data.root``, ``data.batch_size=2``, ``data.num_workers=1``,
``optim.epochs``, ``model.pretrained=false`` for the timm-pretrained parents, and the exported ancestry as the
teacher (timm's pretrained LeViT-384 needs the network). Model sizes (Aux-B, Aux-S, Des-B, LeViT-384, ViT-L) at
224 px and the DeiT augmentation recipe (RandAugment, Mixup/CutMix, repeated augmentation, random erasing), EMA and
``amp=bf16`` (CPU autocast) stay as shipped. Every training recipe trains one epoch, then continues to a second
with ``resume=auto``; the Aux-B run records the teacher cache with ``channels_last=true`` and the other Aux-Nets
replay it. The benchmark configs run with depths [6], one seed and every method, the grid in the Des-B
benchmark's folder (the parts they share are made once).

Long (6 min 23 s alone on this project's quiet 2-core machine, 5 minutes of it the two benchmark configs): marked
``imagenet_tier``: the plain ``pytest -q`` leaves it out, ``pytest -q -m imagenet_tier`` runs it.
"""
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from learngene.checkpoint import load_learngene, load_model_folder
from learngene.tools import benchmark
from learngene.tools import expand
from learngene.tools import finetune
from learngene.tools import train_aux

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.imagenet_tier

CLASSES = ("n01440764", "n01443537")
TRAIN_SIZES = ((300, 256), (256, 320), (288, 288))  # (width, height); one image per class is held out as val
TEST_SIZES = ((320, 240),)
DATA = ["data.root=imagenet", "data.batch_size=2", "data.num_workers=1"]
TEACHER = ["teacher.name=local-dir:runs/imagenet/ancestry/model"]
CACHE = ["distill.teacher_cache=runs/imagenet/teacher_cache", "channels_last=true"]


def write_image_folder(root: Path) -> None:
    rng = np.random.default_rng(0)
    for split, sizes in (("train", TRAIN_SIZES), ("val", TEST_SIZES)):
        for c, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i, (w, h) in enumerate(sizes):
                # a class-coloured gradient plus noise: the classes differ, every image is its own
                ramp = np.linspace(0, 1, w)[None, :, None] * np.array([200, 60 + 120 * c, 255 - 200 * c])
                pixels = np.clip(ramp + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.JPEG", quality=90)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A working folder like a checkout (``configs/``) with the image folder; the tests run in it."""
    folder = tmp_path_factory.mktemp("imagenet_tier")
    write_image_folder(folder / "imagenet")
    (folder / "configs").symlink_to(REPO / "configs")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        yield folder
    print_step_times(folder)
    shutil.rmtree(folder)  # gigabytes of checkpoints (ViT-L, Des-B optimizer states)


def print_step_times(folder: Path) -> None:
    """Seconds per training step of each run (log.csv: train images/s, batch 2), for the CI log."""
    for log in sorted(folder.glob("runs/imagenet/*/log.csv")):
        rates = [float(row["images_per_s"]) for row in csv.DictReader(log.open())]
        print(f"{log.parent.name}: {', '.join(f'{2 / r:.2f}' for r in rates)} s/step (batch 2, per epoch)")


def run(tool, output: str, *argv: str) -> dict:
    """``tool.main(argv)`` succeeds; its summary (the configs' own ``output`` folders, not overridden)."""
    assert tool.main(list(argv)) == 0
    return json.loads((Path(output) / "summary.json").read_text())


def config(name: str) -> list[str]:
    return ["--config", f"configs/imagenet/{name}.yaml"]


def train_with_resume(tool, name: str, *overrides: str) -> dict:
    """One epoch, then ``resume=auto`` to the second; the log has both epochs."""
    output = f"runs/imagenet/{'des_b12_finetune' if name == 'des_finetune' else name}"
    first = run(tool, output, *config(name), *DATA, *overrides, "optim.epochs=1")
    assert first["epochs"] == 1
    summary = run(tool, output, *config(name), *DATA, *overrides, "optim.epochs=2", "resume=auto")
    assert summary["epochs"] == 2
    rows = list(csv.DictReader(open(f"{output}/log.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and all(np.isfinite(float(r["train_loss"])) for r in rows)
    return summary


@pytest.fixture(scope="module")
def ancestry(work):
    return run(finetune, "runs/imagenet/ancestry", *config("ancestry_levit384"), *DATA, "model.pretrained=false")


@pytest.fixture(scope="module")
def aux_b(ancestry):
    return train_with_resume(train_aux, "aux_b", *TEACHER, *CACHE)


def test_ancestry_evaluates_and_exports_levit_384(ancestry):
    assert ancestry["epochs"] == 0
    model = load_model_folder("runs/imagenet/ancestry/model")
    assert model.default_cfg["architecture"] == "levit_384" and model.num_classes == len(CLASSES)


def test_aux_b_trains_resumes_and_records_the_teacher_cache(aux_b):
    learngene = load_learngene("runs/imagenet/aux_b/learngene.safetensors")
    assert learngene.model_args["stage_sizes"] == [3, 3, 4, 3, 3] and learngene.model_args["embed_dim"] == 768
    assert aux_b["teacher_seconds"] > 0 and "ema_val_top1" in aux_b
    shards = sorted(p.name for p in Path("runs/imagenet/teacher_cache").rglob("epoch*.safetensors"))
    assert shards == ["epoch0000-rank0of1.safetensors", "epoch0001-rank0of1.safetensors"]


@pytest.mark.parametrize("name", ["aux_s", "tleg_aux_b"])
def test_aux_nets_train_resume_and_replay_the_teacher_cache(aux_b, name):
    summary = train_with_resume(train_aux, name, *TEACHER, *CACHE)
    assert summary["teacher_seconds"] == 0.0  # every batch of both epochs replayed from the Aux-B's recording
    assert Path(f"runs/imagenet/{name}/learngene.safetensors").is_file()


def test_elastic_aux_b_replays_the_cache_and_expands_to_a_narrower_des_net_stock_timm_loads(aux_b):
    summary = train_with_resume(train_aux, "aux_b_elastic", *TEACHER, *CACHE)
    assert summary["teacher_seconds"] == 0.0  # the sandwich's extra passes share the replayed teacher logits
    assert expand.main(["runs/imagenet/aux_b_elastic/learngene.safetensors", "--depth", "12", "--width", "384",
                        "--out", "runs/des12_w384"]) == 0
    model = timm.create_model("local-dir:runs/des12_w384", pretrained=True)
    assert model.embed_dim == 384 and len(model.blocks) == 12
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, len(CLASSES))


def test_expanded_des_b_fine_tunes_and_resumes(aux_b):
    assert expand.main(["runs/imagenet/aux_b/learngene.safetensors", "--depth", "12",
                        "--out", "runs/imagenet/des_b12"]) == 0
    summary = train_with_resume(finetune, "des_finetune")
    assert "start_val_top1" in summary  # evaluated before training: the expanded weights were loaded
    model = timm.create_model("local-dir:runs/imagenet/des_b12_finetune/model", pretrained=True)
    assert len(model.blocks) == 12 and model.embed_dim == 768


def test_vit_large_parent_evaluates_and_exports(work):
    summary = run(finetune, "runs/imagenet/vit_large_parent", *config("vit_large_parent"), *DATA,
                  "model.pretrained=false")
    assert summary["epochs"] == 0
    with torch.device("meta"):
        model = timm.create_model("local-dir:runs/imagenet/vit_large_parent/model")
    assert model.embed_dim == 1024 and len(model.blocks) == 24


# Every part 1 epoch (the fine-tunes: finetune_epochs=1); the timm-pretrained parents from timm's init.
BENCHMARK = [*DATA, "depths=[6]", "seeds=[0]", "learngene_seeds=[0]", "trained_depths=[6]", "finetune_epochs=1",
             "ancestry.overrides=[model.pretrained=false]", "weight_selection_parent.overrides=[model.pretrained=false]",
             "sws_aux.overrides=[optim.epochs=1]", "tleg_aux.overrides=[optim.epochs=1]",
             "elastic_aux.overrides=[optim.epochs=1]", "simple_lg.overrides=[optim.epochs=1]",
             'trained.overrides=[teacher.name="",optim.epochs=1]']
SHARED_PARTS = ("ancestry", "sources/weight-selection", "trained/depth6/seed0", "learngenes/sws/seed0",
                "finetune/sws/depth6/seed0", "finetune/scratch/depth6/seed0")


def run_benchmark(name: str, out: str, methods: list[str], *overrides: str) -> list[dict]:
    """``tools/benchmark.py --config configs/benchmark/NAME.yaml`` into ``out``: every method's Des-Net at depth 6,
    fine-tuned; the SWS learngene recorded the teacher cache and the other learngenes replayed it."""
    assert benchmark.main(["--config", f"configs/benchmark/{name}.yaml", *BENCHMARK, f"output={out}", *overrides]) == 0
    rows = list(csv.DictReader(open(f"{out}/results.csv")))
    assert {r["method"] for r in rows} == {*methods, "trained"} and {int(r["depth"]) for r in rows} == {6}
    assert {r["method"] for r in rows if r["phase"] == "fine-tuned"} == set(methods)
    teacher = {r["model"]: float(r["teacher_seconds"]) for r in csv.DictReader(open(f"{out}/learngenes.csv"))}
    assert teacher.pop("ancestry") == 0 and teacher.pop("sws") > 0
    assert teacher and all(seconds == 0 for seconds in teacher.values())
    assert Path(f"{out}/results.md").is_file()
    return rows


# The longest test of the suite, and it needs only the image folder: a group of its own runs it beside the
# module's trainings (tests/conftest.py).
@pytest.mark.xdist_group("imagenet_benchmarks")
def test_imagenet_benchmarks_run_every_method_at_depth_6(work):
    out = "runs/benchmark/imagenet"
    run_benchmark("imagenet_des_b", out,
                  ["sws", "sws-random", "tleg", "weight-selection", "front", "simple-lg", "vanilla-lg", "scratch"])
    finished = {part: (Path(out) / part / "done.json").stat().st_mtime_ns for part in SHARED_PARTS}
    # The grid in the same folder: the parts both configs make alike come from the part cache, the rest is new;
    # IMwLM's full-width Des-Net (head-aware on the grid) is made again, its old folder kept (recompute=stale).
    rows = run_benchmark("imagenet_grid_b", out, ["sws-elastic", "sws", "sws-select", "weight-selection", "front",
                                                  "scratch"], "recompute=stale")
    assert {part: (Path(out) / part / "done.json").stat().st_mtime_ns for part in SHARED_PARTS} == finished
    tuned = {(r["method"], int(r["width"])) for r in rows if r["phase"] == "fine-tuned"}
    assert {w for m, w in tuned if m == "sws-elastic"} == {192, 384, 576, 768}
    assert {w for m, w in tuned if m == "front"} == {192, 384, 576, 768}  # FRONT from ViT-L at every width
    assert {w for m, w in tuned if m == "weight-selection"} == {192, 384, 576, 768}  # head-aware, from ViT-L
