"""Slurm the way submitit means it, against the real single-node Slurm (the ``slurm`` fixture): sbatch and squeue
tried again with backoff, a persistent refusal that keeps the running jobs, no submission when squeue fails at the
start, a signal at any point of a job (model building, the final evaluation) that requeues it through its
``checkpoint()`` (at most ``slurm.max_requeues`` times), the driver's exit code 143 on SIGTERM; and, without
Slurm, what a requeued task runs and the threads a job takes."""
from __future__ import annotations

import dataclasses
import importlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cloudpickle
import pytest
import torch

from learngene.benchmark.runner import TrainJob
from learngene.config import TrainConfig, load_config
from learngene.engine import train
from learngene.errors import LearngeneError
from learngene.slurm import SlurmConfig, SlurmDriver, SlurmTask, Training, job_cpus

ROOT = Path(__file__).resolve().parents[1]
# The jobs unpickle this module's works without importing it (tests/ is not on their path).
cloudpickle.register_pickle_by_value(sys.modules[__name__])

# A 2-layer digits ViT, 2 epochs of 64 images: a few seconds.
TINY = ["model.kwargs.depth=2", "model.kwargs.embed_dim=32", "model.kwargs.num_heads=2", "optim.epochs=2",
        "optim.warmup_epochs=0", "data.train_limit=64", "device=cpu", "deterministic=true"]


def tiny_training(output: Path, *overrides: str) -> TrainConfig:
    return load_config(str(ROOT / "configs" / "digits" / "ancestry.yaml"), [*TINY, f"output={output}", *overrides],
                       TrainConfig)


@dataclasses.dataclass
class Sum:
    """A job's work that trains nothing."""

    name: str
    after: tuple[str, ...] = ()

    def __call__(self) -> int:
        return len(self.name)


@dataclasses.dataclass
class SignalDuring:
    """``work``, with SIGTERM sent to this process when it calls ``module.function`` in its first ``times`` runs:
    the signal arrives at that point of the job (each requeue runs ``resumed()``, one time less)."""

    work: object
    module: str
    function: str
    times: int = 1

    def __call__(self):
        if self.times > 0:
            module = importlib.import_module(self.module)
            original = getattr(module, self.function)

            def signalled(*args, **kwargs):
                os.kill(os.getpid(), signal.SIGTERM)
                return original(*args, **kwargs)

            setattr(module, self.function, signalled)
        return self.work()

    def resumed(self) -> SignalDuring:
        work = self.work.resumed() if hasattr(self.work, "resumed") else self.work
        return dataclasses.replace(self, work=work, times=self.times - 1)


def driver(folder: Path, **settings) -> SlurmDriver:
    return SlurmDriver(SlurmConfig(poll_seconds=0.2, retry_seconds=0.05, time_minutes=10, **settings), folder)


def run(slurm_driver: SlurmDriver, jobs: list, results: dict, task=lambda job: SlurmTask(job, "cpu", threads=1)):
    """Run ``jobs`` on ``slurm_driver``; ``results``: those that finished, by name."""
    slurm_driver.run(jobs, task, lambda job, result: results.update({job.name: result}), lambda job: job.name)


@pytest.fixture
def shims(tmp_path, monkeypatch):
    """``shims(command, refuse)``: ``command`` on PATH becomes a script that counts its calls (``calls(command)``)
    and fails the calls for which the shell test ``refuse`` on ``$n`` (the calls before this one) holds, running
    the real command otherwise."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")

    def shim(command: str, refuse: str) -> None:
        real = subprocess.run(["which", command], capture_output=True, text=True, check=True).stdout.strip()
        count = tmp_path / f"{command}.calls"
        (bin_dir / command).write_text(
            f"#!/bin/sh\nn=$(cat {count} 2>/dev/null || echo 0)\necho $((n + 1)) > {count}\n"
            f"if {refuse}; then echo '{command}: error: Socket timed out on send/recv operation' >&2; exit 1; fi\n"
            f"exec {real} \"$@\"\n")
        (bin_dir / command).chmod(0o755)

    shim.calls = lambda command: int((tmp_path / f"{command}.calls").read_text()) \
        if (tmp_path / f"{command}.calls").exists() else 0
    return shim


@pytest.mark.slurm
def test_a_refused_submit_is_tried_again_with_backoff(slurm, tmp_path, shims, capsys):
    shims("sbatch", '[ "$n" -lt 2 ]')  # the first two calls time out
    results = {}
    run(driver(tmp_path / "jobs"), [Sum("abc")], results)
    assert results == {"abc": 3}
    assert shims.calls("sbatch") == 3
    assert capsys.readouterr().err.splitlines() == [
        "sbatch failed: sbatch: error: Socket timed out on send/recv operation; trying again in 0.05 s",
        "sbatch failed: sbatch: error: Socket timed out on send/recv operation; trying again in 0.1 s"]


@pytest.mark.slurm
def test_a_persistent_refusal_stops_the_submissions_and_keeps_the_running_jobs(slurm, tmp_path, shims, capsys):
    shims("sbatch", '[ "$n" -ge 1 ]')  # the first job is submitted, then every call is refused (a job limit)
    folder = tmp_path / "jobs"
    results = {}
    with pytest.raises(LearngeneError) as refused:
        run(driver(folder, retries=2), [Sum("first"), Sum("second"), Sum("third")], results)
    assert str(refused.value) == ("sbatch refused the job of second: sbatch: error: Socket timed out on send/recv "
                                  "operation (3 tries); check the slurm.* settings; not submitted: 1 parts (third); "
                                  "fix it and run the same command again: finished parts are kept")
    assert results == {"first": 5} and shims.calls("sbatch") == 4  # waited for, not cancelled
    assert list(json.loads((folder / "jobs.json").read_text())) == ["first"]
    assert "cancelled" not in capsys.readouterr().err


@pytest.mark.slurm
def test_squeue_failing_at_the_start_submits_nothing(slurm, tmp_path, shims):
    """A record of an earlier run's job, and squeue does not answer: that job may still run, so the part gets no
    second one."""
    folder = tmp_path / "jobs"
    folder.mkdir()
    (folder / "jobs.json").write_text(json.dumps({"abc": {"job_id": "99999", "signature": "abc"}}))
    shims("squeue", "true")
    shims("sbatch", "false")  # counts the calls: none expected
    with pytest.raises(LearngeneError, match=r"^squeue failed: squeue: error: Socket timed out on send/recv operation "
                                             r"\(3 tries\); nothing submitted: the jobs of an earlier run"):
        run(driver(folder, retries=2), [Sum("abc")], {})
    assert shims.calls("squeue") == 3 and shims.calls("sbatch") == 0
    assert [p.name for p in folder.iterdir()] == ["jobs.json"]


@pytest.mark.slurm
def test_a_part_whose_earlier_job_of_other_settings_still_runs_gets_no_second_job(slurm, tmp_path, shims):
    earlier = subprocess.run(["sbatch", "--parsable", f"--output={tmp_path / 'earlier.out'}", "--wrap=sleep 600"],
                             capture_output=True, text=True, check=True).stdout.strip()
    try:
        folder = tmp_path / "jobs"
        folder.mkdir()
        (folder / "jobs.json").write_text(json.dumps({"abc": {"job_id": earlier, "signature": "other code"}}))
        shims("sbatch", "false")  # counts the calls: none expected
        with pytest.raises(LearngeneError) as failed:
            run(driver(folder), [Sum("abc")], {})
        assert str(failed.value).startswith(
            f"part 'abc' (Slurm job {earlier}) failed: Slurm job {earlier} of an earlier run, with other code or "
            f"settings, is still ")
        assert f"in its folder: wait for it to end, or scancel {earlier} (log: " in str(failed.value)
        assert shims.calls("sbatch") == 0
    finally:
        subprocess.run(["scancel", earlier], check=True)


def requeues(folder: Path) -> list[str]:
    """submitit's requeues in the logs of a driver's ``folder``, e.g. ``Requeued job 2 (9 remaining timeouts)``."""
    return [line.split(" - ", 1)[1] for log in sorted(folder.glob("*/*_0_log.out"))
            for line in log.read_text().splitlines() if " - Requeued job " in line]


def checkpoints(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.startswith("stopped by a signal")]


@pytest.mark.slurm
def test_a_signal_during_the_final_evaluation_requeues_the_job_which_ends_with_the_uninterrupted_result(
        slurm, tmp_path):
    """A benchmark part: trained, then SIGTERM while its test split is evaluated; requeued, the part resumes from
    its own last.pt (nothing to train) and records what a run without the signal records."""
    local = TrainJob("trained", tmp_path / "local", tiny_training(tmp_path / "local" / "run"))()
    part = TrainJob("trained", tmp_path / "part", tiny_training(tmp_path / "part" / "run"))
    results = {}
    # The driver schedules the graph's job (a name, what it waits for); the Slurm job runs the part it starts.
    run(driver(tmp_path / "slurm"), [SimpleNamespace(name="trained", after=())], results, lambda job: SlurmTask(
        SignalDuring(part, "learngene.benchmark.runner", "test_metrics"), "cpu", threads=1, max_requeues=1))
    assert len(requeues(tmp_path / "slurm")) == 1
    assert checkpoints(tmp_path / "part" / "console.log") == [
        "stopped by a signal: requeueing the job (1 of at most 1)"]
    on_slurm = results["trained"].result
    assert on_slurm["test"] == local.result["test"] and on_slurm["val_top1"] == local.result["val_top1"]


@pytest.mark.slurm
def test_a_signal_during_model_building_requeues_the_training(slurm, tmp_path):
    """A training tool's job with resume= another run's last.pt, signalled while it builds its model: the requeued
    job starts it again from there, and ends with the weights of a run without the signal."""
    assert train(tiny_training(tmp_path / "first", "optim.epochs=1"))["epochs"] == 1  # the run it continues
    resume = f"resume={tmp_path / 'first' / 'last.pt'}"
    local = train(tiny_training(tmp_path / "local", resume))
    job = Training("training", tiny_training(tmp_path / "run", resume))
    results = {}
    run(driver(tmp_path / "slurm"), [job], results, lambda j: SlurmTask(
        SignalDuring(j, "learngene.engine.trainer", "build_student"), "cpu", threads=1, max_requeues=1))
    assert len(requeues(tmp_path / "slurm")) == 1
    assert checkpoints(next((tmp_path / "slurm").glob("*/*_0_log.err"))) == [
        "stopped by a signal: requeueing the job (1 of at most 1)"]
    assert results["training"]["val_top1"] == local["val_top1"]
    weights = [torch.load(p / "last.pt", weights_only=False)["model"] for p in (tmp_path / "local", tmp_path / "run")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


@pytest.mark.slurm
def test_requeues_are_bounded_by_max_requeues(slurm, tmp_path):
    folder = tmp_path / "slurm"
    job = Training("training", tiny_training(tmp_path / "run"))
    with pytest.raises(LearngeneError) as failed:
        run(driver(folder), [job], {}, lambda j: SlurmTask(
            SignalDuring(j, "learngene.engine.trainer", "build_student", times=3), "cpu", threads=1, max_requeues=1))
    assert len(requeues(folder)) == 1
    assert "failed: learngene.errors.LearngeneError: stopped by a signal after 1 requeues, the most " \
           "slurm.max_requeues=1 allows: not requeued again" in str(failed.value)


@pytest.mark.slurm
def test_a_driver_stopped_by_sigterm_cancels_its_job_and_exits_143(slurm, tmp_path):
    blocker = subprocess.run(["sbatch", "--parsable", "--cpus-per-task=2", f"--output={tmp_path / 'blocker.out'}",
                              "--wrap=sleep 600"], capture_output=True, text=True, check=True).stdout.strip()
    try:  # the blocker holds both CPUs: the driver's job stays queued
        args = ["--config", str(ROOT / "configs" / "digits" / "ancestry.yaml"), *TINY, f"output={tmp_path / 'run'}",
                "executor=slurm", "slurm.poll_seconds=0.2"]
        process = subprocess.Popen([sys.executable, str(ROOT / "tools" / "finetune.py"), *args],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = process.stdout.readline()
        assert ": submitted Slurm job " in line, line + process.stderr.read()
        process.send_signal(signal.SIGTERM)
        err = process.communicate(timeout=120)[1]
        job = line.split("submitted Slurm job ")[1].split()[0]
        assert process.returncode == 143
        assert err.splitlines()[-1] == ("interrupted: driver stopped by SIGTERM; run the same command again to "
                                        "continue")
        assert f"cancelled 1 Slurm jobs ({job})" in err and slurm.jobs() == [blocker]
    finally:
        subprocess.run(["scancel", blocker], check=True)


def test_a_requeued_training_resumes_its_own_last_pt_not_the_one_it_started_from(tmp_path):
    job = Training("training", tiny_training(tmp_path / "run", f"resume={tmp_path / 'other' / 'last.pt'}"))
    assert job.resumed() is job  # stopped before its first last.pt: started again from the other run's
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"")
    assert job.resumed().cfg.resume == "auto" and job.cfg.resume == str(tmp_path / "other" / "last.pt")


def test_checkpoint_resubmits_the_task_resumed_and_counts_the_requeues(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"")
    task = SlurmTask(Training("training", tiny_training(tmp_path)), "cpu", max_requeues=2)
    again = task.checkpoint().function
    assert (again.requeues, again.work.cfg.resume, again.max_requeues) == (1, "auto", 2)
    assert again.checkpoint().function.requeues == 2
    with pytest.raises(LearngeneError, match="after 2 requeues, the most slurm.max_requeues=2 allows"):
        dataclasses.replace(again, requeues=2).checkpoint()


def test_job_threads_come_from_the_allocation(monkeypatch):
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
    assert job_cpus() == 3
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 5})
    assert job_cpus() == 2
