"""Resuming: a changed config is refused (naming the keys), a grown optim.epochs re-plans the schedule, Ctrl-C."""
import dataclasses
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file

import learngene.engine.trainer as engine_train
from learngene.config import OptimConfig, TeacherConfig, TrainConfig, resume_conflicts
from learngene.data import DataConfig
from learngene.engine import train
from learngene.errors import LearngeneError
from spies import ctrl_c_after_update, teacher_batches
from test_engine import read_log, tiny_config
from test_run_folder import VIT, snapshot
from test_train_tools import finetune, one_line_error


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2-epoch run (cosine from lr 3e-3 to min_lr 1e-4, stepped per epoch)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    train(tiny_config(out))
    return out


def test_resume_with_changed_settings_is_refused_naming_every_key(capsys, finished):
    before = snapshot(finished)
    argv = ["--config", str(finished / "config.yaml"), "resume=auto", "optim.lr=0.001", "seed=1",
            "model.kwargs.depth=3", "data.mixup=0.5", "device=cpu", "compile=false"]
    assert finetune.main(argv) == 2
    err = one_line_error(capsys)
    assert (f"error: {finished / 'last.pt'} was trained with other settings: data.mixup 0.0 (now 0.5), "
            "model.kwargs.depth 2 (now 3), optim.lr 0.003 (now 0.001), seed 0 (now 1); resume with its settings") in err
    assert snapshot(finished) == before  # config.yaml included


def test_resuming_another_runs_state_into_a_folder_holding_a_run_is_refused(capsys, tmp_path, finished):
    other = tmp_path / "other"
    shutil.copytree(finished, other)
    before = snapshot(other)
    assert finetune.main(["--config", str(finished / "config.yaml"), f"resume={finished / 'last.pt'}",
                          f"output={other}"]) == 2
    assert f"{other} already holds a run" in one_line_error(capsys) and snapshot(other) == before


def test_only_settings_that_change_how_a_run_runs_may_change():
    saved = dataclasses.asdict(TrainConfig(model=dataclasses.replace(TrainConfig().model, kwargs={"depth": 2})))
    changed = TrainConfig(output="elsewhere", resume="auto", device="cpu", compile=True, deterministic=True,
                          channels_last=True, ema=True, optim=OptimConfig(epochs=20),
                          data=dataclasses.replace(TrainConfig().data, num_workers=4))
    assert resume_conflicts(saved, changed) == ["model.kwargs.depth 2 (now '<unset>')"]


def test_growing_epochs_continues_on_the_re_planned_schedule(tmp_path, finished):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    first_two = read_log(out / "log.csv")
    train(tiny_config(out, resume="auto", optim=OptimConfig(lr=3e-3, epochs=4, min_lr=1e-4)))
    rows = read_log(out / "log.csv")
    assert rows[:2] == first_two and [r["epoch"] for r in rows] == ["1", "2", "3", "4"]
    # epochs 3 and 4 follow the cosine of a 4-epoch run (t = 2, 3 of 4), not the finished 2-epoch one's min_lr
    cosine = [1e-4 + 0.5 * (3e-3 - 1e-4) * (1 + math.cos(math.pi * t / 4)) for t in (2, 3)]
    assert [float(r["lr"]) for r in rows[2:]] == pytest.approx(cosine, rel=1e-6)
    assert torch.load(out / "last.pt", weights_only=True)["num_updates"] == 4 * 8

    with pytest.raises(LearngeneError, match=r"has already trained 4 epochs, more than optim.epochs=3: set "
                                             r"optim.epochs >= 4"):
        train(tiny_config(out, resume="auto", optim=OptimConfig(lr=3e-3, epochs=3, min_lr=1e-4)))


def test_ctrl_c_prints_how_to_continue_and_resume_finishes_the_run(capsys, tmp_path, monkeypatch, finished):
    out = tmp_path / "run"
    argv = ["--config", str(finished / "config.yaml"), f"output={out}"]
    ctrl_c_after_update(monkeypatch, 11)  # batch 3 of epoch 2
    assert finetune.main(argv) == 130
    err = capsys.readouterr().err
    assert err == f"stopped by Ctrl-C: continue with the same command plus resume=auto (from {out / 'last.pt'})\n"
    assert not (out / ".lock").exists() and not (out / "model").exists()

    monkeypatch.undo()
    assert finetune.main([*argv, "resume=auto"]) == 0
    resumed, uninterrupted = load_file(out / "model" / "model.safetensors"), load_file(finished / "model" /
                                                                                       "model.safetensors")
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)


def test_ctrl_c_before_the_first_checkpoint_says_the_run_starts_again(capsys, tmp_path, monkeypatch):
    def ctrl_c(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine_train.Run, "optimizer_step", ctrl_c)
    out = tmp_path / "run"
    assert finetune.main([*VIT, f"output={out}"]) == 130
    assert capsys.readouterr().err.endswith("resume=auto (from the start: no epoch had finished)\n")
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml"]
    monkeypatch.undo()
    assert finetune.main([*VIT, f"output={out}"]) == 2  # a fresh run is refused, resume=auto starts it again
    assert "it stopped before its first epoch ended: pass resume=auto" in one_line_error(capsys)
    assert finetune.main([*VIT, f"output={out}", "resume=auto"]) == 0


def test_a_run_resumed_with_other_loader_workers_replays_the_teacher_cache(tmp_path, finished, monkeypatch):
    """data.num_workers may change on resume (RESUMABLE_KEYS), so it must not change the cache's key either."""
    cache = tmp_path / "cache"

    def distill(output, num_workers=0, **changes):
        return tiny_config(output, teacher=TeacherConfig(name=f"local-dir:{finished / 'model'}"),
                           data=DataConfig(name="digits", batch_size=16, train_limit=128, num_workers=num_workers),
                           distill=dataclasses.replace(TrainConfig().distill, teacher_cache=str(cache)), **changes)

    train(distill(tmp_path / "recorder"))  # runs the teacher on both epochs and records them
    ctrl_c_after_update(monkeypatch, 11)  # batch 3 of epoch 2
    with pytest.raises(KeyboardInterrupt):
        train(distill(tmp_path / "run"))
    monkeypatch.undo()

    calls = teacher_batches(monkeypatch)
    summary = train(distill(tmp_path / "run", num_workers=1, resume="auto"))
    assert len(read_log(tmp_path / "run" / "log.csv")) == 2 and summary["val_top1"] > 0
    assert calls == []  # its val accuracy is in last.pt, and every training batch left was replayed
