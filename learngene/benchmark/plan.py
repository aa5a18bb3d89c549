"""``tools/benchmark.py --plan``: the Slurm jobs a benchmark config implies, what each waits for, and an estimate of
its GPU-hours, from the config alone: nothing is submitted, trained or downloaded (models are built on the meta
device; FLOPs counted by torch's FlopCounterMode).

GPU-hours of a training = epochs x training images x (3 x the model's forward FLOPs + the teacher's forward FLOPs
when it distills) / ``slurm.plan_tflops``; evaluations are left out (one forward pass over the test split). The
learngenes after the first of a seed replay the teacher cache (``teacher_cache``) and are charged no teacher.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import timm
import torch

from learngene.benchmark.config import BENCHMARK_METHODS, PARTS, BenchmarkConfig, check_benchmark_config, \
    check_widths, downstream_recipe, task_depths
from learngene.benchmark.runner import train_config
from learngene.config import TrainConfig
from learngene.data import build_loaders
from learngene.errors import LearngeneError
from learngene.methods import forward_flops
from learngene.models import des_architecture
from learngene.slurm import tasks_per_node


@dataclass
class PlannedJob:
    name: str
    after: tuple[str, ...]
    gpu_hours: float


@functools.lru_cache(maxsize=None)
def cached_flops(name: str, kwargs: tuple) -> int:
    """``methods.forward_flops`` of timm model ``name`` with ``frozen`` kwargs, counted once."""
    return forward_flops(name, dict(kwargs))


def frozen(kwargs: dict) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))


class Planner:
    def __init__(self, cfg: BenchmarkConfig):
        self.cfg = check_benchmark_config(cfg)
        self.parts = {name: train_config(getattr(cfg, name), Path(cfg.output), cfg.part_overrides, cfg.deterministic)
                      for name in PARTS if getattr(cfg, name).config}
        self.images = cfg.slurm.plan_train_images or self.train_images(self.parts["finetune"])
        aux = self.parts["sws_aux"].model
        with torch.device("meta"):
            args = timm.create_model(aux.name, **aux.kwargs).des_model_args(1)
        self.des_name, self.des_args = des_architecture(aux.name), {k: v for k, v in args.items() if k != "depth"}
        check_widths(cfg.widths, self.des_args)

    @staticmethod
    def train_images(part: TrainConfig) -> int:
        try:
            return build_loaders(part.data, seed=0)[2].num_train
        except LearngeneError as e:
            raise LearngeneError(f"--plan cannot count the training images ({e}): set slurm.plan_train_images, "
                                 "e.g. slurm.plan_train_images=1268355 for ImageNet-1K with val_holdout=0.01") from None

    def hours(self, epochs: int, name: str, kwargs: dict, teacher: tuple[str, dict] | None = None,
              images: int | None = None, passes: int = 3) -> float:
        """GPU-hours of ``epochs`` over ``images`` (default the run's) at ``passes`` forward FLOPs per image (3: forward
        and backward; 1: a linear probe, whose frozen trunk needs no backward), plus the forward of a ``teacher``
        (timm name, kwargs)."""
        flops = passes * cached_flops(name, frozen(kwargs))
        if teacher is not None:
            flops += cached_flops(teacher[0], frozen(teacher[1]))
        return epochs * (images or self.images) * flops / (self.cfg.slurm.plan_tflops * 1e12) / 3600

    def part_hours(self, part: str, model: tuple[str, dict] | None = None, teacher: bool = True) -> float:
        cfg = self.parts[part]
        name, kwargs = model or (cfg.model.name, cfg.model.kwargs)
        # a distilling part's teacher is the ancestry (the benchmark points teacher.name at its model folder)
        ancestry = self.parts["ancestry"].model
        return self.hours(cfg.optim.epochs, name, kwargs,
                          (ancestry.name, ancestry.kwargs) if teacher and cfg.teacher.name else None)

    def des(self, depth: int, width: int | None = None) -> tuple[str, dict]:
        args = {**self.des_args, "depth": depth}
        if width and width != args["embed_dim"]:
            args.update(embed_dim=width, num_heads=width // (args["embed_dim"] // args["num_heads"]))
        return self.des_name, args

    def waves(self) -> list[tuple[str, list[PlannedJob]]]:
        cfg = self.cfg
        lg_of = {s: cfg.learngene_seeds[r % len(cfg.learngene_seeds)] for r, s in enumerate(cfg.seeds)}
        stage1 = [PlannedJob("ancestry", (), self.part_hours("ancestry"))]
        sources, readers = {}, {BENCHMARK_METHODS[m].source or m for m in cfg.methods}  # as the runner reads them
        for method, part in (("weight-selection", "weight_selection_parent"), ("vanilla-lg", "vanilla_lg_source")):
            if part in self.parts and method in readers:
                stage1.append(PlannedJob(f"sources/{method}", (), self.part_hours(part)))
                sources[method] = f"sources/{method}"
        trained_depths = sorted(cfg.trained_depths or cfg.depths, reverse=True)
        stage1 += [PlannedJob(f"trained depth{d} seed{s}", (), self.part_hours("trained", self.des(d)))
                   for d in trained_depths for s in cfg.seeds]

        stage2 = []
        for s in cfg.learngene_seeds:
            first = f"learngene sws seed{s}"
            stage2.append(PlannedJob(first, ("ancestry",), self.part_hours("sws_aux")))
            for method, part in (("tleg", "tleg_aux"), ("sws-elastic", "elastic_aux"), ("simple-lg", "simple_lg")):
                if method in cfg.methods:
                    model = self.des(5) if method == "simple-lg" else None
                    after = ("ancestry", first) if cfg.teacher_cache else ("ancestry",)
                    stage2.append(PlannedJob(f"learngene {method} seed{s}", after,
                                             self.part_hours(part, model, teacher=not cfg.teacher_cache)))

        stage3, full = [], self.des_args["embed_dim"]
        tune = self.parts["finetune"]
        for prefix, epochs, probe_epochs, images, depths in self.targets():
            stage3 += self.des_nets(prefix, epochs, probe_epochs, images, depths, tune, lg_of, sources,
                                    trained_depths, full)
        return [("ancestry and Trained references", stage1), ("learngenes", stage2),
                ("downstream" if cfg.downstream else "Des-Nets", stage3)]

    def targets(self) -> list[tuple[str, int, int, int, list[int]]]:
        """``(job name prefix, fine-tune epochs, probe epochs, training images, depths)``: the upstream fine-tune, or
        each downstream task's (the transfer benchmark; its images as ``plan_train_images`` says, else counted)."""
        cfg = self.cfg
        if not cfg.downstream:
            return [("", cfg.finetune_epochs, 0, self.images, cfg.depths)]
        return [(f"{task.name} ", task.epochs, task.probe_epochs, task.plan_train_images or self.train_images(
                 train_config(downstream_recipe(cfg, task), Path(cfg.output), [], False)), task_depths(cfg, task))
                for task in cfg.downstream]

    def des_nets(self, prefix: str, epochs: int, probe_epochs: int, images: int, depths: list[int], tune: TrainConfig,
                 lg_of: dict, sources: dict, trained_depths: list[int], full: int) -> list[PlannedJob]:
        cfg, stage3 = self.cfg, []
        for method in cfg.methods:
            info, source = BENCHMARK_METHODS[method], BENCHMARK_METHODS[method].source or method
            # BenchmarkMethod.widths; a parent's width (IMwLM) is not known before it is trained: all are counted
            widths = [w for w in (cfg.widths or [full]) if info.widths in ("all", "parent")
                      or (info.widths == "narrower" and w < full) or w == full]
            for depth in depths:
                for width in widths:
                    cell = f"depth{depth}" if width == full else f"depth{depth} width{width}"
                    distilled = (tune.teacher.name, tune.teacher.kwargs) if tune.teacher.name else None
                    each = self.hours(epochs, *self.des(depth, width), distilled, images) + \
                        self.hours(probe_epochs, *self.des(depth, width), None, images, passes=1)
                    if info.learned:
                        snapshots = [""] + [f"-learngene-epoch{e}" for e in cfg.learngene_epochs if method == "sws"]
                        for lg in cfg.learngene_seeds:
                            tuned = sum(lg_of[s] == lg for s in cfg.seeds)
                            stage3 += [PlannedJob(f"{prefix}{method}{snapshot} {cell} seed{lg}",
                                                  (f"learngene {info.learngene} seed{lg}",), tuned * each)
                                       for snapshot in snapshots]
                        continue
                    for s in cfg.seeds:
                        after = ((f"learngene {info.learngene} seed{lg_of[s]}",) if info.learngene
                                 else (sources.get(source, "ancestry"),) if source == "weight-selection"
                                 else (sources.get(source, f"trained depth{trained_depths[0]} seed{s}"),)
                                 if source == "vanilla-lg" else (f"trained depth{depth} seed{s}",)
                                 if source == "trained" else ())
                        stage3.append(PlannedJob(f"{prefix}{method} {cell} seed{s}", after, each))
        return stage3


def plan(cfg: BenchmarkConfig) -> str:
    """The console text of ``--plan``: every job with what it waits for and its GPU-hours, wave by wave."""
    planner = Planner(cfg)
    waves = planner.waves()
    slurm = cfg.slurm
    gpus = slurm.nodes * tasks_per_node(slurm)
    jobs = [job for _, wave in waves for job in wave]
    total = sum(job.gpu_hours for job in jobs)
    lines = [f"plan: {len(jobs)} Slurm jobs in {len(waves)} waves, ~{total:,.0f} GPU-hours (at {slurm.plan_tflops:g} "
             f"TFLOP/s per GPU, {planner.images:,} training images per epoch; evaluations not counted); each job "
             f"{slurm.nodes} node(s) x {tasks_per_node(slurm)} task(s): ~{total / gpus:,.0f} job-hours; "
             "nothing submitted"]
    seeds = len(cfg.learngene_seeds)
    if seeds < 3:  # stats.difference gives no interval to a cell of fewer than 3 groups
        why = "the seed spread is not measured" if seeds == 1 else "intervals from 2 seeds are not calibrated"
        lines.append(f"no verdicts: {seeds} learngene seed{'s' if seeds > 1 else ''}, so {why} and no comparison "
                     "with a learned method gets an interval (means only); 3 or more learngene seeds give verdicts")
    else:
        lines.append(f"verdicts: yes, {seeds} learngene seeds measure each cell's spread")
    for number, (title, wave) in enumerate(waves, 1):
        hours = sum(job.gpu_hours for job in wave)
        after = "submitted at once" if number == 1 else f"submitted when wave {number - 1} is done"
        lines.append(f"wave {number}: {title}: {len(wave)} jobs, ~{hours:,.1f} GPU-hours ({after}; a job listed "
                     "'after' another in its wave waits for it, the others read parts of earlier waves)")
        lines += [f"  {job.name}: ~{job.gpu_hours:,.2f} GPU-h" + (f", after {', '.join(job.after)}" if job.after
                                                                   else "") for job in wave]
    return "\n".join(lines)
