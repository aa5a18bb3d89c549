"""The run folder: bad input is one `error:` line, exit code 2 and nothing written; one run at a time; orphans."""
import fcntl
import pickle
import shutil
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from test_train_tools import QUICK, TINY_AUX, TINY_VIT, finetune, one_line_error, tiny_folder, train_aux


def snapshot(folder: Path) -> dict | None:
    """Every file (bytes) and folder under ``folder``; None when it does not exist."""
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else "folder" for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished 1-epoch fine-tune of a tiny ViT folder (config.yaml, last.pt, log.csv, summary.json, model/)."""
    root = tmp_path_factory.mktemp("finished")
    des = tiny_folder(root / "des")
    argv = [f"model.name=local-dir:{des}", "model.pretrained=true", *QUICK, f"output={root / 'run'}"]
    assert finetune.main(argv) == 0
    return root / "run"


class Files:
    """Bad weights files and a file where a folder should be, made once per test under ``root``."""

    def __init__(self, root: Path):
        self.root = root
        self.file = root / "notes.txt"
        self.file.write_text("a file, not a folder\n")
        self.truncated = root / "truncated.safetensors"
        save_file({"w": torch.zeros(64, 64)}, str(self.truncated))
        self.truncated.write_bytes(self.truncated.read_bytes()[:100])
        self.empty = root / "empty.pt"
        self.empty.write_bytes(b"")
        self.wider = root / "wider.pt"  # a ViT of width 32 for a model of width 16
        wider = timm.create_model("vit_small_patch16_224", **dict(TINY_KWARGS, embed_dim=32))
        torch.save(wider.state_dict(), self.wider)


TINY_KWARGS = dict(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=16, depth=2, num_heads=2,
                   class_token=False, global_pool="avg")
VIT = ["model.name=vit_small_patch16_224", "model.pretrained=false", TINY_VIT, *QUICK]
AUX = ["model.name=sws_aux_vit_tiny_patch16_224", TINY_AUX, *QUICK]
TEACHER = ["teacher.name=vit_small_patch16_224", TINY_VIT.replace("model.kwargs", "teacher.kwargs")]

# (id, tool, argv given the files and the output, output folder given the files, expected part of the message)
BAD_INPUTS = [
    ("evaluate-over-finished-run", finetune, lambda f, run: [*VIT, "optim.epochs=0", f"output={run}"], "run",
     "already holds a run (config.yaml, last.pt, log.csv, summary.json, model): pass resume=auto"),
    ("fresh-run-over-finished-run", finetune, lambda f, run: [*VIT, f"output={run}"], "run",
     "already holds a run"),
    ("resume-with-zero-epochs", finetune, lambda f, run: [*VIT, "optim.epochs=0", "resume=auto", f"output={run}"],
     "run", "optim.epochs=0 only evaluates a model and cannot resume"),
    ("output-below-a-file", finetune, lambda f, run: [*VIT, f"output={f.file / 'run'}"], "file",
     "lies below"),
    ("output-is-a-file", finetune, lambda f, run: [*VIT, f"output={f.file}"], "file", "is a file, not a folder"),
    ("num-heads-not-dividing-width", train_aux, lambda f, run: [*AUX, "model.kwargs.num_heads=5", f"output={run}"],
     "new", "dim should be divisible by num_heads"),
    ("truncated-safetensors-model", finetune, lambda f, run: [*VIT, f"model.checkpoint={f.truncated}",
                                                              f"output={run}"], "new",
     "is truncated or not a safetensors file"),
    ("empty-pt-model", finetune, lambda f, run: [*VIT, f"model.checkpoint={f.empty}", f"output={run}"], "new",
     "is truncated or not a torch checkpoint"),
    ("truncated-safetensors-teacher", train_aux, lambda f, run: [*AUX, *TEACHER, f"teacher.checkpoint={f.truncated}",
                                                                 f"output={run}"], "new",
     "teacher.checkpoint"),
    ("empty-pt-teacher", train_aux, lambda f, run: [*AUX, *TEACHER, f"teacher.checkpoint={f.empty}", f"output={run}"],
     "new", "teacher.checkpoint"),
    ("negative-seed", finetune, lambda f, run: [*VIT, "seed=-1", f"output={run}"], "new", "seed=-1 must be between 0"),
    ("model-image-size-differs", finetune, lambda f, run: [*VIT, "model.kwargs.img_size=16", f"output={run}"], "new",
     "takes 16x16 images but data.img_size is 8: set model.kwargs.img_size=8"),
    ("checkpoint-does-not-fit", finetune, lambda f, run: [*VIT, f"model.checkpoint={f.wider}", f"output={run}"],
     "new", "does not fit 'vit_small_patch16_224': shape: pos_embed [1, 16, 32] vs [1, 16, 16] expected, "
            "patch_embed.proj.weight [32, 1, 2, 2] vs [16, 1, 2, 2] expected"),
]


@pytest.mark.parametrize("tool, argv, output, message", [case[1:] for case in BAD_INPUTS],
                         ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_one_line_and_writes_nothing(capsys, tmp_path, finished_run, tool, argv, output, message):
    files = Files(tmp_path)
    folder = {"run": finished_run, "file": files.file, "new": tmp_path / "new"}[output]
    before, parent_before = snapshot(folder), snapshot(tmp_path)
    assert tool.main([str(a) for a in argv(files, folder)]) == 2
    err = one_line_error(capsys)
    assert message in err, err
    assert snapshot(folder) == before and snapshot(tmp_path) == parent_before


def test_checkpoints_are_read_with_weights_only_whatever_the_default(capsys, tmp_path, monkeypatch):
    """A torch file that runs code when unpickled is refused, even where torch.load defaults to weights_only=False."""
    marker = tmp_path / "code-ran"

    class RunsCode:
        def __reduce__(self):
            return Path.touch, (marker,)

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"model": RunsCode()}, protocol=2))
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # torch.load's default becomes weights_only=False
    for tool, argv in [(finetune, [*VIT, f"model.checkpoint={evil}"]),
                       (train_aux, [*AUX, *TEACHER, f"teacher.checkpoint={evil}"])]:
        assert tool.main([*argv, f"output={tmp_path / 'run'}"]) == 2
        assert "is truncated or not a torch checkpoint (UnpicklingError)" in one_line_error(capsys)
        assert not marker.exists() and not (tmp_path / "run").exists()


def test_a_second_run_on_a_locked_folder_is_refused(capsys, tmp_path, finished_run):
    out = tmp_path / "run"
    out.mkdir()
    with open(out / ".lock", "w") as holder:  # a live run holds the lock (flock conflicts per open file)
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        holder.write("4242\n")
        holder.flush()
        before = snapshot(out)
        assert finetune.main([*VIT, f"output={out}"]) == 2
        assert f"output {out} is in use by another run (pid 4242)" in one_line_error(capsys)
        assert snapshot(out) == before


def test_a_stale_lock_is_taken_over_and_released(capsys, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("999999\n")  # left by a killed run: the file remains, its flock is gone
    assert finetune.main([*VIT, f"output={out}"]) == 0
    assert (out / "summary.json").is_file() and not (out / ".lock").exists()


def test_next_start_removes_a_killed_runs_temporaries(capsys, tmp_path, finished_run):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    orphans = [out / ".last.pt.k3j2_x.tmp", out / ".summary.json.a1b2.tmp"]
    for orphan in orphans:
        orphan.write_bytes(b"half-written")
    (out / ".model.q9w8.tmp").mkdir()
    (out / ".model.q9w8.tmp" / "model.safetensors").write_bytes(b"half-written")
    unrelated = out / ".notes.tmp"  # not a temporary of the run's own files: kept
    unrelated.write_text("mine")
    assert finetune.main(["--config", str(out / "config.yaml"), "resume=auto", f"output={out}"]) == 0
    assert not any(p.exists() for p in [*orphans, out / ".model.q9w8.tmp"]) and unrelated.exists()
    assert {p.name for p in out.iterdir()} == {".notes.tmp", "config.yaml", "last.pt", "log.csv", "summary.json",
                                              "model"}
