"""``tools/benchmark.py --plan``: the Slurm jobs a benchmark config implies (``graph.BenchmarkGraph``, the jobs the
runner runs), what each waits for, and an estimate of their GPU-hours and of the run's length, from the config alone:
nothing is submitted, trained or downloaded (models are built on the meta device; FLOPs counted by torch's
FlopCounterMode).

GPU-hours of a training = epochs x training images x (3 x the model's forward FLOPs + the teacher's forward FLOPs
when it distills) / ``slurm.plan_tflops``; a linear probe pays 1 forward pass of its frozen trunk instead of 3;
evaluations are left out (one forward pass over the test split), so a Des-Net's initialization costs nothing. The
learngenes after the first of a seed replay the teacher cache (``teacher_cache``) and are charged no teacher.

The critical path is the longest chain of jobs, each reading the one before, in job-hours (GPU-hours over the GPUs
of one job): how long the run takes when the cluster starts every job as soon as it may. Beside it, the length of
the same run in stages (sources and Trained references, then learngenes, then Des-Nets, each stage waiting for the
whole one before, and a Des-Net's fine-tunes one after the other), as the benchmark ran before its job graph.
"""
from __future__ import annotations

import functools
from pathlib import Path

import timm
import torch

from learngene.benchmark.config import BenchmarkConfig, check_benchmark_config, downstream_recipe
from learngene.benchmark.graph import DES_NET_KINDS, BenchmarkGraph, Job, train_config
from learngene.config import TrainConfig
from learngene.data import build_loaders
from learngene.errors import LearngeneError
from learngene.methods import forward_flops
from learngene.models import des_architecture
from learngene.slurm import tasks_per_node


@functools.lru_cache(maxsize=None)
def cached_flops(name: str, kwargs: tuple) -> int:
    """``methods.forward_flops`` of timm model ``name`` with ``frozen`` kwargs, counted once."""
    return forward_flops(name, dict(kwargs))


def frozen(kwargs: dict) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))


def train_images(part: TrainConfig) -> int:
    try:
        return build_loaders(part.data, seed=0)[2].num_train
    except LearngeneError as e:
        raise LearngeneError(f"--plan cannot count the training images ({e}): set slurm.plan_train_images, "
                             "e.g. slurm.plan_train_images=1268355 for ImageNet-1K with val_holdout=0.01") from None


class Planner:
    def __init__(self, cfg: BenchmarkConfig):
        self.cfg = check_benchmark_config(cfg)
        aux = train_config(cfg.sws_aux, Path(cfg.output), cfg.part_overrides, cfg.deterministic).model
        with torch.device("meta"):
            args = timm.create_model(aux.name, **aux.kwargs).des_model_args(1)
        self.graph = BenchmarkGraph(cfg, (des_architecture(aux.name), {k: v for k, v in args.items() if k != "depth"}))
        self.images = cfg.slurm.plan_train_images or train_images(self.graph.finetune)
        # training images per epoch of each downstream task (as plan_train_images says, else counted)
        self.task_images = {task.name: task.plan_train_images or train_images(
            train_config(downstream_recipe(cfg, task), Path(cfg.output), [], False)) for task in cfg.downstream}

    def hours(self, job: Job) -> float:
        """GPU-hours of ``job``: its epochs over its training images at 3 forward FLOPs per image (forward and
        backward; 1 for a linear probe, whose frozen trunk needs no backward), plus its teacher's forward."""
        if not job.epochs:  # an exported source, a Des-Net's initialization: evaluations only
            return 0.0
        task = job.des_net.task if job.des_net else ""
        images = self.task_images[task] if task else self.images
        flops = (1 if job.kind == "probe" else 3) * cached_flops(job.model[0], frozen(job.model[1]))
        if job.teacher is not None:
            flops += cached_flops(job.teacher[0], frozen(job.teacher[1]))
        return job.epochs * images * flops / (self.cfg.slurm.plan_tflops * 1e12) / 3600


def critical_path(jobs: list[Job], hours: dict[str, float]) -> list[str]:
    """The longest chain of ``jobs`` (in dependency order), each reading the one before, by summed ``hours``; what
    they read outside ``jobs`` counts as done."""
    end, chain = {}, {}
    for job in jobs:
        before = max((name for name in job.reads if name in end), key=end.get, default=None)
        end[job.name] = hours[job.name] + (end[before] if before else 0.0)
        chain[job.name] = [*chain[before], job.name] if before else [job.name]
    return chain[max(end, key=end.get)]


def stage_by_stage(jobs: list[Job], hours: dict[str, float]) -> float:
    """The run's length in stages: the ancestry, sources and Trained references, then the learngenes (those that
    replay the teacher cache after the SWS one of their seed), then every Des-Net with its fine-tunes and probes one
    after the other; each stage starts when the whole one before is done."""
    stages = [[job for job in jobs if job.kind in ("source", "trained")],
              [job for job in jobs if job.kind == "learngene"]]
    in_one_job: dict[str, float] = {}  # a Des-Net and its fine-tunes and probes, as one job
    for job in jobs:
        if job.kind in DES_NET_KINDS:
            init = job.name if job.kind == "init" else job.reads[0]
            in_one_job[init] = in_one_job.get(init, 0.0) + hours[job.name]
    return sum(sum(hours[name] for name in critical_path(stage, hours)) for stage in stages if stage) + \
        max(in_one_job.values(), default=0.0)


def plan(cfg: BenchmarkConfig) -> str:
    """The console text of ``--plan``: every job with what it waits for and its GPU-hours, and the critical path."""
    planner = Planner(cfg)
    jobs = planner.graph.jobs()
    hours = {job.name: planner.hours(job) for job in jobs}
    slurm = cfg.slurm
    gpus = slurm.nodes * tasks_per_node(slurm)
    total = sum(hours.values())
    lines = [f"plan: {len(jobs)} Slurm jobs, ~{total:,.0f} GPU-hours (at {slurm.plan_tflops:g} TFLOP/s per GPU, "
             f"{planner.images:,} training images per epoch; evaluations not counted); each job {slurm.nodes} node(s) "
             f"x {tasks_per_node(slurm)} task(s): ~{total / gpus:,.0f} job-hours; nothing submitted"]
    seeds = len(cfg.learngene_seeds)
    if seeds < 3:  # stats.difference gives no interval to a cell of fewer than 3 groups
        why = "the seed spread is not measured" if seeds == 1 else "intervals from 2 seeds are not calibrated"
        lines.append(f"no verdicts: {seeds} learngene seed{'s' if seeds > 1 else ''}, so {why} and no comparison "
                     "with a learned method gets an interval (means only); 3 or more learngene seeds give verdicts")
    else:
        lines.append(f"verdicts: yes, {seeds} learngene seeds measure each cell's spread")
    path = critical_path(jobs, hours)
    lines.append(f"critical path: ~{sum(hours[name] for name in path) / gpus:,.2f} job-hours ({' -> '.join(path)}); "
                 f"stage by stage: ~{stage_by_stage(jobs, hours) / gpus:,.2f} job-hours")
    lines.append("jobs (each submitted once the jobs it reads are done):")
    lines += [f"  {job.name}: ~{hours[job.name]:,.2f} GPU-h" + (f", after {', '.join(job.reads)}" if job.reads else "")
              for job in jobs]
    return "\n".join(lines)
