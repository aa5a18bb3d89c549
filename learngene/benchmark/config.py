"""What `tools/benchmark.py` runs: which training configs make each part, which depths, methods and seeds.

Each trained part (ancestry, learngenes, Des-Net fine-tunes, Trained references) is an ordinary
training config file (the same ones `tools/finetune.py` and `tools/train_aux.py` take) plus
``key=value`` overrides, so the benchmark trains nothing a user could not train by hand.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from learngene.errors import LearngeneError
from learngene.slurm import EXECUTORS, SlurmConfig, check_slurm_config

BENCHMARK_METHODS = ("sws", "sws-random", "tleg", "weight-selection", "simple-lg", "vanilla-lg", "scratch",
                     "sws-elastic", "sws-select")
WIDTH_ELEMENTS = ("uniform", "consecutive")  # element rules that pick the same channels on every axis of a width


@dataclass
class PartConfig:
    config: str = ""  # a training YAML file (configs/...)
    overrides: list[str] = field(default_factory=list)  # key=value applied on top of it


@dataclass
class BenchmarkConfig:
    output: str = "runs/benchmark/digits"
    depths: list[int] = field(default_factory=lambda: list(range(6, 16)))
    # Des-Net widths (the depth x width grid, docs/width.md); empty = the SWS learngene's width only. Which methods
    # run at which widths: runner.Benchmark.method_widths.
    widths: list[int] = field(default_factory=list)
    methods: list[str] = field(default_factory=lambda: list(BENCHMARK_METHODS))
    # Replicate r of every cell has seed seeds[r] (its fine-tune seed; also the init seed of methods without a
    # learngene and the random plan's seed of sws-random) and uses learngene seed learngene_seeds[r % n]: the
    # fine-tune seeds are nested under the learngene seeds, len(seeds) / n of them each (default: one, paired).
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    learngene_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # of sws, tleg and simple-lg
    finetune_epochs: int = 1
    workers: int = 2  # parts trained at once, each in its own process (1 = in this process)
    threads: int = 1  # torch threads of every part: results are bitwise repeatable for a fixed count
    deterministic: bool = True  # every training part runs with deterministic=true
    keep_training_states: bool = False  # keep each finished part's last.pt (only needed to extend a training)
    bootstrap_resamples: int = 2000  # paired bootstrap of the verdicts (resampling learngene seeds and test images)
    teacher_cache: bool = True  # the learngenes after the first replay the ancestry's outputs (same data, seed)
    trained_depths: list[int] = field(default_factory=list)  # Trained references; empty = all depths
    vanilla_lg_layers: int = 3
    weight_selection_layers: str = "first"
    weight_selection_elements: str = "uniform"
    weight_selection_head_aware: bool = False  # keep heads whole when IMwLM selects a width (the grid: true)
    width_selection_elements: str = "uniform"  # sws-select: post-hoc selection of the SWS Des-Net's channels
    ancestry: PartConfig = field(default_factory=lambda: PartConfig("configs/digits/ancestry.yaml"))
    sws_aux: PartConfig = field(default_factory=lambda: PartConfig("configs/digits/aux.yaml"))
    tleg_aux: PartConfig = field(default_factory=lambda: PartConfig("configs/digits/tleg_aux.yaml"))
    elastic_aux: PartConfig = field(default_factory=lambda: PartConfig("configs/digits/aux_elastic.yaml"))
    simple_lg: PartConfig = field(default_factory=lambda: PartConfig("configs/digits/simple_lg.yaml"))
    finetune: PartConfig = field(default_factory=lambda: PartConfig("configs/digits/des_finetune.yaml"))
    trained: PartConfig = field(default_factory=lambda: PartConfig("configs/digits/trained.yaml"))
    # Optional sources; an empty config means: weight selection draws from the ancestry, Vanilla-LG takes the
    # top blocks of the deepest Trained reference. With optim.epochs=0 a part only evaluates and exports a
    # pretrained timm model (e.g. ImageNet's vit_large_patch16_224 as the weight-selection parent).
    weight_selection_parent: PartConfig = field(default_factory=PartConfig)
    vanilla_lg_source: PartConfig = field(default_factory=PartConfig)
    # local: every part on this machine (workers, or torchrun); slurm: every part one Slurm job (docs/cluster.md)
    executor: str = "local"
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    # key=value applied to every training part after its own overrides, e.g. [data.root=/my/imagenet];
    # tools/benchmark.py puts its data.* arguments here (data.download=true, data.root=...).
    part_overrides: list[str] = field(default_factory=list)


def check_benchmark_config(cfg: BenchmarkConfig) -> BenchmarkConfig:
    if cfg.executor not in EXECUTORS:
        raise LearngeneError(f"executor={cfg.executor!r}: use one of {', '.join(EXECUTORS)}")
    check_slurm_config(cfg.slurm)
    unknown = [m for m in cfg.methods if m not in BENCHMARK_METHODS]
    if unknown:
        raise LearngeneError(f"unknown methods {unknown}: choose from {', '.join(BENCHMARK_METHODS)}")
    if not cfg.depths or any(d < 1 for d in cfg.depths):
        raise LearngeneError(f"depths {cfg.depths} must be a non-empty list of positive integers")
    if not cfg.seeds or not cfg.learngene_seeds:
        raise LearngeneError("seeds and learngene_seeds must each list at least one seed")
    for name, seeds in (("seeds", cfg.seeds), ("learngene_seeds", cfg.learngene_seeds)):
        if len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
            raise LearngeneError(f"{name}={seeds} must be distinct non-negative integers")
    if len(cfg.seeds) % len(cfg.learngene_seeds):
        raise LearngeneError(f"seeds={cfg.seeds} must hold a multiple of the {len(cfg.learngene_seeds)} "
                             "learngene_seeds (the same number of fine-tune seeds under each learngene seed)")
    if cfg.workers < 1 or cfg.threads < 1:
        raise LearngeneError(f"workers={cfg.workers} and threads={cfg.threads} must be >= 1")
    if cfg.bootstrap_resamples < 100:
        raise LearngeneError(f"bootstrap_resamples={cfg.bootstrap_resamples} is too few for a 95% interval: "
                             "use at least 100 (default 2000)")
    if cfg.finetune_epochs < 0:
        raise LearngeneError(f"finetune_epochs={cfg.finetune_epochs} must be >= 0")
    if len(set(cfg.widths)) != len(cfg.widths) or any(w < 1 for w in cfg.widths):
        raise LearngeneError(f"widths={cfg.widths} must be distinct positive integers (or [] for the learngene's)")
    if cfg.width_selection_elements not in WIDTH_ELEMENTS:
        raise LearngeneError(f"width_selection_elements={cfg.width_selection_elements!r}: use one of "
                             f"{', '.join(WIDTH_ELEMENTS)} (a rule that keeps the same channels on every axis)")
    outside = [d for d in cfg.trained_depths if d not in cfg.depths]
    if outside:
        raise LearngeneError(f"trained_depths {outside} are not among depths {cfg.depths}: set trained_depths to "
                             "some of the depths (e.g. trained_depths=[] for all of them)")
    return cfg
