"""The benchmark's job graph: every part a benchmark config computes, one job each, with the jobs it reads.

``BenchmarkGraph(cfg, des).jobs()`` is the one list that the runner (every executor: worker processes, torchrun,
Slurm) and ``--plan`` both use. A job starts as soon as the jobs it reads are done:

* the ancestry, the configured sources and the Trained references read nothing;
* a learngene reads the ancestry (its teacher) and, replaying the teacher cache, the SWS learngene of its seed
  (which records the cache); never a Trained reference;
* a Des-Net (``init``: initialized and evaluated with no tuning) reads its source only: its learngene, IMwLM's and
  FRONT's parent, PF's Trained reference, Vanilla-LG's source; Scratch reads nothing;
* each fine-tune and each linear probe of a Des-Net is its own job that reads that Des-Net alone.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import timm
import torch

from learngene.benchmark.config import BENCHMARK_METHODS, BenchmarkConfig, DownstreamConfig, PartConfig, \
    Sources, check_widths, downstream_recipe, task_depths
from learngene.config import TrainConfig, load_config

KINDS = ("source", "trained", "learngene", "init", "finetune", "probe")
DES_NET_KINDS = ("init", "finetune", "probe")


def train_config(part: PartConfig, path: Path, overrides: list[str], deterministic: bool) -> TrainConfig:
    """A part's training config: its YAML, its overrides, then ``overrides``; it trains in ``path/run``."""
    # check_benchmark_config has checked each part's own overrides
    cfg = load_config(part.config, [*part.overrides, *overrides], TrainConfig,
                      "part_overrides (or the data.* arguments of the command line)")
    cfg.output = str(path / "run")
    cfg.deterministic = cfg.deterministic or deterministic
    return cfg


def task_recipes(cfg: BenchmarkConfig, task: DownstreamConfig) -> tuple[TrainConfig, TrainConfig | None]:
    """A downstream task's fine-tune recipe and its linear probe's (None without ``probe_epochs``), every epoch
    evaluated on test. The run's part_overrides are the upstream's: a task's data settings are its own and the run's
    downstream_overrides."""
    folder = Path(cfg.output) / "transfer" / task.name

    def recipe(overrides: list[str]) -> TrainConfig:
        return train_config(downstream_recipe(cfg, task), folder, [*overrides, "test_curve=true"], cfg.deterministic)

    probe = recipe(["model.linear_probe=true", f"optim.epochs={task.probe_epochs}"]) if task.probe_epochs else None
    return recipe([f"optim.epochs={task.epochs}"]), probe


@dataclass(frozen=True)
class DesNet:
    """One Des-Net: the benchmark method that initializes it, its cell and seeds, and where its parts live."""

    method: str
    depth: int
    width: int
    seed: int  # its initializer's seed (a learned method's: its learngene seed)
    finetune_seeds: tuple[int, ...]  # the replicate seeds its fine-tunes (and probes) train with
    options: dict  # the initializer's options
    source: str | None  # the job whose part it is made from (None: Scratch)
    cell: str  # its folder below init/, finetune/ and probe/: method[-learngene-epochE]/depthD[-widthW]
    task: str = ""  # the downstream task it is fine-tuned on ("": the upstream fine-tune)
    learngene_epoch: int | None = None  # made from the SWS learngene saved after this Aux-Net epoch
    fresh_classes: int | None = None  # a new classifier for this many classes (a downstream task's)


@dataclass(frozen=True)
class Job:
    """One part of the benchmark as one job: what it computes, what it reads, and what it trains (for the plan)."""

    name: str
    kind: str  # one of KINDS
    reads: tuple[str, ...]  # the jobs whose parts it needs: it starts once they are done
    path: Path  # its part folder
    # The training config it trains with (the teacher of a learngene is set when the ancestry is done); an init job's
    # is the fine-tune recipe whose test split it is evaluated on.
    recipe: TrainConfig
    model: tuple[str, dict]  # timm name and kwargs of the model it trains or initializes
    epochs: int  # 0: it trains nothing (an exported source, a Des-Net's initialization)
    teacher: tuple[str, dict] | None = None  # the model it distills from, whose forward passes it pays too
    method: str = ""  # a learngene's method
    depth: int = 0  # a Trained reference's depth
    seed: int = 0  # its seed (a fine-tune's: the fine-tune seed)
    des_net: DesNet | None = None  # the Des-Net an init, fine-tune or probe job makes or tunes

    @property
    def after(self) -> tuple[str, ...]:
        """What ``learngene.slurm.SlurmDriver`` waits for before submitting it: the jobs it reads."""
        return self.reads


class BenchmarkGraph:
    """The jobs of benchmark ``cfg`` whose Des-Nets are timm ``des`` = (architecture, arguments without depth)."""

    def __init__(self, cfg: BenchmarkConfig, des: tuple[str, dict]):
        self.cfg, self.out = cfg, Path(cfg.output)
        self.architecture, self.des_args = des
        self.full_width, self.head_dim = self.des_args["embed_dim"], check_widths(cfg.widths, self.des_args)
        self.finetune = self.train_config(cfg.finetune, self.out / "finetune", [f"optim.epochs={cfg.finetune_epochs}"])
        self.recipes: dict[str, TrainConfig] = {}
        self.ancestry = self.recipe("ancestry")

    def train_config(self, part: PartConfig, path: Path, overrides: list[str]) -> TrainConfig:
        return train_config(part, path, [*self.cfg.part_overrides, *overrides], self.cfg.deterministic)

    def recipe(self, part: str) -> TrainConfig:
        """The training config of BenchmarkConfig part ``part``, loaded once (a load takes tens of milliseconds)."""
        if part not in self.recipes:
            self.recipes[part] = self.train_config(getattr(self.cfg, part), self.out, [])
        return self.recipes[part]

    @property
    def learngene_seed_of(self) -> dict[int, int]:
        """Replicate seed -> its learngene seed: ``seeds[r]`` uses ``learngene_seeds[r % n]``."""
        cfg = self.cfg
        return {s: cfg.learngene_seeds[r % len(cfg.learngene_seeds)] for r, s in enumerate(cfg.seeds)}

    @property
    def learngene_methods(self) -> list[str]:
        """The methods whose learngenes the run trains: SWS's (the Des-Nets' architecture and the reference of the
        claims) and those of the run's methods."""
        used = {BENCHMARK_METHODS[m].learngene for m in self.cfg.methods}
        return ["sws"] + [m for m in BENCHMARK_METHODS if m != "sws" and m in used]

    def jobs(self) -> list[Job]:
        """Every job of the run, each after the jobs it reads."""
        upstream = self.upstream_jobs()
        named = {job.name: job for job in upstream}
        if not self.cfg.downstream:
            return upstream + self.des_net_jobs(named, self.out, self.finetune, None, self.cfg.depths)
        jobs = list(upstream)
        for task in self.cfg.downstream:
            finetune, probe = task_recipes(self.cfg, task)
            jobs += self.des_net_jobs(named, self.out / "transfer" / task.name, finetune, probe,
                                      task_depths(self.cfg, task), task)
        return jobs

    # -- the ancestry, the sources, the Trained references, the learngenes ------------------------------------------

    def trained_part(self, name: str, path: Path, part: str, kind: str, seed: int | None = None,
                     model: tuple[str, dict] | None = None, reads: tuple[str, ...] = (), teacher: bool = True,
                     **fields) -> Job:
        """The job that trains BenchmarkConfig part ``part`` in ``path`` (with ``seed`` and ``model`` where given);
        a recipe that distills is charged the ancestry's forward passes (a learngene's teacher is the ancestry),
        unless ``teacher`` is false (it replays the teacher cache)."""
        recipe = copy.deepcopy(self.recipe(part))
        recipe.output = str(path / "run")
        if seed is not None:  # as the override seed=N after the part's own
            recipe.seed = seed
        if model is not None:
            recipe.model.name, recipe.model.kwargs = model[0], copy.deepcopy(model[1])
        ancestry = (self.ancestry.model.name, self.ancestry.model.kwargs)
        return Job(name, kind, reads, path, recipe, (recipe.model.name, recipe.model.kwargs), recipe.optim.epochs,
                   ancestry if teacher and recipe.teacher.name else None, seed=seed or 0, **fields)

    def sources(self) -> dict[str, str]:
        """The configured sources the run's methods read, by the method that owns each: method -> BenchmarkConfig
        part."""
        readers = {BENCHMARK_METHODS[m].source or m for m in self.cfg.methods}
        return {method: info.source_part for method, info in BENCHMARK_METHODS.items()
                if info.source_part and getattr(self.cfg, info.source_part).config and method in readers}

    @property
    def trained_depths(self) -> list[int]:
        return sorted(self.cfg.trained_depths or self.cfg.depths, reverse=True)

    def upstream_jobs(self) -> list[Job]:
        cfg, out = self.cfg, self.out
        jobs = [self.trained_part("ancestry", out / "ancestry", "ancestry", "source")]
        jobs += [self.trained_part(f"sources/{method}", out / "sources" / method, part, "source", method=method)
                 for method, part in self.sources().items()]
        for d in self.trained_depths:
            for s in cfg.seeds:
                jobs.append(self.trained_part(f"trained depth{d} seed{s}", out / "trained" / f"depth{d}" / f"seed{s}",
                                              "trained", "trained", s, self.des(d), depth=d))
        # With the teacher cache the SWS learngene of each seed records the teacher's outputs and the others of that
        # seed replay them (they are charged no teacher).
        for s in cfg.learngene_seeds:
            jobs.append(self.learngene_job("sws", s, ("ancestry",), teacher=True))
        for s in cfg.learngene_seeds:
            for method in self.learngene_methods[1:]:
                reads = ("ancestry", f"learngene sws seed{s}") if cfg.teacher_cache else ("ancestry",)
                jobs.append(self.learngene_job(method, s, reads, teacher=not cfg.teacher_cache))
        return jobs

    def learngene_job(self, method: str, seed: int, reads: tuple[str, ...], teacher: bool) -> Job:
        """An Aux-Net, or (Simple-LG) a plain 5-layer net of the Des-Nets' architecture; it reads the ancestry first
        (its teacher)."""
        path = self.out / "learngenes" / method / f"seed{seed}"
        depth = BENCHMARK_METHODS[method].learngene_depth
        model = self.des(depth) if depth else None
        return self.trained_part(f"learngene {method} seed{seed}", path, BENCHMARK_METHODS[method].part, "learngene",
                                 seed, model, reads, teacher, method=method)

    # -- the Des-Nets ----------------------------------------------------------------------------------------------

    def des(self, depth: int, width: int | None = None) -> tuple[str, dict]:
        """The Des-Net architecture and arguments at ``depth`` and ``width`` (default: the learngene's)."""
        args = self.des_args if width in (None, self.full_width) else self.width_args(width)
        return self.architecture, {**args, "depth": depth}

    def width_args(self, width: int) -> dict:
        """The Des-Net arguments at ``width``, with the learngene's head dim."""
        return {**self.des_args, "embed_dim": width, "num_heads": width // self.head_dim}

    def source_job(self, method: str, named: dict[str, Job]) -> str:
        """The job of the configured source ``method`` reads (its own, or FRONT's: IMwLM's), else the ancestry."""
        source = BENCHMARK_METHODS[method].source or method
        return f"sources/{source}" if f"sources/{source}" in named else "ancestry"

    def method_widths(self, method: str, source: Job) -> list[int]:
        """The run's widths ``method`` makes (``BenchmarkMethod.widths``): every one, those below the learngene's,
        those up to its parent's (IMwLM: ``source``'s model, built on the meta device), or the learngene's only."""
        widths, rule = self.cfg.widths or [self.full_width], BENCHMARK_METHODS[method].widths
        if rule == "all":
            return widths
        if rule == "narrower":
            return [w for w in widths if w < self.full_width]
        if rule == "parent" and self.cfg.widths:
            with torch.device("meta"):
                parent = timm.create_model(source.model[0], **source.model[1])
            return [w for w in widths if w <= parent.embed_dim]
        return [w for w in widths if w == self.full_width]

    def width_options(self, method: str, width: int) -> dict:
        """The initializer options that make ``method``'s Des-Net ``width`` wide (the learngene's head dim)."""
        rule = BENCHMARK_METHODS[method].width_options
        if rule is not None:
            return rule(self.cfg, width)
        return {} if width == self.full_width else {"model_args": self.width_args(width)}

    def des_nets(self, named: dict[str, Job], depths: list[int]) -> list[DesNet]:
        """Every Des-Net of the run at ``depths``, at every (depth, width) cell each method can make. A learned
        method's Des-Net is initialized once per learngene seed and fine-tuned with that seed's replicate seeds; other
        methods draw their own seed per replicate."""
        cfg, lg_of, des_nets = self.cfg, self.learngene_seed_of, []
        for method in cfg.methods:
            info, source = BENCHMARK_METHODS[method], self.source_job(method, named)
            for depth in depths:
                for width in self.method_widths(method, named[source]):
                    options = self.width_options(method, width)
                    folder = f"depth{depth}" if width == self.full_width else f"depth{depth}-width{width}"
                    cell = Path(method) / folder
                    if info.learned:
                        for lg in cfg.learngene_seeds:
                            seeds = tuple(s for s in cfg.seeds if lg_of[s] == lg)
                            des_nets.append(DesNet(method, depth, width, lg, seeds, options,
                                                   f"learngene {info.learngene} seed{lg}", cell.as_posix()))
                    else:
                        for s in cfg.seeds:
                            at = Sources(self.architecture, options.get("model_args", self.des_args), depth, s,
                                         f"learngene sws seed{lg_of[s]}", f"trained depth{depth} seed{s}",
                                         f"trained depth{self.trained_depths[0]} seed{s}", source)
                            made_from, init_options = info.made_from(cfg, at)
                            des_nets.append(DesNet(method, depth, width, s, (s,), init_options, made_from,
                                                   cell.as_posix()))
        return des_nets

    def des_net_jobs(self, named: dict[str, Job], base: Path, finetune: TrainConfig, probe: TrainConfig | None,
                     depths: list[int], task: DownstreamConfig | None = None) -> list[Job]:
        """The init job of every Des-Net below ``base`` (fine-tuned with ``finetune``, probed with ``probe``), each
        followed by its fine-tunes and probes; a downstream task's adds the SWS Des-Nets made from the learngenes saved
        at ``learngene_epochs``."""
        des_nets = self.des_nets(named, depths)
        if task is not None:
            fresh = task.num_classes if task.head == "fresh" else None
            snapshots = [dataclasses.replace(d, cell=d.cell.replace("sws/", f"sws-learngene-epoch{epoch}/", 1),
                                             learngene_epoch=epoch)
                         for epoch in self.cfg.learngene_epochs for d in des_nets if d.method == "sws"]
            des_nets = [dataclasses.replace(d, task=task.name, fresh_classes=fresh) for d in des_nets + snapshots]
        prefix, jobs = f"{task.name} " if task is not None else "", []
        for d in des_nets:
            name = f"{prefix}{d.cell.replace('/', ' ').replace('-width', ' width')} seed{d.seed}"
            model = self.des(d.depth, d.width)
            jobs.append(Job(name, "init", (d.source,) if d.source else (), base / "init" / d.cell / f"seed{d.seed}",
                            finetune, model, 0, seed=d.seed, des_net=d))
            for kind, recipe in (("finetune", finetune), ("probe", probe)):
                for seed in d.finetune_seeds if recipe is not None else ():
                    path = base / kind / d.cell / f"seed{seed}"
                    tuned = copy.deepcopy(recipe)
                    tuned.seed, tuned.output = seed, str(path / "run")
                    teacher = (recipe.teacher.name, recipe.teacher.kwargs) if recipe.teacher.name else None
                    jobs.append(Job(f"{name} {kind} seed{seed}", kind, (name,), path, tuned, model,
                                    recipe.optim.epochs, teacher, seed=seed, des_net=d))
        return jobs
