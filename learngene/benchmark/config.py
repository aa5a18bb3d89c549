"""What `tools/benchmark.py` runs: which training configs make each part, which depths, methods and seeds.

Each trained part (ancestry, learngenes, Des-Net fine-tunes, Trained references) is an ordinary
training config file (the same ones `tools/finetune.py` and `tools/train_aux.py` take) plus
``key=value`` overrides, so the benchmark trains nothing a user could not train by hand.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from learngene.baselines.front import CLASS_TOKEN_LAYOUTS
from learngene.config import TrainConfig, load_config
from learngene.errors import LearngeneError
from learngene.methods import init_front, init_pf, init_scratch, init_simple_lg, init_sws, init_sws_select, \
    init_tleg, init_vanilla_lg, init_weight_selection
from learngene.slurm import EXECUTORS, SlurmConfig, check_slurm_config


@dataclass(frozen=True)
class Sources:
    """What one Des-Net of a method that draws its own seed may be made from (the jobs of ``graph.BenchmarkGraph``
    by name), and its architecture: what the method's ``made_from`` chooses among."""

    architecture: str  # the Des-Nets' timm name
    model_args: dict  # the Des-Net's timm arguments at its width, without depth
    depth: int
    seed: int  # the replicate's seed
    learngene: str  # the SWS learngene of the replicate's learngene seed
    trained: str  # the Trained reference of this depth and seed
    deepest_trained: str  # the deepest Trained reference of this seed
    configured: str  # the method's configured source (``source_part``, or the one of ``source``), else the ancestry


def scratch_made_from(cfg: BenchmarkConfig, at: Sources) -> tuple[str | None, dict]:
    """Nothing: timm's initialization (with the project's position std where configured)."""
    scratch = {"pos_embed_std": cfg.scratch_pos_embed_std} if cfg.scratch_pos_embed_std else {}
    return None, {"model": at.architecture, "model_args": at.model_args, **scratch}


def random_plan_made_from(cfg: BenchmarkConfig, at: Sources) -> tuple[str | None, dict]:
    """The learngene of its replicate, a random plan drawn with the replicate's seed."""
    return at.learngene, {"strategy": "random"}


def pf_made_from(cfg: BenchmarkConfig, at: Sources) -> tuple[str | None, dict]:
    """The model pre-trained at this depth with this seed, as it is."""
    return at.trained, {}


def weight_selection_made_from(cfg: BenchmarkConfig, at: Sources) -> tuple[str | None, dict]:
    return at.configured, {"model": at.architecture, "model_args": at.model_args, "layers": cfg.weight_selection_layers,
                           "elements": cfg.weight_selection_elements, "head_aware": cfg.weight_selection_head_aware,
                           "select_head": cfg.weight_selection_select_head}


def front_made_from(cfg: BenchmarkConfig, at: Sources) -> tuple[str | None, dict]:
    """IMwLM's parent, with the released defaults."""
    return at.configured, {"model": at.architecture, "model_args": at.model_args, "class_token": cfg.front_class_token}


def vanilla_lg_made_from(cfg: BenchmarkConfig, at: Sources) -> tuple[str | None, dict]:
    """A configured source, or the deepest same-width model trained with this seed."""
    return at.configured if cfg.vanilla_lg_source.config else at.deepest_trained, {"num_layers": cfg.vanilla_lg_layers}


@dataclass(frozen=True)
class BenchmarkMethod:
    """One method of the benchmark: how its Des-Nets are made, where their variance comes from, how it is named."""

    label: str  # its name in tables and plots
    initializer: Callable | None  # learngene.methods: makes one Des-Net (None: the Trained references)
    spread: str  # what varies between the units of its no-tune cell (the ancestry and the data split never do)
    learngene: str | None = None  # the method whose learngene (one per learngene seed) it expands
    seeded: bool = False  # draws a seed per replicate (on top of its learngene's, or alone without one)
    part: str = ""  # the BenchmarkConfig part that trains its own learngene
    learngene_label: str = ""  # that learngene's name in the tables
    widths: str = "own"  # which of the run's widths it makes: own (the learngene's), all, narrower, parent (IMwLM's)
    # the method whose configured source it reads (FRONT: IMwLM's parent), "trained" for the Trained reference of
    # its depth and seed (PF); None: its own
    source: str | None = None
    at_chance: str = ""  # why its Des-Nets are at chance before any tuning, by construction (no no-tune verdict)
    # A method that draws its own seed: the job its Des-Net is made from (None: none) and the initializer's options
    made_from: Callable[[BenchmarkConfig, Sources], tuple[str | None, dict]] | None = None
    # The initializer's options that make a Des-Net of a given width (None: the Des-Net's timm arguments at it)
    width_options: Callable[[BenchmarkConfig, int], dict] | None = None
    source_part: str = ""  # the BenchmarkConfig part of its configured source (read when its config is set)
    learngene_depth: int = 0  # its learngene is a plain net of the Des-Nets' architecture at this depth (Simple-LG)
    # The phases of the claims table's "SWS above it at depths 6-9", and where the claim comes from when it is not the
    # SWS paper's Table 1 and 3
    claim_phases: tuple[str, ...] = ()
    claim_source: str = ""

    @property
    def learned(self) -> bool:
        """Its Des-Net is the learngene's expansion with no other randomness: one per learngene seed."""
        return self.learngene is not None and not self.seeded


BENCHMARK_METHODS = {
    "sws": BenchmarkMethod("SWS", init_sws, "learngene seed", learngene="sws", part="sws_aux",
                           learngene_label="SWS Aux-Net (learngene)"),
    "sws-random": BenchmarkMethod("SWS-RI", init_sws, "learngene seed x random plan seed", learngene="sws",
                                  seeded=True, made_from=random_plan_made_from),
    "tleg": BenchmarkMethod("TLEG", init_tleg, "learngene seed", learngene="tleg", part="tleg_aux",
                            learngene_label="TLEG Aux-Net (learngene)", claim_phases=("no-tune",)),
    "weight-selection": BenchmarkMethod("IMwLM", init_weight_selection, "Des-Net seed (new weights)", seeded=True,
                                        widths="parent", at_chance="keeps the child's fresh head (the released rule; "
                                                                   "weight_selection_select_head=true selects it)",
                                        made_from=weight_selection_made_from, source_part="weight_selection_parent",
                                        claim_phases=("no-tune", "fine-tuned")),
    "simple-lg": BenchmarkMethod("Simple-LG", init_simple_lg, "learngene seed", learngene="simple-lg",
                                 part="simple_lg", learngene_label="Simple-LG 5-layer net (learngene)",
                                 learngene_depth=5, claim_phases=("no-tune",)),
    # FRONT needs no learngene: the same parent as IMwLM, any depth and width; its Des-Net draws nothing from its
    # seed when the parent has every Des-Net tensor and its classes (the digits ancestry, ImageNet's ViT-L).
    "front": BenchmarkMethod("FRONT", init_front, "Des-Net seed (weights FRONT does not give)", seeded=True,
                             widths="all", source="weight-selection", made_from=front_made_from,
                             claim_phases=("no-tune", "fine-tuned"),
                             claim_source="FRONT, ICML 2026: newer than the paper"),
    "vanilla-lg": BenchmarkMethod("Vanilla-LG", init_vanilla_lg, "Trained source seed x Des-Net seed (new weights)",
                                  seeded=True, at_chance="keeps fresh embeddings and lower blocks",
                                  made_from=vanilla_lg_made_from, source_part="vanilla_lg_source",
                                  claim_phases=("no-tune", "fine-tuned")),
    "scratch": BenchmarkMethod("Scratch init", init_scratch, "Des-Net init seed", seeded=True, widths="all",
                               made_from=scratch_made_from),
    # Pre-train then fine-tune: the Trained reference of each depth, i.e. one model pre-trained per Des-Net size
    # (stored whole, per size); a method of transfer runs, where it is fine-tuned on the downstream data.
    "pf": BenchmarkMethod("PF", init_pf, "pre-training seed", seeded=True, source="trained", made_from=pf_made_from),
    # The elastic learngene narrows to its trained widths and grows above its own.
    "sws-elastic": BenchmarkMethod("SWS elastic", init_sws, "learngene seed", learngene="sws-elastic",
                                   part="elastic_aux", learngene_label="SWS elastic Aux-Net (learngene)", widths="all",
                                   width_options=lambda cfg, width: {"width": width}),
    "sws-select": BenchmarkMethod("SWS + selection", init_sws_select, "learngene seed", learngene="sws",
                                  widths="narrower", width_options=lambda cfg, width: {
                                      "width": width, "elements": cfg.width_selection_elements}),
}
TRAINED = BenchmarkMethod("Trained", None, "training seed", seeded=True)  # the rows of method "trained"


def method_info(name: str) -> BenchmarkMethod:
    """The registry entry of a result row's method (``trained``: the Trained references)."""
    return TRAINED if name == "trained" else BENCHMARK_METHODS[name]
WIDTH_ELEMENTS = ("uniform", "consecutive")  # element rules that pick the same channels on every axis of a width


@dataclass
class PartConfig:
    config: str = ""  # a training YAML file (configs/...)
    overrides: list[str] = field(default_factory=list)  # key=value applied on top of it


HEADS = ("fresh", "keep")


@dataclass
class DownstreamConfig:
    """A downstream task of the transfer benchmark (docs/transfer.md): every Des-Net is fine-tuned on it."""

    name: str = ""  # its name in folders, tables and plots, e.g. digits_5-9 or cifar100
    # The fine-tune recipe: a training YAML and overrides whose data node is the downstream dataset (train split for
    # training, val for choices, test for the curves); its optim.epochs is replaced by `epochs`.
    finetune: PartConfig = field(default_factory=PartConfig)
    epochs: int = 0  # the budget: test accuracy after every epoch up to it
    num_classes: int = 0  # the classes the dataset has, checked before anything is trained
    # fresh: every Des-Net gets timm's new classifier for the downstream classes (both papers' rule for a new label
    # set); keep: the method's own head (the downstream task is the upstream one: SWS Fig. 4)
    head: str = "fresh"
    disjoint: bool = False  # refuse a downstream that shares a class with the upstream data
    probe_epochs: int = 0  # >0: also a linear probe of each initialized Des-Net, that many epochs (WS Table 9)
    depths: list[int] = field(default_factory=list)  # some of the run's depths (SWS Fig. 5: 12 only); empty: all
    # --plan's training images per epoch of this task when its data is not on the planning machine (0: count them)
    plan_train_images: int = 0


@dataclass
class BenchmarkConfig:
    output: str = "runs/benchmark/digits"
    depths: list[int] = field(default_factory=lambda: list(range(6, 16)))
    # Des-Net widths (the depth x width grid, docs/width.md); empty = the SWS learngene's width only. Which methods
    # run at which widths: BenchmarkMethod.widths.
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
    # What to do with parts made with another key (other code, config, libraries or thread count), which the run
    # lists and never deletes: "stale" = compute them again, keeping each old folder beside as <part>.stale-<key8>
    # (recompute), or accept their results where only code, libraries or thread counts changed (reuse).
    recompute: str = ""
    reuse: str = ""
    teacher_cache: bool = True  # the learngenes after the first replay the ancestry's outputs (same data, seed)
    trained_depths: list[int] = field(default_factory=list)  # Trained references; empty = all depths
    vanilla_lg_layers: int = 3
    weight_selection_layers: str = "first"
    weight_selection_elements: str = "uniform"
    weight_selection_head_aware: bool = False  # keep heads whole when IMwLM selects a width (the grid: true)
    # Select IMwLM's classifier like every other layer (its parent must have the Des-Nets' classes); off, the released
    # rule keeps the child's fresh head, at chance before tuning, and the no-tune claims against IMwLM give no verdict.
    weight_selection_select_head: bool = False
    # >0: Scratch's Des-Nets draw their position embedding with this std instead of timm's 0.02, as the project's
    # from-scratch recipes do on tiny patches (configs/digits/trained.yaml); 0: timm's init as it is
    scratch_pos_embed_std: float = 0.0
    width_selection_elements: str = "uniform"  # sws-select: post-hoc selection of the SWS Des-Net's channels
    # FRONT from a class-token parent (ImageNet's ViT-L) to the pooled Des-Nets: "released" (the released code) or
    # "pooled" (the class token's position dropped, the final norm as fc_norm; docs/baselines.md)
    front_class_token: str = "released"
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
    # The transfer benchmark (docs/transfer.md): with downstream tasks, every Des-Net is fine-tuned on each of them
    # (curves over epochs) instead of the upstream fine-tune; part_overrides then go to the upstream parts only.
    downstream: list[DownstreamConfig] = field(default_factory=list)
    # key=value applied to every downstream task's recipes after the task's own, e.g. [data.root=/data/downstream]
    # (every torchvision downstream dataset has its own folder under one root, docs/datasets.md)
    downstream_overrides: list[str] = field(default_factory=list)
    # SWS learngenes also saved after these Aux-Net epochs and expanded downstream (SWS Table 6); transfer runs only.
    learngene_epochs: list[int] = field(default_factory=list)


# The BenchmarkConfig fields that are training parts (PartConfig).
PARTS = ("ancestry", "sws_aux", "tleg_aux", "elastic_aux", "simple_lg", "finetune", "trained",
         "weight_selection_parent", "vanilla_lg_source")


def downstream_recipe(cfg: BenchmarkConfig, task: DownstreamConfig) -> PartConfig:
    """The task's fine-tune recipe with the run's ``downstream_overrides`` after the task's own."""
    return PartConfig(task.finetune.config, [*task.finetune.overrides, *cfg.downstream_overrides])


def task_depths(cfg: BenchmarkConfig, task: DownstreamConfig) -> list[int]:
    """The run's depths the task fine-tunes."""
    return task.depths or cfg.depths


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
    for name in ("recompute", "reuse"):
        if getattr(cfg, name) not in ("", "stale"):
            raise LearngeneError(f"{name}={getattr(cfg, name)!r}: use {name}=stale (or leave it empty)")
    if cfg.workers < 1 or cfg.threads < 1:
        raise LearngeneError(f"workers={cfg.workers} and threads={cfg.threads} must be >= 1")
    if cfg.finetune_epochs < 0:
        raise LearngeneError(f"finetune_epochs={cfg.finetune_epochs} must be >= 0")
    if len(set(cfg.widths)) != len(cfg.widths) or any(w < 1 for w in cfg.widths):
        raise LearngeneError(f"widths={cfg.widths} must be distinct positive integers (or [] for the learngene's)")
    if cfg.front_class_token not in CLASS_TOKEN_LAYOUTS:
        raise LearngeneError(f"front_class_token={cfg.front_class_token!r}: use one of {', '.join(CLASS_TOKEN_LAYOUTS)}")
    if cfg.width_selection_elements not in WIDTH_ELEMENTS:
        raise LearngeneError(f"width_selection_elements={cfg.width_selection_elements!r}: use one of "
                             f"{', '.join(WIDTH_ELEMENTS)} (a rule that keeps the same channels on every axis)")
    if not cfg.downstream:
        transfer_only = [m for m in cfg.methods if BENCHMARK_METHODS[m].source == "trained"]
        if transfer_only or cfg.learngene_epochs:
            what = f"methods {transfer_only}" if transfer_only else f"learngene_epochs={cfg.learngene_epochs}"
            raise LearngeneError(f"{what} belong to the transfer benchmark: add downstream tasks (e.g. --preset "
                                 "transfer, docs/transfer.md) or drop them")
    check_downstream(cfg)
    for name in PARTS:  # a bad key in a part's overrides, named by its part before anything loads the part
        part = getattr(cfg, name)
        if part.config:
            load_config(part.config, part.overrides, TrainConfig, f"{name}.overrides {part.overrides} of the "
                                                                  "benchmark config")
    outside = [d for d in cfg.trained_depths if d not in cfg.depths]
    if outside:
        raise LearngeneError(f"trained_depths {outside} are not among depths {cfg.depths}: set trained_depths to "
                             "some of the depths (e.g. trained_depths=[] for all of them)")
    return cfg


def check_widths(widths: list[int], des_args: dict) -> int:
    """The head dim of the SWS Des-Nets (``des_args``), after refusing ``widths`` that are not multiples of it (the
    benchmark and its ``--plan`` both ask here)."""
    head_dim = des_args["embed_dim"] // des_args["num_heads"]
    odd = [w for w in widths if w % head_dim]
    if odd:
        raise LearngeneError(f"widths {odd} are not multiples of the learngene's head dim {head_dim}: "
                             f"choose widths like {', '.join(str(head_dim * k) for k in (2, 3, 4))}")
    return head_dim


def check_downstream(cfg: BenchmarkConfig) -> None:
    """The transfer settings that need no data or model to check (the rest: ``transfer.TransferBenchmark``)."""
    names = [task.name for task in cfg.downstream]
    for task in cfg.downstream:
        where = f"downstream task {task.name!r}"
        if not task.name or "/" in task.name or names.count(task.name) > 1:
            raise LearngeneError(f"downstream names {names} must be distinct, non-empty and without '/': name each "
                                 "task once, e.g. name: cifar100")
        if not task.finetune.config:
            raise LearngeneError(f"{where} has no finetune.config: give its recipe, e.g. "
                                 "finetune: {config: configs/digits/des_finetune.yaml}")
        if task.epochs < 1:
            raise LearngeneError(f"{where}: epochs={task.epochs} gives no curve: set a budget of at least 1 epoch")
        if task.probe_epochs < 0 or task.num_classes < 1 or task.plan_train_images < 0:
            raise LearngeneError(f"{where}: probe_epochs={task.probe_epochs} and plan_train_images="
                                 f"{task.plan_train_images} must be >= 0 and num_classes={task.num_classes} the "
                                 "dataset's class count (>= 1)")
        outside = [d for d in task.depths if d not in cfg.depths]
        if outside:
            raise LearngeneError(f"{where}: depths {outside} are not among the run's depths {cfg.depths}: give some "
                                 "of them, or depths=[] for all")
        if task.head not in HEADS:
            raise LearngeneError(f"{where}: head={task.head!r}: use fresh (a new classifier) or keep (the method's)")
    epochs = cfg.learngene_epochs
    if len(set(epochs)) != len(epochs) or any(e < 1 for e in epochs):
        raise LearngeneError(f"learngene_epochs={epochs} must be distinct positive Aux-Net epochs")
    if "pf" in cfg.methods:
        missing = [d for d in cfg.depths if cfg.trained_depths and d not in cfg.trained_depths]
        if missing:
            raise LearngeneError(f"pf fine-tunes the Trained reference of each depth, and depths {missing} have "
                                 "none: set trained_depths=[] (every depth) or drop pf")
