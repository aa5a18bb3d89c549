import csv
import dataclasses
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from timm.models import get_model_args
from torch.utils.data import DataLoader, TensorDataset

import learngene.engine.trainer as engine_train
from learngene.checkpoint import load_learngene, save_model_folder
from learngene.config import ModelConfig, OptimConfig, TeacherConfig, TrainConfig, save_config
from learngene.data import DataConfig, build_datasets
from learngene.distill import soft_kd_loss
from learngene.engine import build_model, build_teacher, evaluate, teacher_fingerprint, train
from learngene.engine.trainer import LOG_COLUMNS
from learngene.errors import LearngeneError

REPO = Path(__file__).resolve().parents[1]
TINY_VIT = dict(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=16, depth=2, num_heads=2,
                class_token=False, global_pool="avg")
TINY_AUX = dict(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=16, num_heads=2, stage_sizes=[1, 2])


def tiny_config(output, **changes) -> TrainConfig:
    """A CE run of a 2-layer ViT on 128 digits: 8 batches of 16 per epoch."""
    cfg = TrainConfig(
        model=ModelConfig(name="vit_small_patch16_224", kwargs=dict(TINY_VIT)),
        data=DataConfig(name="digits", batch_size=16, train_limit=128),
        optim=OptimConfig(lr=3e-3, epochs=2, min_lr=1e-4),
        output=str(output), device="cpu", deterministic=True,
    )
    return dataclasses.replace(cfg, **changes)


@pytest.fixture(scope="module")
def trained_teacher(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("teacher")
    train(tiny_config(out, data=DataConfig(name="digits", batch_size=32), optim=OptimConfig(lr=3e-3, epochs=3)))
    return out / "model"


def read_log(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_ce_run_writes_the_run_folder(tmp_path):
    summary = train(tiny_config(tmp_path / "run"))
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} >= {"config.yaml", "last.pt", "log.csv", "summary.json", "model"}
    rows = read_log(run / "log.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"] and list(rows[0]) == list(LOG_COLUMNS)
    assert json.loads((run / "summary.json").read_text()) == summary
    assert summary["val_top1"] == pytest.approx(float(rows[-1]["val_top1"]))
    state = torch.load(run / "last.pt", weights_only=True)
    assert (state["epoch"], state["step"], state["num_updates"]) == (2, 0, 16)
    # the model folder is stock timm and reproduces the reported accuracy
    model = build_model(f"local-dir:{run / 'model'}", pretrained=True)
    _, val, _ = build_datasets(DataConfig(name="digits"))
    assert evaluate(model, DataLoader(val, batch_size=100), "cpu")["top1"] == pytest.approx(summary["val_top1"])

    with pytest.raises(LearngeneError, match=r"already holds a run .*pass resume=auto"):
        train(tiny_config(run))
    again = train(tiny_config(run, resume="auto"))  # finished run: nothing left to train, same result
    assert again["val_top1"] == summary["val_top1"] and len(read_log(run / "log.csv")) == 2


def test_distilling_an_aux_net_reduces_the_kd_loss(tmp_path, trained_teacher):
    torch.manual_seed(0)
    init = build_model("sws_aux_vit_tiny_patch16_224", **TINY_AUX)
    torch.save(init.state_dict(), tmp_path / "init.pt")
    teacher = build_model(f"local-dir:{trained_teacher}", pretrained=True).eval()
    _, val, _ = build_datasets(DataConfig(name="digits"))
    images = torch.stack([val[i][0] for i in range(len(val))])

    def kd_on_val(student):
        with torch.no_grad():
            return soft_kd_loss(student.eval()(images), teacher(images), tau=1.0).item()

    cfg = tiny_config(tmp_path / "aux", model=ModelConfig(name="sws_aux_vit_tiny_patch16_224", kwargs=TINY_AUX,
                                                          checkpoint=str(tmp_path / "init.pt")),
                      teacher=TeacherConfig(name=f"local-dir:{trained_teacher}"),
                      data=DataConfig(name="digits", batch_size=32))
    summary = train(cfg)
    learngene = load_learngene(tmp_path / "aux" / "learngene.safetensors")
    assert learngene.kind == "sws" and learngene.model == "sws_aux_vit_tiny_patch16_224"
    assert learngene.extra["teacher"] == f"local-dir:{trained_teacher}"
    assert summary["teacher_top1"] == pytest.approx(evaluate(teacher, DataLoader(val, batch_size=64), "cpu")["top1"])
    before, after = kd_on_val(init), kd_on_val(learngene.build_aux())
    assert after < 0.5 * before, (before, after)
    rows = read_log(tmp_path / "aux" / "log.csv")
    assert float(rows[1]["train_loss"]) < float(rows[0]["train_loss"])  # pure KD: the train loss is the KD loss


# A run that dies (SIGKILL) or is stopped (SIGTERM) after its 6th optimizer update, mid-way through epoch 2.
DRIVER = textwrap.dedent("""
    import os, signal, sys
    from learngene.config import TrainConfig, load_config
    from learngene.engine import train
    from learngene.engine.trainer import Run

    config, kill_at, sig = sys.argv[1], int(sys.argv[2]), getattr(signal, sys.argv[3])
    optimizer_step = Run.optimizer_step

    def step_then_signal(self):
        optimizer_step(self)
        if self.num_updates == kill_at:
            os.kill(os.getpid(), sig)

    Run.optimizer_step = step_then_signal
    summary = train(load_config(config, [], TrainConfig))
    raise SystemExit(143 if summary.get("interrupted") else 0)
""")


def resumable_config(output, **changes) -> TrainConfig:
    # every source of randomness: shift augmentation (torch), mixup (numpy), drop path; plus EMA, accumulation
    cfg = tiny_config(output, seed=3, ema=True, ema_decay=0.9,
                      model=ModelConfig(name="vit_small_patch16_224", kwargs=TINY_VIT, drop_path_rate=0.1),
                      data=DataConfig(name="digits", batch_size=16, train_limit=128, digits_shift=1, mixup=0.5),
                      optim=OptimConfig(lr=3e-3, epochs=3, accum_steps=2, warmup_epochs=1, sched_on_updates=True))
    return dataclasses.replace(cfg, **changes)


def run_driver(tmp_path, cfg, kill_at, sig):
    save_config(cfg, tmp_path / f"{sig}.yaml")
    (tmp_path / "driver.py").write_text(DRIVER)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))  # same threads as this process (conftest)
    return subprocess.run([sys.executable, str(tmp_path / "driver.py"), str(tmp_path / f"{sig}.yaml"), str(kill_at),
                           sig], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    train(resumable_config(out))
    return out


def assert_same_run(a: Path, b: Path):
    final_a, final_b = load_file(a / "model" / "model.safetensors"), load_file(b / "model" / "model.safetensors")
    assert final_a.keys() == final_b.keys()
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)
    state_a, state_b = (torch.load(p / "last.pt", weights_only=True) for p in (a, b))
    assert all(torch.equal(state_a["model_ema"][k], state_b["model_ema"][k]) for k in state_a["model_ema"])
    timing = {"images_per_s", "seconds"}
    rows_a, rows_b = read_log(a / "log.csv"), read_log(b / "log.csv")
    assert [{k: v for k, v in r.items() if k not in timing} for r in rows_a] == \
           [{k: v for k, v in r.items() if k not in timing} for r in rows_b]


def test_sigkill_mid_epoch_then_resume_is_bitwise_identical(tmp_path, uninterrupted):
    out = tmp_path / "killed"
    result = run_driver(tmp_path, resumable_config(out), kill_at=6, sig="SIGKILL")
    assert result.returncode == -signal.SIGKILL, result.stderr
    state = torch.load(out / "last.pt", weights_only=True)
    assert (state["epoch"], state["step"], state["num_updates"]) == (1, 0, 4)  # epoch 1's checkpoint survived

    train(resumable_config(out, resume="auto"))
    assert_same_run(uninterrupted, out)


def test_sigterm_saves_mid_epoch_and_resume_is_bitwise_identical(tmp_path, uninterrupted):
    out = tmp_path / "stopped"
    result = run_driver(tmp_path, resumable_config(out), kill_at=6, sig="SIGTERM")
    assert result.returncode == 143, result.stderr
    assert "stopped by SIGTERM" in result.stdout and "resume=auto" in result.stdout
    state = torch.load(out / "last.pt", weights_only=True)
    # the signal arrives during update 6; the run stops after the next full update (batches 13-14 of 24)
    assert (state["epoch"], state["step"], state["num_updates"]) == (1, 6, 7)
    assert not (out / "summary.json").exists()

    train(resumable_config(out, resume="auto"))
    assert_same_run(uninterrupted, out)


@pytest.mark.parametrize("nan_call, message", [
    (11, r"training diverged: loss is nan at epoch 2 batch 3; .*last.pt keeps the last good state"),
    (3, r"training diverged: loss is nan at epoch 1 batch 3; no epoch had finished, so nothing was saved"),
])
def test_nan_loss_stops_with_error_and_keeps_last_good_checkpoint(tmp_path, monkeypatch, nan_call, message):
    calls = []
    real_loss = engine_train.classification_loss

    def loss_that_turns_nan(*args, **kwargs):
        calls.append(1)
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if len(calls) == nan_call else loss

    monkeypatch.setattr(engine_train, "classification_loss", loss_that_turns_nan)
    out = tmp_path / "nan"
    with pytest.raises(LearngeneError, match=message):
        train(tiny_config(out))
    assert not (out / "model").exists()
    if nan_call < 8:
        assert not (out / "last.pt").exists()
        return
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and len(read_log(out / "log.csv")) == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_evaluate_counts_top1_and_top5():
    # 4 images; logits rank classes 0 > 1 > ... > 5 for every image
    logits = torch.arange(6, 0, -1, dtype=torch.float32).repeat(4, 1)
    targets = torch.tensor([0, 1, 4, 5])  # ranks 1, 2, 5, 6
    loader = DataLoader(TensorDataset(torch.zeros(4, 1), targets), batch_size=3)
    model = torch.nn.Module()
    model.forward = lambda x: logits[: len(x)]
    metrics = evaluate(model, loader, "cpu")
    assert metrics["top1"] == 25.0 and metrics["top5"] == 75.0
    expected = torch.nn.functional.cross_entropy(logits, targets).item()
    assert metrics["loss"] == pytest.approx(expected, rel=1e-6)


def test_teacher_from_a_checkpoint_file_and_levit_head_averaging(tmp_path, trained_teacher):
    info = build_datasets(DataConfig(name="digits"))[2]
    from_folder = build_teacher(TeacherConfig(name=f"local-dir:{trained_teacher}"), info)
    from_file = build_teacher(TeacherConfig(name="vit_small_patch16_224", kwargs=TINY_VIT,
                                            checkpoint=str(trained_teacher / "model.safetensors")), info)
    assert not from_file.training and not any(p.requires_grad for p in from_file.parameters())
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(from_file(x), from_folder(x))
    with pytest.raises(LearngeneError, match=r"teacher.checkpoint .* does not fit 'vit_small_patch16_224'"):
        build_teacher(TeacherConfig(name="vit_small_patch16_224", kwargs=dict(TINY_VIT, embed_dim=32),
                                    checkpoint=str(trained_teacher / "model.safetensors")), info)

    imagenet = dataclasses.replace(info, num_classes=1000, in_chans=3)
    levit = build_teacher(TeacherConfig(name="levit_128s", pretrained=False), imagenet)
    x = torch.randn(2, 3, 224, 224)
    features = levit.forward_features(x).mean(1)
    torch.testing.assert_close(levit(x), (levit.head(features) + levit.head_dist(features)) / 2)


def test_bf16_channels_last_clipping_and_epoch_schedule(tmp_path):
    cfg = tiny_config(tmp_path / "opts", amp="bf16", channels_last=True, deterministic=False,
                      optim=OptimConfig(lr=3e-3, epochs=2, clip_grad=0.5, warmup_epochs=1, warmup_lr=1e-4))
    summary = train(cfg)
    rows = read_log(tmp_path / "opts" / "log.csv")
    # stepped per epoch: epoch 1 at warmup_lr, epoch 2 half-way down the cosine from 3e-3 to min_lr 1e-5
    assert [float(r["lr"]) for r in rows] == pytest.approx([1e-4, 1e-5 + 0.5 * (3e-3 - 1e-5)])
    assert all(math.isfinite(float(r["train_loss"])) for r in rows) and math.isfinite(summary["val_loss"])


def draw_from_global_rngs(module, args):
    """A forward pre-hook: the student draws from every global generator (drop path alone only draws torch)."""
    random.random(), np.random.rand(3), torch.rand(5)


def augmented_distill_config(output, teacher: Path, cache: str, model: str, drop_path_rate: float,
                             **model_kwargs) -> TrainConfig:
    """KD with something random between batches: drop path in the student, Mixup/CutMix on the batch."""
    return tiny_config(output, model=ModelConfig(name=model, kwargs=model_kwargs, drop_path_rate=drop_path_rate),
                       teacher=TeacherConfig(name=f"local-dir:{teacher}"),
                       data=DataConfig(name="digits", batch_size=16, train_limit=128, mixup=0.8, cutmix=1.0),
                       distill=dataclasses.replace(TrainConfig().distill, teacher_cache=cache, teacher_cache_topk=10))


def test_teacher_cache_lets_another_student_replay_the_teacher(tmp_path, trained_teacher, monkeypatch):
    cache = str(tmp_path / "cache")
    train(augmented_distill_config(tmp_path / "sws", trained_teacher, cache, "sws_aux_vit_tiny_patch16_224", 0.1,
                                   **TINY_AUX))
    (folder,) = (tmp_path / "cache").iterdir()  # one folder per teacher fingerprint
    assert folder.name.startswith("teacher-") and sorted(p.name for p in folder.glob("*.safetensors")) == \
        ["epoch0000-rank0of1.safetensors", "epoch0001-rank0of1.safetensors"]

    # A different student (its own init, drop-path rate and draws from every global generator between
    # batches) replays both epochs: the Mixup/CutMix draws, and so the teacher's inputs, are the same, and
    # the teacher only runs on the validation set, never on a training batch.
    calls = []
    real_build_teacher, real_build_student = engine_train.build_teacher, engine_train.build_student

    def counting_teacher(cfg, info):
        model = real_build_teacher(cfg, info)
        model.register_forward_hook(lambda module, args, out: calls.append(module.training or args[0].shape[0]))
        return model

    def drawing_student(cfg, info):
        model = real_build_student(cfg, info)
        model.register_forward_pre_hook(draw_from_global_rngs)
        return model

    monkeypatch.setattr(engine_train, "build_teacher", counting_teacher)
    monkeypatch.setattr(engine_train, "build_student", drawing_student)
    cached = train(augmented_distill_config(tmp_path / "vit_cached", trained_teacher, cache, "vit_small_patch16_224",
                                            0.2, **TINY_VIT))
    val_batches = math.ceil(360 / 16)
    assert len(calls) == val_batches
    calls.clear()
    online = train(augmented_distill_config(tmp_path / "vit_online", trained_teacher, "", "vit_small_patch16_224",
                                            0.2, **TINY_VIT))
    assert len(calls) == val_batches + 2 * 8
    # With k = all 10 classes the replayed targets are the teacher's, up to fp16 storage.
    assert cached["val_loss"] == pytest.approx(online["val_loss"], abs=2e-3)


def test_cache_of_a_changed_teacher_is_not_replayed(tmp_path, trained_teacher):
    """Same teacher path, other weights: the cached run equals online distillation from the new teacher, bitwise."""
    teacher = tmp_path / "teacher"
    shutil.copytree(trained_teacher, teacher)
    cache = str(tmp_path / "cache")

    def distill(output, cache_dir):
        train(augmented_distill_config(tmp_path / output, teacher, cache_dir, "sws_aux_vit_tiny_patch16_224", 0.1,
                                       **TINY_AUX))
        return load_file(tmp_path / output / "learngene.safetensors")

    distill("old_teacher", cache)  # records the old teacher's outputs
    retrained = build_model(f"local-dir:{teacher}", pretrained=True)
    with torch.no_grad():
        retrained.head.weight.mul_(-1.0)  # the teacher now ranks the classes the other way round
    shutil.rmtree(teacher)
    save_model_folder(retrained, teacher, preprocessing=None, model_args=get_model_args(retrained))

    through_cache, without_cache = distill("new_cached", cache), distill("new_online", "")
    assert through_cache.keys() == without_cache.keys()
    assert all(torch.equal(through_cache[k], without_cache[k]) for k in through_cache)
    assert len(list((tmp_path / "cache").iterdir())) == 2  # the new teacher recorded into its own folder


def test_teacher_fingerprint_follows_weights_and_settings_not_the_path(tmp_path, trained_teacher):
    info = build_datasets(DataConfig(name="digits"))[2]
    cfg = TrainConfig(teacher=TeacherConfig(name=f"local-dir:{trained_teacher}"))
    teacher = build_teacher(cfg.teacher, info)
    fingerprint = teacher_fingerprint(teacher, cfg)
    assert len(fingerprint) == 64 and fingerprint == teacher_fingerprint(teacher, cfg)

    copy = tmp_path / "copy"
    shutil.copytree(trained_teacher, copy)
    copied_cfg = TrainConfig(teacher=TeacherConfig(name=f"local-dir:{copy}"))
    assert teacher_fingerprint(build_teacher(copied_cfg.teacher, info), copied_cfg) == fingerprint

    assert teacher_fingerprint(teacher, dataclasses.replace(cfg, amp="bf16")) != fingerprint
    assert teacher_fingerprint(teacher, dataclasses.replace(cfg, channels_last=True)) != fingerprint
    bias = teacher.blocks[0].mlp.fc1.bias
    original = bias.detach().clone()
    with torch.no_grad():
        bias[3] += 1e-6  # one value in one tensor
        assert teacher_fingerprint(teacher, cfg) != fingerprint
        bias.copy_(original)
    assert teacher_fingerprint(teacher, cfg) == fingerprint
    teacher.blocks[0].attn.num_heads = 1  # same weights, another architecture
    assert teacher_fingerprint(teacher, cfg) != fingerprint


def test_forward_clock_sums_the_seconds_of_its_blocks():
    clock = engine_train.ForwardClock()
    for _ in range(2):
        with clock(torch.device("cpu")):
            time.sleep(0.05)
    seconds = clock.read()
    assert seconds >= 0.1 and clock.read() == seconds and not clock.pending
