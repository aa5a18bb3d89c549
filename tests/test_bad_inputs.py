"""Bad inputs to the training tools and the benchmark, run here (executor=local), as Slurm jobs (executor=slurm) and
as a plan (--plan): exit code 2, one ``error: ...`` line naming the key, nothing written and nothing submitted.

The Slurm cases run against fake ``sbatch`` / ``squeue`` / ``scancel`` / ``srun`` that record every call: a case
refused before submitting leaves no record (tests/test_slurm.py runs the real Slurm).
"""
import json
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
import timm
import torch

from learngene.checkpoint import save_model_folder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import benchmark  # noqa: E402
import finetune  # noqa: E402
import train_aux  # noqa: E402

TEACHER = dict(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=32, depth=2, num_heads=2,
               class_token=False, global_pool="avg")
# Each records its command line and the files it is given (sbatch: the job script), then refuses.
FAKE_SLURM = ("#!/bin/sh\necho \"$0 $*\" >> {calls}\nfor a in \"$@\"; do [ -f \"$a\" ] && cat \"$a\" >> {calls}; done\n"
              "echo 'sbatch: error: a fake Slurm' >&2\nexit 1\n")
# retries=0: the fake sbatch refuses every job, and the tests need not wait for its backoff
SLURM = ["executor=slurm", "slurm.poll_seconds=0.1", "slurm.retries=0"]
TOOLS = {"train-aux": train_aux.main, "finetune": finetune.main, "benchmark": benchmark.main}


@pytest.fixture
def place(tmp_path, monkeypatch):
    """A folder with a digits teacher, a finished run, fake Slurm commands on PATH; the working directory."""
    torch.manual_seed(0)
    save_model_folder(timm.create_model("vit_tiny_patch16_224", **TEACHER), tmp_path / "teacher", preprocessing=None,
                      model_args=TEACHER)
    (tmp_path / "finished" / "model").mkdir(parents=True)
    (tmp_path / "finished" / "summary.json").write_text(json.dumps({"val_top1": 50.0}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for command in ("sbatch", "squeue", "scancel", "srun"):
        (bin_dir / command).write_text(FAKE_SLURM.format(calls=tmp_path / "slurm_calls"))
        (bin_dir / command).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    # an empty Hugging Face cache (conftest sets HF_HUB_OFFLINE=1: the jobs would run offline)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


AUX = ["--config", str(ROOT / "configs/digits/aux.yaml"), "teacher.name=local-dir:teacher", "optim.epochs=1",
       "data.train_limit=64", "output=out"]
FINETUNE = ["--config", str(ROOT / "configs/digits/ancestry.yaml"), "model.kwargs.depth=2", "optim.epochs=1",
            "data.train_limit=64", "output=out"]
BENCH = ["--preset", "quick", "output=bench"]

# The inputs both executors refuse: (tool, its arguments, what the error line names).
TRAINING_CASES = {
    "unknown dataset": ("train-aux", [*AUX, "data.name=foo"], "data.name 'foo'"),
    "batch size 0": ("train-aux", [*AUX, "data.batch_size=0"], "data.batch_size must be positive, got 0"),
    "negative epochs": ("train-aux", [*AUX, "optim.epochs=-1"], "optim.epochs=-1"),
    "missing teacher folder": ("train-aux", [*AUX, "teacher.name=local-dir:nowhere"], "nowhere does not exist"),
    "uneven elastic widths": ("train-aux", [*AUX, "elastic.widths=[16,40]"], "elastic.widths=[16, 40]"),
    "output holds a finished run": ("train-aux", [*AUX, "output=finished"],
                                    "finished already holds a run (summary.json, model)"),
    "finetune unknown dataset": ("finetune", [*FINETUNE, "data.name=foo"], "data.name 'foo'"),
    "finetune missing model folder": ("finetune", [*FINETUNE, "model.name=local-dir:nowhere",
                                                   "model.pretrained=true"], "nowhere does not exist"),
    "finetune missing checkpoint": ("finetune", [*FINETUNE, "model.checkpoint=nowhere.safetensors"],
                                    "model.checkpoint nowhere.safetensors does not exist"),
    "finetune output holds a finished run": ("finetune", [*FINETUNE, "output=finished"],
                                             "finished already holds a run"),
    "finetune amp": ("finetune", [*FINETUNE, "amp=fp8"], "amp='fp8'"),
}
# What only one executor or the benchmark refuses.
OTHER_CASES = {
    "slurm settings without executor=slurm": ("train-aux", [*AUX, "slurm.partition=gpu"],
                                              "slurm.partition=gpu applies to Slurm jobs but executor=local"),
    "finetune slurm settings without executor=slurm": ("finetune", [*FINETUNE, "slurm.gpus_per_node=4"],
                                                       "slurm.gpus_per_node=4 applies to Slurm jobs"),
    "benchmark slurm settings without executor=slurm": ("benchmark", [*BENCH, "slurm.gpus_per_node=2"],
                                                        "slurm.gpus_per_node=2 applies to Slurm jobs"),
    "negative GPUs": ("train-aux", [*AUX, *SLURM, "slurm.gpus_per_node=-1"], "slurm.gpus_per_node=-1 must be >= 0"),
    "zero nodes": ("finetune", [*FINETUNE, *SLURM, "slurm.nodes=0"], "slurm.nodes=0 must be >= 1"),
    "memory below a megabyte": ("train-aux", [*AUX, *SLURM, "slurm.mem_gb=0.0001"], "slurm.mem_gb=0.0001 is below"),
    "more tasks than GPUs": ("train-aux", [*AUX, *SLURM, "slurm.gpus_per_node=2", "slurm.tasks_per_node=4"],
                             "slurm.tasks_per_node=4 with slurm.gpus_per_node=2"),
    "GPUs for a CPU training": ("finetune", [*FINETUNE, *SLURM, "device=cpu", "slurm.gpus_per_node=8"],
                                "slurm.gpus_per_node=8 with device=cpu"),
    "no GPU for a CUDA training": ("finetune", [*FINETUNE, *SLURM, "device=cuda"],
                                   "device=cuda with slurm.gpus_per_node=0"),
    "signal after the time limit": ("train-aux", [*AUX, *SLURM, "slurm.time_minutes=5", "slurm.signal_delay_s=300"],
                                    "slurm.signal_delay_s=300 is not shorter than the time limit"),
    "unknown GPU request": ("train-aux", [*AUX, *SLURM, "slurm.gpu_request=mig"], "slurm.gpu_request='mig'"),
    "negative retries": ("finetune", [*FINETUNE, *SLURM, "slurm.retries=-1"], "slurm.retries=-1 must be >= 0"),
    "negative retry wait": ("train-aux", [*AUX, *SLURM, "slurm.retry_seconds=-15"],
                            "slurm.retry_seconds=-15.0 must be a number >= 0"),
    "endless retry wait": ("finetune", [*FINETUNE, *SLURM, "slurm.retry_seconds=inf"],
                           "slurm.retry_seconds=inf must be a number >= 0"),
    "negative requeues": ("train-aux", [*AUX, *SLURM, "slurm.max_requeues=-1"], "slurm.max_requeues=-1 must be >= 0"),
    "pretrained weights not cached for offline jobs": ("finetune", [*FINETUNE, *SLURM, "model.pretrained=true"],
                                                        "model.name 'vit_small_patch16_224' needs its pretrained "
                                                        "weights, which are not in the Hugging Face cache"),
    "benchmark on zero nodes": ("benchmark", [*BENCH, *SLURM, "slurm.nodes=0"], "slurm.nodes=0 must be >= 1"),
    "plan at zero TFLOP/s": ("benchmark", [*BENCH, "--plan", "slurm.plan_tflops=0"],
                             "slurm.plan_tflops=0.0 must be a positive number"),
    "plan at negative throughput": ("benchmark", [*BENCH, "--plan", "slurm.plan_tflops=-100"],
                                    "slurm.plan_tflops=-100.0 must be a positive number"),
    "plan of widths the run refuses": ("benchmark", [*BENCH, "--plan", "widths=[8,64]"],
                                       "widths [8] are not multiples of the learngene's head dim 16"),
    "plan of negative training images": ("benchmark", [*BENCH, "--plan", "slurm.plan_train_images=-1"],
                                         "slurm.plan_train_images=-1 must be >= 0"),
    "bad key in a part's overrides": ("benchmark", [*BENCH, "--plan", "sws_aux.overrides=[optim.epoch=5]"],
                                      "unknown config key 'optim.epoch' in sws_aux.overrides ['optim.epoch=5'] of "
                                      "the benchmark config"),
    "bad key in the benchmark's data arguments": ("benchmark", [*BENCH, "--plan", "data.batch_sise=4"],
                                                  "unknown config key 'data.batch_sise' in part_overrides (or the "
                                                  "data.* arguments of the command line)"),
    "bad key in a part's overrides, benchmark run": ("benchmark", [*BENCH, "trained.overrides=[optim.lr=x]"],
                                                     "bad config value for 'optim.lr' in trained.overrides "
                                                     "['optim.lr=x'] of the benchmark config"),
}
CASES = {**{f"{name} (local)": case for name, case in TRAINING_CASES.items()},
         **{f"{name} (slurm)": (tool, [*argv, *SLURM], named) for name, (tool, argv, named) in TRAINING_CASES.items()},
         **OTHER_CASES}


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"" for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_one_error_line_naming_it_and_nothing_is_written_or_submitted(name, place, capsys):
    tool, argv, named = CASES[name]
    before = files(place)
    assert TOOLS[tool](argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and named in err[0], err
    assert files(place) == before  # nothing written, and no call of a Slurm command recorded


def test_a_good_input_reaches_sbatch(place, capsys):
    """The harness is not what refuses the cases: valid settings get as far as the (fake) sbatch."""
    assert train_aux.main([*AUX, *SLURM]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: sbatch refused the job of training out: sbatch: error: a fake Slurm; check the slurm.* settings"]
    assert (place / "slurm_calls").read_text().startswith(f"{place / 'bin' / 'sbatch'} ")


def test_output_closed_by_its_reader_ends_quietly():
    """`learngene benchmark --plan | head`: a tool whose reader went away stops with exit 141 and no traceback."""
    code = ("from learngene.cli import entry_point\n"
            "main = entry_point(lambda argv: [print('x' * 1000) for _ in range(1000)] and 0)\n"
            "raise SystemExit(main([]))\n")
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    process.stdout.readline()
    process.stdout.close()
    assert process.wait(timeout=60) == 141 and process.stderr.read() == b""


def test_cluster_settings_reach_the_job_script(place, capsys):
    """--gres clusters, per-job setup lines and memory in the sbatch script; cached weights pass the offline check."""
    repo = place / "hf" / "models--timm--vit_small_patch16_224.augreg_in21k_ft_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("0" * 40) / "model.safetensors").write_bytes(b"weights fetched on a login node")
    setup = ["module load cuda/12.1", "export HF_HUB_OFFLINE=1"]
    assert finetune.main([*FINETUNE, *SLURM, "model.pretrained=true", "slurm.gpus_per_node=2",
                          "slurm.gpu_request=gres", "slurm.mem_gb=2", f"slurm.setup=[{','.join(setup)}]"]) == 2
    assert capsys.readouterr().err.startswith("error: sbatch refused the job of training out")
    script = (place / "slurm_calls").read_text().splitlines()
    assert "#SBATCH --gres=gpu:2" in script and "#SBATCH --mem=2048MB" in script
    assert not any(line.startswith("#SBATCH --gpus-per-node") for line in script)
    assert script.index(setup[0]) + 1 == script.index(setup[1]) < script.index(next(line for line in script
                                                                                   if line.startswith("srun")))


def test_a_gpu_type_in_sbatch_args_replaces_the_gres_line(place, capsys):
    assert train_aux.main([*AUX, *SLURM, "slurm.gpus_per_node=2", "slurm.gpu_request=gres",
                           "slurm.sbatch_args={gres: 'gpu:a100:2'}"]) == 2
    script = (place / "slurm_calls").read_text().splitlines()
    assert [line for line in script if "gres" in line] == ["#SBATCH --gres=gpu:a100:2"]
    assert "#SBATCH --ntasks-per-node=2" in script
