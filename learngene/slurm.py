"""Trainings and benchmark parts as Slurm jobs, through submitit (what DeiT's and DINOv2's launchers use).

One part (or one training of ``tools/train_aux.py`` / ``tools/finetune.py``) is one Slurm job with one task per
GPU (``nodes x gpus_per_node`` tasks; one task on a CPU partition). The tasks form the process group the
engine builds under ``torchrun`` (submitit's torch.distributed environment: RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT).

The driver (this process) submits a job as soon as every job whose outputs it reads has finished (the
benchmark's job graph, learngene/benchmark/graph.py), not through Slurm dependencies. A part's inputs are only
known when its sources are done (the benchmark builds a learngene's job from the ancestry's result, a Des-Net's
from its learngene's), and a failed job must stop its dependants with a report, not leave them pending forever
(``DependencyNeverSatisfied``).

Stopped jobs resume, the way submitit means it: a job's task is a ``submitit.helpers.Checkpointable``. SIGTERM
(preemption, ``scancel --signal=TERM``) or the time limit's warning (SIGUSR2, ``signal_delay_s`` before it), at
any point of the job, calls its ``checkpoint()`` (inside the epoch loop once the trainer has saved a mid-epoch
``last.pt``), which resubmits the task with ``resume=auto`` on its own run folder, and submitit requeues the job
(at most ``max_requeues`` times). Its next run continues bitwise on CPU. Job states come from ``squeue`` and
submitit's result files, never ``sacct``: clusters without accounting work too. ``sbatch`` and ``squeue`` are
tried again with backoff (``retries``, ``retry_seconds``); a persistent refusal stops the submissions, not the
jobs already running.

The driver keeps ``jobs.json`` in its folder: the job of every part it submitted. Run again, it waits for
those still queued or running and submits only what is missing. Ctrl-C (or SIGTERM) cancels its jobs
(``scancel``: a training in its epoch loop saves its ``last.pt`` first) and exits with code 130 (143), or with
``slurm.on_interrupt=leave`` leaves them running for the next run.
"""
from __future__ import annotations

import contextlib
import dataclasses
import getpass
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import submitit
import timm
import torch
from huggingface_hub import constants as hub_constants
from huggingface_hub import try_to_load_from_cache

from omegaconf import OmegaConf

from learngene.checkpoint import atomic_write_text
from learngene.config import TrainConfig, load_config
from learngene.engine import train, train_tool
from learngene.engine.distributed import init_processes
from learngene.engine.preflight import check_training
from learngene.engine.trainer import format_summary
from learngene.errors import LearngeneError, first_line
from learngene.signals import Terminated, sigterm_raises, sigusr2_as_sigterm

# squeue's states of a job that is not over (a requeued job passes through several of them).
ACTIVE_STATES = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
                 "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "SPECIAL_EXIT", "RESV_DEL_HOLD"}
STOPPED_EXIT_CODE = 128 + signal.SIGTERM  # a task other than rank 0 stopped for the requeue rank 0 asked for
ON_INTERRUPT = ("cancel", "leave")
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}  # what stops the driver
DRIVER_TERMINATED = "driver stopped by SIGTERM; run the same command again to continue"


@dataclass
class SlurmConfig:
    """What ``executor=slurm`` submits with: the sbatch options users set on their cluster."""

    partition: str = ""  # "" = the cluster's default partition
    account: str = ""
    qos: str = ""
    time_minutes: int = 1440  # per job; a longer part is stopped, requeued and resumed
    nodes: int = 1
    gpus_per_node: int = 0
    # How the GPUs are asked for: "gpus-per-node" (--gpus-per-node=N) or "gres" (--gres=gpu:N, for clusters
    # that only know generic resources)
    gpu_request: str = "gpus-per-node"
    tasks_per_node: int = 0  # processes (ranks) per node; 0 = one per GPU, or one on CPUs
    cpus_per_task: int = 0  # 0 = the cluster's default
    mem_gb: float = 0  # 0 = the cluster's default
    constraint: str = ""
    sbatch_args: dict[str, str] = field(default_factory=dict)  # other sbatch options, e.g. {exclude: "node[1-2]"}
    job_name_prefix: str = "learngene"
    # Shell lines every job runs before its tasks start, e.g. ["module load cuda/12.1", "source ~/venv/bin/activate"]
    setup: list[str] = field(default_factory=list)
    max_jobs: int = 0  # jobs queued or running at once; 0 = no limit
    signal_delay_s: int = 120  # SIGUSR2 this long before the time limit: checkpoint and requeue
    poll_seconds: float = 30.0  # how often the driver asks squeue
    # sbatch and squeue are tried again this many times (a controller timeout, a per-user submission limit),
    # after retry_seconds, then twice as long each time; then the driver submits nothing more
    retries: int = 4
    retry_seconds: float = 15.0
    max_requeues: int = 10  # a job stopped by signals more often than this ends with an error instead
    on_interrupt: str = "cancel"  # Ctrl-C on the driver: "cancel" its jobs, or "leave" them running
    # For --plan only (nothing is submitted): sustained TFLOP/s of one GPU, and training images per epoch when
    # the config's dataset cannot be read on this machine (e.g. 1268355 for ImageNet-1K with val_holdout 0.01).
    plan_tflops: float = 100.0
    plan_train_images: int = 0


GPU_REQUESTS = ("gpus-per-node", "gres")
MIN_MEM_GB = 1 / 1024  # sbatch takes whole megabytes, and --mem=0 means all of a node's memory


def check_slurm_config(cfg: SlurmConfig, device: str = "auto") -> SlurmConfig:
    """Refuse settings Slurm would take but the jobs could not use; ``device``: the trainings' ``device``."""
    if cfg.on_interrupt not in ON_INTERRUPT:
        raise LearngeneError(f"slurm.on_interrupt={cfg.on_interrupt!r}: use one of {', '.join(ON_INTERRUPT)}")
    if cfg.gpu_request not in GPU_REQUESTS:
        raise LearngeneError(f"slurm.gpu_request={cfg.gpu_request!r}: use one of {', '.join(GPU_REQUESTS)}")
    for key, minimum in (("nodes", 1), ("time_minutes", 1), ("gpus_per_node", 0), ("tasks_per_node", 0),
                         ("cpus_per_task", 0), ("mem_gb", 0), ("max_jobs", 0), ("signal_delay_s", 0),
                         ("plan_train_images", 0), ("retries", 0), ("max_requeues", 0)):
        if not getattr(cfg, key) >= minimum:
            raise LearngeneError(f"slurm.{key}={getattr(cfg, key)} must be >= {minimum}")
    for key in ("poll_seconds", "plan_tflops"):
        if not 0 < getattr(cfg, key) < float("inf"):
            raise LearngeneError(f"slurm.{key}={getattr(cfg, key)} must be a positive number")
    if not 0 <= cfg.retry_seconds < float("inf"):
        raise LearngeneError(f"slurm.retry_seconds={cfg.retry_seconds} must be a number >= 0")
    if 0 < cfg.mem_gb < MIN_MEM_GB:
        raise LearngeneError(f"slurm.mem_gb={cfg.mem_gb} is below 1 MB, and --mem=0MB asks Slurm for all of a node's "
                             "memory: give the memory per node in GB, or 0 for the cluster's default")
    if cfg.gpus_per_node and cfg.tasks_per_node not in (0, cfg.gpus_per_node):
        raise LearngeneError(f"slurm.tasks_per_node={cfg.tasks_per_node} with slurm.gpus_per_node={cfg.gpus_per_node}:"
                             f" every task trains on one GPU of its node; set slurm.tasks_per_node={cfg.gpus_per_node}"
                             " or 0 (one per GPU)")
    if device == "cpu" and cfg.gpus_per_node:
        raise LearngeneError(f"slurm.gpus_per_node={cfg.gpus_per_node} with device=cpu: the jobs would hold GPUs they "
                             "do not use; set slurm.gpus_per_node=0, or device=auto to train on them")
    if device == "cuda" and not cfg.gpus_per_node:
        raise LearngeneError("device=cuda with slurm.gpus_per_node=0: the jobs would get no GPU; set "
                             "slurm.gpus_per_node to the GPUs per node")
    if cfg.signal_delay_s >= cfg.time_minutes * 60:
        raise LearngeneError(f"slurm.signal_delay_s={cfg.signal_delay_s} is not shorter than the time limit "
                             f"slurm.time_minutes={cfg.time_minutes} ({cfg.time_minutes * 60} s): the warning to "
                             "checkpoint and requeue would come before the training starts; give a delay well below "
                             "the time limit (default 120)")
    return cfg


def jobs_offline(cfg: SlurmConfig) -> bool:
    """Whether the jobs run with ``HF_HUB_OFFLINE=1``: they inherit this process's environment, or set it in
    ``slurm.setup``."""
    return bool(hub_constants.HF_HUB_OFFLINE) or any("HF_HUB_OFFLINE=1" in line for line in cfg.setup)


def weights_cached(name: str) -> bool:
    """Whether timm finds the pretrained weights of ``name`` (a timm name, or ``hf-hub:ORG/NAME``) without the
    network: in the Hugging Face cache (``HF_HOME``), or for the few without a hub copy in torch's hub cache."""
    if name.startswith("hf-hub:"):
        repo, url = name[len("hf-hub:"):], ""
    else:
        pretrained = timm.models.get_pretrained_cfg(name)
        if pretrained is None:
            return True  # not a timm name with weights: building the model says what is wrong
        repo, url = pretrained.hf_hub_id, pretrained.url
    if repo:
        return any(isinstance(try_to_load_from_cache(repo, filename), str)
                   for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors"))
    return bool(url) and (Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name).is_file()


def check_weights_cached(trainings: list[TrainConfig], cfg: SlurmConfig) -> None:
    """With jobs offline, refuse to submit trainings whose pretrained weights are not in the cache yet: each job
    would wait in the queue and then fail to download them (docs/cluster.md: fetch them on a login node first)."""
    if not jobs_offline(cfg):
        return
    for training in trainings:
        for what, node in (("model", training.model), ("teacher", training.teacher)):
            if node.name and node.pretrained and not node.checkpoint and not node.name.startswith("local-dir:") \
                    and not weights_cached(node.name):
                raise LearngeneError(
                    f"{what}.name {node.name!r} needs its pretrained weights, which are not in the Hugging Face cache "
                    f"({hub_constants.HF_HUB_CACHE}), and the jobs run with HF_HUB_OFFLINE=1: fetch them first where "
                    f"there is network, into the cache the jobs read: python -c \"import timm; "
                    f"timm.create_model('{node.name}', pretrained=True)\" (docs/cluster.md)")


def tasks_per_node(cfg: SlurmConfig) -> int:
    return cfg.tasks_per_node or max(cfg.gpus_per_node, 1)


def job_name(cfg: SlurmConfig, part: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{cfg.job_name_prefix}-{part}").strip("-")


def sbatch_parameters(cfg: SlurmConfig) -> dict:
    """submitit's SlurmExecutor parameters for ``cfg`` (every job gets them; the name is set per job)."""
    params = dict(time=cfg.time_minutes, nodes=cfg.nodes, ntasks_per_node=tasks_per_node(cfg),
                  signal_delay_s=cfg.signal_delay_s,
                  additional_parameters={"requeue": True, **cfg.sbatch_args})  # requeue: also on preemption
    gpus = {"gres": f"gpu:{cfg.gpus_per_node}"} if cfg.gpu_request == "gres" else {"gpus_per_node": cfg.gpus_per_node}
    optional = dict(partition=cfg.partition, account=cfg.account, qos=cfg.qos, constraint=cfg.constraint,
                    cpus_per_task=cfg.cpus_per_task, mem=f"{int(cfg.mem_gb * 1024)}MB" if cfg.mem_gb else "",
                    setup=list(cfg.setup), **gpus)
    params.update({k: v for k, v in optional.items() if v})
    return params


def job_cpus() -> int:
    """The CPUs this Slurm task was given: ``SLURM_CPUS_PER_TASK`` when the job asked for them, else the CPUs this
    process may run on (the affinity mask Slurm's task plugin sets), not the node's core count."""
    return int(os.environ.get("SLURM_CPUS_PER_TASK") or len(os.sched_getaffinity(0)))


@dataclass
class SlurmTask(submitit.helpers.Checkpointable):
    """What a job runs in each of its tasks: ``work()``, in the tasks' process group, with ``threads`` torch
    threads (0: ``OMP_NUM_THREADS`` when set, else the job's CPUs, ``job_cpus()``).

    A signal at any point of the job (SIGTERM; the time limit's SIGUSR2 arrives as one) goes to submitit's
    handler, which calls ``checkpoint()`` and requeues the job; inside the epoch loop the trainer first saves
    ``last.pt``, then ``work`` raises KeyboardInterrupt and the task calls that handler itself. ``work`` may
    define ``resumed()``: the work as a requeued run does it (e.g. ``resume=auto`` on its own folder)."""

    work: Callable
    device: str
    threads: int = 0
    max_requeues: int = 10
    requeues: int = 0  # how often this job was requeued so far

    def __call__(self):
        if self.threads or "OMP_NUM_THREADS" not in os.environ:  # which torch reads, as the tools run here do
            torch.set_num_threads(self.threads or job_cpus())
        env = submitit.JobEnvironment()
        if env.num_tasks > 1:  # each task picks its GPU by LOCAL_RANK, as under torchrun
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        requeue = requeue_on_signal()
        procs = init_processes(self.device)
        try:
            return self.work()
        except KeyboardInterrupt:  # stopped in the epoch loop, last.pt saved: requeue now
            requeue(signal.SIGTERM, None)
            raise SystemExit(STOPPED_EXIT_CODE) from None  # not rank 0, which requeues the job: no result
        finally:
            procs.close()

    def checkpoint(self) -> submitit.helpers.DelayedSubmission:
        """This task as the requeued job runs it (submitit calls this on a signal); past ``max_requeues`` an
        error, which ends the job."""
        if self.requeues >= self.max_requeues:
            raise LearngeneError(f"stopped by a signal after {self.requeues} requeues, the most "
                                 f"slurm.max_requeues={self.max_requeues} allows: not requeued again; run the same "
                                 "command again to continue from its last.pt")
        work = self.work.resumed() if hasattr(self.work, "resumed") else self.work
        print(f"stopped by a signal: requeueing the job ({self.requeues + 1} of at most {self.max_requeues})",
              file=sys.stderr, flush=True)
        return submitit.helpers.DelayedSubmission(dataclasses.replace(self, work=work, requeues=self.requeues + 1))


def requeue_on_signal() -> Callable:
    """In a submitit job: SIGTERM and SIGUSR2, wherever the job is, call submitit's checkpoint-and-requeue handler
    (submitit binds it to SIGUSR2 and ignores SIGTERM), once: the SIGTERM with which Slurm ends the requeued run
    must not requeue it again. SIGUSR2 arrives as SIGTERM, so that the epoch loop, which sets a flag on SIGTERM,
    saves ``last.pt`` first. Returns the handler."""
    checkpoint_and_requeue = signal.getsignal(signal.SIGUSR2)

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        checkpoint_and_requeue(signum, frame)

    signal.signal(signal.SIGTERM, handler)
    sigusr2_as_sigterm()
    return handler


class Unanswered(LearngeneError):
    """A Slurm command that failed or did not answer: its first error line."""


def job_states() -> dict[str, str]:
    """squeue's state of every job of this user (finished ones while Slurm still lists them); Unanswered when
    squeue fails."""
    try:
        out = subprocess.run(["squeue", "--noheader", "--states=all", "--format=%i|%T", f"--user={getpass.getuser()}"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Unanswered(first_line(e)) from None
    if out.returncode != 0:
        raise Unanswered(error_line(out.stderr) or f"squeue exited with code {out.returncode}")
    return dict(line.split("|", 1) for line in out.stdout.split() if "|" in line)


def error_line(text: str) -> str:
    """The first line of the exception a Python traceback ends with (a chained one's last), else the last
    line that mentions an error (slurmstepd's CANCELLED, OOM), else the last line."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
    if starts:
        return next((line for line in lines[starts[-1] + 1:] if not line.startswith(" ")), lines[-1])
    return next((line for line in reversed(lines) if "error" in line.lower()), lines[-1])


class Failed(LearngeneError):
    """Jobs that failed or that sbatch refused: their parts, first error lines and logs, and what was not submitted
    because of them."""


class Occupied(LearngeneError):
    """A part whose recorded job, of other code or settings, is still queued or running in its folder."""

    def __init__(self, message: str, job_id: str):
        super().__init__(message)
        self.job_id = job_id


class Refused(Unanswered):
    """sbatch refused the job of part ``part`` every time it was tried."""

    def __init__(self, message: str, part: str):
        super().__init__(message)
        self.part = part


class SlurmDriver:
    """Submits jobs, follows them with squeue, collects their results; keeps ``folder/jobs.json``."""

    def __init__(self, cfg: SlurmConfig, folder: Path):
        self.cfg = check_slurm_config(cfg)
        missing = [c for c in ("sbatch", "squeue", "scancel", "srun") if shutil.which(c) is None]
        if missing:
            raise LearngeneError(f"executor=slurm needs Slurm's {', '.join(missing)} on PATH: run on a Slurm login "
                                 "node, or use executor=local")
        self.folder = folder
        self.record_path = folder / "jobs.json"
        self.record = self.read_record(self.record_path)
        # submitit's own bound on requeues after a time limit, the same as ours on any requeue
        self.executor = submitit.SlurmExecutor(folder=folder / "%j", max_num_timeout=cfg.max_requeues)
        self.executor.update_parameters(**sbatch_parameters(cfg))
        self.done: set[str] = set()  # names of the finished jobs
        self.active: set[str] = set()  # ids of the jobs this driver submitted or waits for, not yet ended

    @staticmethod
    def read_record(path: Path) -> dict:
        try:
            return json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError):
            return {}  # an unreadable record only costs resubmissions

    def paths(self, job_id: str):
        return submitit.SlurmJob(self.folder / "%j", job_id, tasks=[0]).paths

    def retried(self, command: str, call: Callable):
        """``call()``, tried again while it raises Unanswered: ``retries`` more times, after ``retry_seconds``, then
        twice as long each time; the last Unanswered says how often it was tried."""
        for attempt in range(self.cfg.retries + 1):
            try:
                return call()
            except Unanswered as e:
                if attempt == self.cfg.retries:
                    raise Unanswered(f"{e} ({attempt + 1} tries)" if attempt else str(e)) from None
                wait = self.cfg.retry_seconds * 2 ** attempt
                print(f"{command} failed: {e}; trying again in {wait:g} s", file=sys.stderr, flush=True)
                time.sleep(wait)

    def states(self) -> dict[str, str] | None:
        """squeue's states (``job_states``), tried again with backoff; None when it does not answer: the jobs are
        then taken as still running, and the next poll asks again."""
        try:
            return self.retried("squeue", job_states)
        except Unanswered:
            return None

    def run(self, jobs: list, task: Callable, finished: Callable, signature: Callable[[object], str],
            probe: Callable | None = None, later: str = "") -> None:
        """Run ``jobs`` (each with ``name`` and ``after``: names of jobs it waits for) as Slurm jobs running
        ``task(job)``; ``finished(job, result)`` as each one ends. ``probe(job)``: its result when it is already
        done here (no job needed), else None. ``signature(job)``: what a recorded job must match to be waited
        for instead of submitted again. ``later``: what is not started when a job fails.

        A job sbatch keeps refusing stops the submissions; the jobs already submitted are waited for (not
        cancelled), and the refusal is reported with the failures once they end."""
        waiting, running, failures, absent, refused = list(jobs), {}, [], set(), None
        states = self.recorded_states() if self.record else None
        with sigterm_raises(lambda: Terminated(DRIVER_TERMINATED)):  # a killed driver acts as on Ctrl-C, exit 143
            try:
                while waiting or running:
                    blocked = self.blocked(waiting, failures)
                    ready = [j for j in waiting if j.name not in blocked and all(a in self.done for a in j.after)]
                    for job in ready if refused is None else []:
                        if self.cfg.max_jobs and len(running) >= self.cfg.max_jobs:
                            break
                        result = probe(job) if probe else None
                        if result is not None:
                            waiting.remove(job)
                            self.finish(job, result, finished)
                            continue
                        try:
                            job_id = self.recorded(job, signature(job), states)
                            if job_id is None:
                                job_id = self.submit(job, task(job), signature(job))
                        except Refused as e:
                            refused = e
                            break
                        except Occupied as e:
                            waiting.remove(job)
                            failures.append((job, e.job_id, (str(e), self.paths(e.job_id).stderr)))
                            continue
                        waiting.remove(job)
                        running[job_id] = job
                    if not running:
                        break  # the rest waits on failed parts, or sbatch refused it
                    time.sleep(self.cfg.poll_seconds)
                    states = self.states()
                    for job_id, job in list(running.items()):
                        outcome = self.outcome(job_id, states, absent)
                        if outcome is None:
                            continue
                        del running[job_id]
                        self.active.discard(job_id)
                        if outcome[0] == "success":
                            self.finish(job, outcome[1], finished)
                        else:
                            failures.append((job, job_id, outcome[1]))
            except BaseException:
                self.stop(self.active)
                raise
        if failures or refused:
            raise Failed(self.report(failures, waiting, later, refused))

    def recorded_states(self) -> dict[str, str]:
        """squeue's states before anything is submitted, when ``jobs.json`` names jobs of an earlier run: without
        them a part whose job still runs would get a second one, in the same folder."""
        try:
            return self.retried("squeue", job_states)
        except Unanswered as e:
            raise LearngeneError(f"squeue failed: {e}; nothing submitted: the jobs of an earlier run "
                                 f"({self.record_path}) may still be queued or running, and a part's second job would "
                                 "write into the same folder; run the same command again once squeue answers") from None

    def finish(self, job, result, finished: Callable) -> None:
        self.done.add(job.name)
        finished(job, result)

    @staticmethod
    def blocked(waiting: list, failures: list) -> set[str]:
        """Names of the waiting jobs that wait, directly or through others, for a failed job."""
        bad, blocked = {job.name for job, _, _ in failures}, set()
        changed = True
        while changed:
            changed = False
            for job in waiting:
                if job.name not in blocked and any(a in bad for a in job.after):
                    blocked.add(job.name)
                    bad.add(job.name)
                    changed = True
        return blocked

    def recorded(self, job, signature: str, states: dict | None) -> str | None:
        """The id of this part's recorded job if it is the same work and queued, running or finished well (a
        failed one is submitted again: the rerun is the fix). A recorded job of other work that is still queued
        or running is Occupied: a part's folder never gets a second job."""
        entry = self.record.get(job.name)
        if not entry:
            return None
        job_id, result = entry["job_id"], self.paths(entry["job_id"]).result_pickle
        active = (states or {}).get(job_id) in ACTIVE_STATES
        if entry.get("signature") != signature:
            if active:
                raise Occupied(f"Slurm job {job_id} of an earlier run, with other code or settings, is still "
                               f"{states[job_id].lower()} in its folder: wait for it to end, or scancel {job_id}",
                               job_id)
            return None
        if active or (result.exists() and submitit.core.utils.pickle_load(result)[0] == "success"):
            print(f"{job.name}: waiting for Slurm job {job_id}, submitted by an earlier run", flush=True)
            self.active.add(job_id)
            return job_id
        return None

    def submit(self, job, task: Callable, signature: str) -> str:
        """Submit ``job``'s task, trying again with backoff; Refused when sbatch refuses it every time."""
        try:
            return self.retried("sbatch", lambda: self.submit_once(job, task, signature))
        except Unanswered as e:
            raise Refused(f"sbatch refused the job of {job.name}: {e}", job.name) from None

    def submit_once(self, job, task: Callable, signature: str) -> str:
        self.executor.update_parameters(job_name=job_name(self.cfg, job.name))
        created = [p for p in (self.folder, *self.folder.parents) if not p.exists()]  # deepest first
        before = set(self.folder.iterdir()) if self.folder.is_dir() else set()
        # Ctrl-C waits until the job is recorded (then cancels it): between sbatch and here it would orphan it.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # sbatch's refusal is in the error below, on one line
                submitted = self.executor.submit(task)
            self.record[job.name] = {"job_id": submitted.job_id, "signature": signature}
            self.active.add(submitted.job_id)
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(json.dumps(self.record, indent=2) + "\n", self.record_path)
        except Exception as e:  # sbatch refused: a wrong partition, account, qos, ...
            for leftover in set(self.folder.iterdir()) - before:  # submitit's script and pickle: leave nothing
                if leftover.is_file():
                    leftover.unlink()
            for folder in created:
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise Unanswered(error_line(str(e)) or first_line(e)) from None
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        print(f"{job.name}: submitted Slurm job {submitted.job_id} (log: {submitted.paths.stderr})", flush=True)
        return submitted.job_id

    def outcome(self, job_id: str, states: dict | None, absent: set) -> tuple[str, object] | None:
        """("success", result) or ("error", (first error line, log)) once the job is over; None while it runs.

        A job is over when its result file exists, or when squeue (asked twice, so that a result being written
        is not missed) no longer lists it as active."""
        paths = self.paths(job_id)
        if paths.result_pickle.exists():
            outcome, value = submitit.core.utils.pickle_load(paths.result_pickle)
            return ("success", value) if outcome == "success" else ("error", (error_line(value), paths.stderr))
        if states is None or states.get(job_id) in ACTIVE_STATES:
            return None
        if job_id not in absent:
            absent.add(job_id)
            return None
        log = paths.stderr.read_text(errors="replace") if paths.stderr.is_file() else ""
        state = states.get(job_id, "no longer listed by squeue")
        return "error", (error_line(log) or f"job {job_id} ended ({state}) without a result", paths.stderr)

    def report(self, failures: list, waiting: list, later: str, refused: Refused | None) -> str:
        lines = [f"{refused}; check the slurm.* settings"] if refused else []
        lines += [f"part {job.name!r} (Slurm job {job_id}) failed: {line} (log: {log})"
                  for job, job_id, (line, log) in failures]
        left = [job.name for job in waiting if not (refused and job.name == refused.part)]
        if left:
            lines.append(f"not submitted: {len(left)} parts{'' if refused else ' that need it'} ({', '.join(left[:3])}"
                         f"{', ...' if len(left) > 3 else ''})")
        if later:
            lines.append(f"not started: {later}")
        if failures or len(lines) > 1:  # more than a refused job: what ran is kept
            lines.append("fix it and run the same command again: finished parts are kept")
        return "; ".join(lines)

    def stop(self, ids: set[str]) -> None:
        """Cancel the jobs ``ids`` (each saves its ``last.pt`` on the SIGTERM), or leave them running."""
        if not ids:
            return
        ids = sorted(ids, key=int)
        if self.cfg.on_interrupt == "leave":
            print(f"left {len(ids)} Slurm jobs running ({', '.join(ids)}): run the same command again to wait for "
                  "them, or scancel them", file=sys.stderr, flush=True)
            return
        subprocess.run(["scancel", *ids], capture_output=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until none is listed as queued or running
            with contextlib.suppress(Unanswered):
                if not any(job_states().get(i) in ACTIVE_STATES for i in ids):
                    break
            time.sleep(1)
        print(f"cancelled {len(ids)} Slurm jobs ({', '.join(ids)})", file=sys.stderr, flush=True)


def signature(*items) -> str:
    return hashlib.sha256(repr(items).encode()).hexdigest()[:16]


# -- tools/train_aux.py and tools/finetune.py: one training, one job ----------------------------------------------

EXECUTORS = ("local", "slurm")


@dataclass
class LaunchConfig:
    """Where a training tool runs: ``executor=slurm`` and ``slurm.*=...`` on its command line."""

    executor: str = "local"
    slurm: SlurmConfig = field(default_factory=SlurmConfig)


def launch_args(argv) -> tuple[list[str], LaunchConfig]:
    """Split a training tool's command line into its own arguments and its ``executor=`` / ``slurm.*=`` ones."""
    argv = list(sys.argv[1:] if argv is None else argv)
    launch = [a for a in argv if a.startswith(("executor=", "slurm."))]
    cfg = load_config(None, launch, LaunchConfig)
    if cfg.executor not in EXECUTORS:
        raise LearngeneError(f"executor={cfg.executor!r}: use one of {', '.join(EXECUTORS)}")
    refuse_slurm_settings_without_slurm(launch, cfg.executor)
    return [a for a in argv if a not in launch], cfg


def refuse_slurm_settings_without_slurm(overrides: list[str], executor: str) -> None:
    """``slurm.*`` on a command line that runs here: the user meant a Slurm job, and would train on a login node."""
    given = [o for o in overrides if o.startswith("slurm.")]
    if given and executor != "slurm":
        raise LearngeneError(f"{given[0]} applies to Slurm jobs but executor={executor} trains on this machine: add "
                             "executor=slurm, or drop the slurm.* settings")


@dataclass
class Training:
    """One training as a Slurm job's work: ``train(cfg)``; a SIGTERM stop raises KeyboardInterrupt (requeue)."""

    name: str
    cfg: TrainConfig
    after: tuple[str, ...] = ()

    def __call__(self) -> dict:
        summary = train(self.cfg)
        if summary.get("interrupted"):
            raise KeyboardInterrupt("training stopped by SIGTERM; last.pt saved")
        return summary

    def resumed(self) -> Training:
        """This training as its requeued job runs it: from its own ``last.pt`` once it saved one
        (``resume=auto``), not again from the ``resume=`` it was started with."""
        if not (Path(self.cfg.output) / "last.pt").is_file():
            return self
        return dataclasses.replace(self, cfg=dataclasses.replace(self.cfg, resume="auto"))


def run_training(cfg: TrainConfig, launch: LaunchConfig) -> int:
    """What the training tools run: ``train_tool(cfg)`` here, or the training as one Slurm job (resumed with
    ``resume=auto`` after a requeue), waited for; its console goes to the job's log."""
    if launch.executor == "local":
        return train_tool(cfg)
    job = Training(f"training {cfg.output}", cfg)
    folder = Path(cfg.output) / "slurm"
    # What the local run refuses, refused before sbatch; the output folder is this command's own once its record
    # names the job (run again, it waits for the job or continues it).
    check_training(cfg, before_submit=job.name not in SlurmDriver.read_record(folder / "jobs.json"))
    check_slurm_config(launch.slurm, cfg.device)
    check_weights_cached([cfg], launch.slurm)
    driver = SlurmDriver(launch.slurm, folder)
    cfg.resume = cfg.resume or "auto"  # a job started again by a rerun continues its last.pt
    summaries = []
    driver.run([job], lambda j: SlurmTask(j, cfg.device, launch.slurm.cpus_per_task, launch.slurm.max_requeues),
               lambda j, summary: summaries.append(summary),
               lambda j: signature(OmegaConf.to_yaml(OmegaConf.structured(j.cfg))))
    print(format_summary(summaries[0]), flush=True)
    return 0
