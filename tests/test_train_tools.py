import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from learngene.checkpoint import load_learngene, load_model_folder, save_model_folder
from learngene.data import DataConfig, build_datasets
from learngene.engine import evaluate
from learngene.tools import finetune
from learngene.tools import train_aux

ROOT = Path(__file__).resolve().parents[1]
TINY_VIT = ("model.kwargs={img_size: 8, patch_size: 2, in_chans: 1, num_classes: 10, embed_dim: 16, depth: 2, "
            "num_heads: 2, class_token: false, global_pool: avg}")
TINY_AUX = ("model.kwargs={img_size: 8, patch_size: 2, in_chans: 1, num_classes: 10, embed_dim: 16, num_heads: 2, "
            "stage_sizes: [1, 2]}")
QUICK = ["data.train_limit=64", "data.batch_size=32", "optim.epochs=1", "device=cpu"]


def tiny_folder(path, num_classes=10):
    model_args = dict(img_size=8, patch_size=2, in_chans=1, num_classes=num_classes, embed_dim=16, depth=2,
                      num_heads=2, class_token=False, global_pool="avg")
    save_model_folder(timm.create_model("vit_small_patch16_224", **model_args), path, preprocessing=None,
                      model_args=model_args)
    return path


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_bad_config_key_exits_2_with_valid_keys(capsys, tmp_path):
    assert finetune.main(["optim.lrr=1", f"output={tmp_path}"]) == 2
    assert "unknown config key 'optim.lrr'" in one_line_error(capsys)


def test_missing_data_folder_exits_2(capsys, tmp_path):
    argv = ["model.name=vit_small_patch16_224", TINY_VIT, "data.name=imagefolder", f"data.root={tmp_path / 'none'}",
            f"output={tmp_path / 'run'}"]
    assert finetune.main(argv) == 2
    assert f"data.root {tmp_path / 'none'} is not a folder" in one_line_error(capsys)


def test_teacher_with_other_class_count_exits_2(capsys, tmp_path):
    teacher = tiny_folder(tmp_path / "teacher5", num_classes=5)
    argv = ["model.name=sws_aux_vit_tiny_patch16_224", TINY_AUX, f"teacher.name=local-dir:{teacher}", *QUICK,
            f"output={tmp_path / 'run'}"]
    assert train_aux.main(argv) == 2
    assert "teacher" in (err := one_line_error(capsys)) and "predicts 5 classes but the data has 10" in err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_train_aux_rejects_a_model_that_is_not_an_aux_net(capsys, tmp_path):
    assert train_aux.main(["model.name=vit_small_patch16_224", f"output={tmp_path}"]) == 2
    assert "is not an Aux-Net" in one_line_error(capsys)


def test_train_aux_writes_a_learngene(capsys, tmp_path):
    teacher = tiny_folder(tmp_path / "teacher")
    out = tmp_path / "aux"
    argv = ["model.name=sws_aux_vit_tiny_patch16_224", TINY_AUX, f"teacher.name=local-dir:{teacher}", *QUICK,
            f"output={out}"]
    assert train_aux.main(argv) == 0
    last_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert last_line.startswith("done: sws_aux_vit_tiny_patch16_224 1 epochs") and "teacher top1" in last_line
    assert load_learngene(out / "learngene.safetensors").model_args["stage_sizes"] == [1, 2]
    assert (out / "config.yaml").read_text().count(f"local-dir:{teacher}") == 1


def test_finetune_trains_a_model_folder_and_evaluates_only_with_zero_epochs(capsys, tmp_path):
    des = tiny_folder(tmp_path / "des")
    capsys.readouterr()
    assert finetune.main([f"model.name=local-dir:{des}", "model.pretrained=true", *QUICK,
                          f"output={tmp_path / 'ft'}"]) == 0
    summary = json.loads((tmp_path / "ft" / "summary.json").read_text())
    assert summary["epochs"] == 1 and 0 <= summary["val_top1"] <= summary["val_top5"] <= 100
    # the accuracy before and after the fine-tune, both on the console
    _, val, _ = build_datasets(DataConfig(name="digits"))
    before = evaluate(load_model_folder(des), DataLoader(val, batch_size=64), "cpu")["top1"]
    out = capsys.readouterr().out
    assert summary["start_val_top1"] == before and f"before training: val_top1 {before:.2f}" in out
    assert f"val top1 {summary['val_top1']:.2f}" in out and f"(from {before:.2f} before training)" in out
    assert (tmp_path / "ft" / "model" / "config.json").is_file()

    assert finetune.main([f"model.name=local-dir:{tmp_path / 'ft' / 'model'}", "model.pretrained=true", *QUICK,
                          "optim.epochs=0", f"output={tmp_path / 'eval'}"]) == 0
    evaluated = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert evaluated["epochs"] == 0 and evaluated["val_top1"] == pytest.approx(summary["val_top1"])
    # The evaluated model is exported too (how a pretrained timm ancestry becomes a model folder).
    exported = load_file(tmp_path / "eval" / "model" / "model.safetensors")
    trained = load_file(tmp_path / "ft" / "model" / "model.safetensors")
    assert exported.keys() == trained.keys() and all(torch.equal(exported[k], trained[k]) for k in trained)


DUMP_EACH_RANK = """
import sys
from pathlib import Path

import torch

from learngene.engine.trainer import Run

finish = Run.finish


def dump_then_finish(self):
    torch.save(self.model.state_dict(), Path(self.cfg.output).parent / f"rank{self.procs.rank}.pt")
    return finish(self)


Run.finish = dump_then_finish
from learngene.tools import train_aux  # noqa: E402

raise SystemExit(train_aux.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path):
    """DDP (gloo) with the SWS Aux-Net, whose stage-2 block runs twice per forward: both ranks end with the same
    weights, and validation split across the ranks gives the numbers of one process on the whole set."""
    teacher = tiny_folder(tmp_path / "teacher")
    (tmp_path / "driver.py").write_text(DUMP_EACH_RANK)
    out = tmp_path / "aux"
    argv = ["model.name=sws_aux_vit_tiny_patch16_224", TINY_AUX, "model.drop_path_rate=0.1",
            f"teacher.name=local-dir:{teacher}", "data.train_limit=128", "data.batch_size=16", "data.mixup=0.5",
            "optim.epochs=2", "device=cpu", f"output={out}"]
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             str(tmp_path / "driver.py"), *argv],
                            env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT)), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("done: ") == 1  # rank 0 alone reports
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["num_updates"] == 2 * 4 and len(state["rng"]) == 2  # 64 images per rank: 4 batches per epoch
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    learngene = load_learngene(out / "learngene.safetensors")
    assert learngene.model_args["stage_sizes"] == [1, 2]
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
        assert torch.equal(rank0[key], learngene.state_dict[key]), key
    summary = json.loads((out / "summary.json").read_text())
    _, val, _ = build_datasets(DataConfig(name="digits"))
    metrics = evaluate(learngene.build_aux(), torch.utils.data.DataLoader(val, batch_size=64), "cpu")
    assert summary["val_top1"] == pytest.approx(metrics["top1"]) and summary["val_loss"] == pytest.approx(
        metrics["loss"], rel=1e-5)


def test_tools_default_to_half_the_cores_unless_omp_num_threads_is_set(monkeypatch):
    from learngene.engine.distributed import default_cpu_threads

    saved = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setattr(os, "cpu_count", lambda: 8)
        assert default_cpu_threads() == 4 == torch.get_num_threads()
        monkeypatch.setattr(os, "cpu_count", lambda: 1)
        assert default_cpu_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice is left alone
        torch.set_num_threads(3)
        monkeypatch.setattr(os, "cpu_count", lambda: 8)
        assert default_cpu_threads() == 3
    finally:
        torch.set_num_threads(saved)
