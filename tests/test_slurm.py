"""executor=slurm against a real single-node Slurm (the ``slurm`` fixture): same results as the local executor,
failures reported and resumed, SIGTERM requeues and resumes bitwise, Ctrl-C leaves no job behind."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

from learngene.tools import benchmark
from test_benchmark import ACCURACY, read_csv, write_configs

ROOT = Path(__file__).resolve().parents[1]

SLURM = ["executor=slurm", "slurm.poll_seconds=0.5", "slurm.time_minutes=10"]


def submitted(text: str) -> set[str]:
    return {line.split(": submitted Slurm job")[0] for line in text.splitlines() if ": submitted Slurm job" in line}


def accuracy(path: Path) -> list[tuple]:
    return sorted(tuple(row[k] for k in ACCURACY) for row in read_csv(path))


@pytest.mark.slurm
def test_benchmark_on_slurm_equals_local_and_a_failed_part_stops_its_dependants(slurm, tmp_path, capsys):
    # The benchmark's structure (ancestry -> learngene -> Des-Nets; Trained references beside) at test size:
    # two depths, SWS and scratch, one seed; the ancestry starts from a checkpoint file.
    checkpoint = tmp_path / "start.safetensors"
    torch.manual_seed(0)
    save_file(timm.create_model("vit_small_patch16_224", img_size=8, patch_size=2, in_chans=1, num_classes=10,
                                embed_dim=32, depth=4, num_heads=4, class_token=False, global_pool="avg").state_dict(),
              checkpoint)
    good = checkpoint.read_bytes()
    args = [*write_configs(tmp_path, tmp_path / "local", "[sws, scratch]", seeds="[0]"),
            f"ancestry.overrides=[model.checkpoint={checkpoint}]"]
    assert benchmark.main(args) == 0
    capsys.readouterr()

    checkpoint.write_bytes(good[:100])  # damaged: the ancestry's job fails
    on_slurm = [*args, f"output={tmp_path / 'slurm'}", *SLURM]
    assert benchmark.main(on_slurm) == 2
    out, err = capsys.readouterr()
    # every job that does not read the ancestry runs: the Trained references, Scratch's Des-Nets and their fine-tunes
    assert submitted(out) == {"ancestry", "trained depth3 seed0", "trained depth2 seed0", "scratch depth2 seed0",
                              "scratch depth3 seed0", "scratch depth2 seed0 finetune seed0",
                              "scratch depth3 seed0 finetune seed0"}
    job = next(line for line in out.splitlines() if line.startswith("ancestry: submitted")).split()[4]
    log = tmp_path / "slurm" / "slurm" / job / f"{job}_0_log.err"
    assert err.startswith(f"error: part 'ancestry' (Slurm job {job}) failed: learngene.errors.LearngeneError: ")
    assert str(checkpoint) in err and f"(log: {log});" in err and err.count("\n") == 1
    assert "not submitted: 5 parts that need it (learngene sws seed0, sws depth2 seed0, sws depth2 seed0 finetune " \
           "seed0, ...)" in err
    assert not (tmp_path / "slurm" / "learngenes").exists() and not (tmp_path / "slurm" / "results.csv").exists()

    # The fix: the checkpoint restored. Only what is missing is submitted, and the results are the local ones.
    checkpoint.write_bytes(good)
    assert benchmark.main(on_slurm) == 0
    out = capsys.readouterr().out
    assert submitted(out) == {"ancestry", "learngene sws seed0", "sws depth2 seed0", "sws depth3 seed0",
                              "sws depth2 seed0 finetune seed0", "sws depth3 seed0 finetune seed0"}
    assert accuracy(tmp_path / "slurm" / "results.csv") == accuracy(tmp_path / "local" / "results.csv")


def wait_until(condition, what: str, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.slurm
def test_a_two_task_des_net_job_stopped_by_sigterm_is_requeued_and_ends_with_torchruns_uninterrupted_weights(
        slurm, tmp_path, tiny_aux):
    """One job, two tasks: the process group torchrun builds; scancel --signal=TERM mid-training: last.pt, requeue,
    resume=auto, and bitwise the weights of an uninterrupted `torchrun --nproc-per-node 2` run."""
    from learngene.tools import expand

    from learngene.checkpoint import save_learngene

    save_learngene(tiny_aux, tmp_path / "learngene.safetensors")
    assert expand.main([str(tmp_path / "learngene.safetensors"), "--depth", "4", "--out", str(tmp_path / "des")]) == 0
    args = [str(ROOT / "tools" / "finetune.py"), f"model.name=local-dir:{tmp_path / 'des'}", "model.pretrained=true",
            "data.img_size=8", "data.batch_size=16", "data.train_limit=512", "optim.epochs=6",
            "optim.warmup_epochs=0", "device=cpu", "deterministic=true"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", *args,
                    f"output={tmp_path / 'torchrun'}"], env=env, check=True, capture_output=True)

    out = tmp_path / "slurm"
    driver = subprocess.Popen([sys.executable, *args, f"output={out}", *SLURM, "slurm.tasks_per_node=2"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_until(lambda: (out / "log.csv").is_file(), "the first epoch")  # mid-training: epoch 1 of 6 is done
    job = next((out / "slurm").glob("*/*.sh")).parent.name  # submitit's folder of the job: its id
    subprocess.run(["scancel", "--signal=TERM", job], check=True)
    console = driver.communicate(timeout=300)[0]
    assert driver.returncode == 0, console
    log = (out / "slurm" / job / f"{job}_0_log.err").read_text()
    assert "stopped by a signal: requeueing the job (1 of at most 10)" in log
    assert "stopped by SIGTERM at epoch" in (out / "slurm" / job / f"{job}_0_log.out").read_text()
    reference, requeued = (load_file(p / "model" / "model.safetensors") for p in (tmp_path / "torchrun", out))
    assert reference.keys() == requeued.keys() and all(torch.equal(reference[k], requeued[k]) for k in reference)


@pytest.mark.slurm
def test_a_job_sbatch_refuses_is_one_error_line_and_leaves_nothing(slurm, tmp_path, capsys):
    from learngene.tools import finetune

    out = tmp_path / "new" / "run"
    ancestry = ["--config", str(ROOT / "configs" / "digits" / "ancestry.yaml")]  # inputs the checks accept
    assert finetune.main([*ancestry, *SLURM, "slurm.partition=no-such-partition", "slurm.retries=0",
                          f"output={out}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: sbatch refused the job of training {out}: ") and "invalid partition" in err.lower()
    assert not (tmp_path / "new").exists()


def start_and_interrupt(args: list[str], until: str, count: int, before=lambda: None) -> tuple[str, str, int]:
    """Run the benchmark driver until ``count`` console lines contain ``until``, call ``before``, Ctrl-C it."""
    driver = subprocess.Popen([sys.executable, str(ROOT / "tools" / "benchmark.py"), *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    while sum(until in line for line in lines) < count:
        lines.append(driver.stdout.readline())
        assert lines[-1] or driver.poll() is None, "".join(lines) + driver.stderr.read()
    before()
    driver.send_signal(signal.SIGINT)
    out, err = driver.communicate(timeout=180)
    return "".join(lines) + out, err, driver.returncode


def states() -> dict[str, str]:
    out = subprocess.run(["squeue", "--noheader", "--format=%i %T"], capture_output=True, text=True, check=True)
    return dict(line.split() for line in out.stdout.splitlines())


@pytest.mark.slurm
def test_ctrl_c_leaves_jobs_running_on_request_a_rerun_waits_for_them_and_ctrl_c_cancels_them(slurm, tmp_path):
    args = [*write_configs(tmp_path, tmp_path / "bench", "[sws]", seeds="[0]"), *SLURM]
    # A job holding both CPUs keeps the benchmark's jobs queued while the driver is stopped and started.
    blocker = subprocess.run(["sbatch", "--parsable", "--cpus-per-task=2", f"--output={tmp_path / 'blocker.out'}",
                              "--wrap=sleep 600"], capture_output=True, text=True, check=True).stdout.strip()
    wait_until(lambda: states().get(blocker) == "RUNNING", "the blocking job")
    # The ancestry and the two Trained references are submitted; Ctrl-C with on_interrupt=leave keeps them.
    out, err, code = start_and_interrupt([*args, "slurm.on_interrupt=leave"], ": submitted Slurm job", 3)
    ids = sorted(line.split("submitted Slurm job ")[1].split()[0] for line in out.splitlines() if "submitted" in line)
    assert code == 130 and f"left 3 Slurm jobs running ({', '.join(ids)})" in err
    assert sorted(states()) == sorted([blocker, *ids])

    # Run again: it waits for the recorded jobs instead of submitting them again. Once they run, Ctrl-C (cancel)
    # ends them all: each saves its last.pt on the SIGTERM and is not requeued.
    def running():
        subprocess.run(["scancel", blocker], check=True)
        wait_until(lambda: any(states().get(i) == "RUNNING" for i in ids), "a benchmark job to run")

    out, err, code = start_and_interrupt(args, "submitted by an earlier run", 3, running)
    waited = sorted(line.split("Slurm job ")[1].split(",")[0] for line in out.splitlines() if "earlier run" in line)
    assert code == 130 and waited == ids and submitted(out) == set()
    assert slurm.jobs() == []  # squeue lists no job, queued or running


def plan_lines(capsys, config: str, out) -> list[str]:
    assert benchmark.main(["--config", str(ROOT / f"configs/benchmark/{config}.yaml"), "--plan", f"output={out}"]) == 0
    return capsys.readouterr().out.splitlines()


def docs_row(config: str, lines: list[str], jobs: int) -> str:
    """docs/cluster.md's row of ``config`` as the plan ``lines`` give it: jobs, GPU-hours, the critical path and the
    stage-by-stage length in job-hours."""
    path = next(line for line in lines if line.startswith("critical path"))
    return f"| `{config}.yaml`{' (means only)' if 'means' in config else ''} | {jobs} | " \
           f"~{lines[0].split('~')[1].split(' GPU-hours')[0]} | ~{path.split('~')[1].split(' ')[0]} / " \
           f"~{path.split('~')[2].split(' ')[0]} |"


def test_plan_of_the_imagenet_benchmark_lists_jobs_dependencies_and_gpu_hours_without_submitting(tmp_path, capsys,
                                                                                              monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # no sbatch: the plan needs none, and submits nothing
    out = tmp_path / "bench"
    lines = plan_lines(capsys, "imagenet_des_b", out)
    assert lines[0].startswith("plan: 215 Slurm jobs, ~1,009 GPU-hours") and lines[0].endswith("nothing submitted")
    assert not any(line.startswith("no verdicts") for line in lines)  # 3 learngene seeds: verdicts
    # Each job starts once what it reads is done: the longest chain is the teacher-cache learngenes, TLEG's deepest
    # Des-Net and its fine-tune, well below the three stages one after the other.
    assert lines[2] == ("critical path: ~11.55 job-hours (ancestry -> learngene sws seed0 -> learngene tleg seed0 -> "
                        "tleg depth15 seed0 -> tleg depth15 seed0 finetune seed0); stage by stage: ~17.31 job-hours")
    # 1 ancestry + 1 IMwLM parent + 4 depths x 3 seeds of Trained; 3 learngenes x 3 seeds; 8 methods x 4 depths x 3
    # Des-Nets, each with its fine-tune
    assert sum(line.startswith("  ") for line in lines) == 14 + 9 + 96 + 96 == 215
    jobs = {line.split(":")[0].strip(): line for line in lines if line.startswith("  ")}
    assert jobs["learngene sws seed2"].endswith("after ancestry")  # not after any Trained reference
    assert jobs["learngene tleg seed2"].endswith("after ancestry, learngene sws seed2")
    assert jobs["sws depth6 seed1 finetune seed1"].endswith("after sws depth6 seed1")
    assert jobs["scratch depth6 seed1"].endswith("GPU-h")  # Scratch waits for nothing
    assert jobs["vanilla-lg depth9 seed2"].endswith("after trained depth15 seed2")
    assert jobs["sws-random depth6 seed1"].endswith("after learngene sws seed1")
    assert jobs["front depth6 seed1"].endswith("after sources/weight-selection")  # FRONT reads IMwLM's parent
    hours = {name: float(line.split("~")[1].split(" ")[0]) for name, line in jobs.items()}
    assert hours["trained depth12 seed0"] > hours["trained depth6 seed0"] > 0 and hours["ancestry"] == 0.0
    assert hours["sws depth6 seed1"] == 0.0 and hours["sws depth6 seed1 finetune seed1"] > 0  # evaluations: uncounted
    assert not out.exists()
    assert docs_row("imagenet_des_b", lines, 215) in (ROOT / "docs/cluster.md").read_text()

    # The opt-in table of every depth with one learngene seed: means only, and the plan says so.
    means = plan_lines(capsys, "imagenet_des_b_means", out)
    assert means[0].startswith("plan: 437 Slurm jobs, ")
    assert means[1] == ("no verdicts: 1 learngene seed, so the seed spread is not measured and no comparison with a "
                        "learned method gets an interval (means only); 3 or more learngene seeds give verdicts")
    assert docs_row("imagenet_des_b_means", means, 437) in (ROOT / "docs/cluster.md").read_text()
    grid_plan = plan_lines(capsys, "imagenet_grid_b", out)
    assert not any(line.startswith("no verdicts") for line in grid_plan)
    assert docs_row("imagenet_grid_b", grid_plan, 491) in (ROOT / "docs/cluster.md").read_text()
