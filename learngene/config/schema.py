"""The training configuration: one structured dataclass per concern, filled from YAML and ``key=value``.

Every field here is a key a YAML file under ``configs/`` or a command-line override may set, e.g.
``optim.lr=1e-3`` or ``model.kwargs.embed_dim=64``. ``kwargs`` nodes are free-form dicts passed to
``timm.create_model``; every other node rejects unknown keys.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf

from learngene.data import DataConfig
from learngene.errors import LearngeneError


@dataclass
class ModelConfig:
    name: str = ""  # a timm model name, or local-dir:DIR for a model folder (tools/expand.py, a finished run)
    pretrained: bool = False  # timm's pretrained weights; for local-dir: the folder's weights
    checkpoint: str = ""  # a weights file (safetensors or torch) loaded strictly; overrides `pretrained`
    kwargs: dict[str, Any] = field(default_factory=dict)  # timm.create_model arguments (img_size, num_classes, ...)
    drop_path_rate: float = 0.0
    # >0: a model trained from scratch gets pos_embed ~ trunc_normal(std) instead of timm's std 0.02. With
    # tiny inputs (digits: 2x2 patches, token std ~0.6) a 0.02 position signal takes hundreds of updates to grow.
    pos_embed_std: float = 0.0
    # Train only the classifier (timm's get_classifier()), every other weight frozen: a linear probe of the
    # initialized features (weight selection's Table 9).
    linear_probe: bool = False


@dataclass
class TeacherConfig:
    name: str = ""  # "" = no teacher (plain CE training); a timm name or local-dir:DIR
    pretrained: bool = True
    checkpoint: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class DistillConfig:
    alpha: float = 1.0  # loss = (1 - alpha) * CE + alpha * KD; 1.0 is pure soft distillation (SWS)
    tau: float = 1.0  # softmax temperature of the KD term
    # Opt-in teacher-logit cache (docs/performance.md): a folder that records the teacher's top-k outputs in the
    # first run and replays them in later runs of the same teacher, data config and seed, e.g. other Aux-Nets.
    teacher_cache: str = ""
    teacher_cache_topk: int = 10


@dataclass
class OptimConfig:
    opt: str = "adamw"  # any timm optimizer name
    lr: float = 5e-4
    lr_base_batch: int = 0  # >0: lr is scaled by (global batch / lr_base_batch), DeiT uses 512; 0: lr as given
    weight_decay: float = 0.05
    clip_grad: float = 0.0  # max gradient norm; 0 = no clipping
    sched: str = "cosine"  # any timm scheduler name
    sched_on_updates: bool = False  # step the schedule after every optimizer update instead of every epoch
    epochs: int = 10  # 0 = only evaluate the model
    warmup_epochs: int = 0
    warmup_lr: float = 1e-6
    min_lr: float = 1e-5
    accum_steps: int = 1  # batches per optimizer update (gradient accumulation)


@dataclass
class ElasticConfig:
    """Width-nested Aux-Net training (learngene/engine/elastic.py, docs/width.md); off while ``widths`` is empty."""

    widths: list[int] = field(default_factory=list)  # e.g. [16, 32, 48, 64]: multiples of the head dim, max = width
    random_widths: int = 1  # passes per step at widths drawn from `widths`, besides the largest and the smallest
    sample_depths: list[int] = field(default_factory=list)  # [lo, hi]: extra passes run as cyclic Des-Nets of depth
    # drawn in lo..hi; [] = the Aux-Net's own layers


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    output: str = "runs/default"  # run folder: last.pt, log.csv, summary.json, config.yaml, the final model
    seed: int = 0
    resume: str = ""  # "" = fresh run, "auto" = continue OUTPUT/last.pt if it exists, or a last.pt path
    amp: str = "none"  # none | bf16 | fp16 (fp16 needs CUDA and uses a GradScaler)
    device: str = "auto"  # auto | cpu | cuda
    compile: bool = False  # torch.compile the trained model
    channels_last: bool = False
    ema: bool = False  # keep a timm ModelEmaV3 copy (evaluated and saved in last.pt; the artifact is not EMA)
    ema_decay: float = 0.9998
    deterministic: bool = False  # deterministic algorithms, no cudnn autotuning (bitwise reproducible on CPU)
    elastic: ElasticConfig = field(default_factory=ElasticConfig)  # width-nested Aux-Net training (docs/width.md)
    # Also evaluate the test split after every epoch, each image's top-1 hit kept in test_curve.json: the curves of
    # the transfer benchmark. Nothing in the training reads it, and it draws no random number (same weights).
    test_curve: bool = False
    # Also save the artifact after these epochs, in OUTPUT/epoch<N>/ (a learngene at chosen epochs, SWS Table 6).
    snapshot_epochs: list[int] = field(default_factory=list)


AMP_MODES = ("none", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
MAX_SEED = 2**31 - 1
# What a resumed run may change: where and how fast it runs, not what it computes. ``optim.epochs`` may
# grow: the schedule is rebuilt from the config, so the remaining epochs follow the new horizon.
RESUMABLE_KEYS = ("output", "resume", "device", "compile", "deterministic", "channels_last", "data.num_workers",
                  "ema", "optim.epochs")


def check_train_config(cfg: TrainConfig) -> TrainConfig:
    """Reject values the dataclass types let through but training cannot use."""
    problems = []
    if not cfg.model.name:
        problems.append("model.name is empty: set a timm model name or local-dir:DIR")
    if not cfg.output:
        problems.append("output is empty: set output=runs/NAME")
    if cfg.amp not in AMP_MODES:
        problems.append(f"amp={cfg.amp!r} is not one of {', '.join(AMP_MODES)}")
    if cfg.device not in DEVICES:
        problems.append(f"device={cfg.device!r} is not one of {', '.join(DEVICES)}")
    if cfg.optim.epochs < 0:
        problems.append(f"optim.epochs={cfg.optim.epochs} must be >= 0 (0 only evaluates)")
    if cfg.optim.accum_steps < 1:
        problems.append(f"optim.accum_steps={cfg.optim.accum_steps} must be >= 1")
    if not 0.0 <= cfg.distill.alpha <= 1.0:
        problems.append(f"distill.alpha={cfg.distill.alpha} must be in [0, 1]")
    if cfg.distill.tau <= 0:
        problems.append(f"distill.tau={cfg.distill.tau} must be > 0")
    if not 0.0 < cfg.ema_decay < 1.0:
        problems.append(f"ema_decay={cfg.ema_decay} must be in (0, 1)")
    if not 0 <= cfg.seed <= MAX_SEED:  # numpy seeds are 32-bit, and each process adds its rank
        problems.append(f"seed={cfg.seed} must be between 0 and {MAX_SEED}")
    snapshots = list(cfg.snapshot_epochs)
    if len(set(snapshots)) != len(snapshots) or any(not 1 <= e <= cfg.optim.epochs for e in snapshots):
        problems.append(f"snapshot_epochs={snapshots} must be distinct epochs between 1 and "
                        f"optim.epochs={cfg.optim.epochs}")
    if cfg.elastic.random_widths < 0:
        problems.append(f"elastic.random_widths={cfg.elastic.random_widths} must be >= 0")
    depths = cfg.elastic.sample_depths
    if depths and (len(depths) != 2 or not 1 <= depths[0] <= depths[1]):
        problems.append(f"elastic.sample_depths={list(depths)} must be [] or [lo, hi] with 1 <= lo <= hi")
    if problems:
        raise LearngeneError("; ".join(problems))
    return cfg


def resume_conflicts(saved: dict, cfg: TrainConfig) -> list[str]:
    """``key old (now new)`` for every setting outside ``RESUMABLE_KEYS`` that differs from ``saved``.

    ``saved`` is the config a training state was written with (a plain nested dict, as in ``last.pt``).
    """
    old, new = dict(flatten_config(saved)), dict(flatten_config(OmegaConf.to_container(OmegaConf.structured(cfg))))
    unset = "<unset>"
    return [f"{key} {old.get(key, unset)!r} (now {new.get(key, unset)!r})"
            for key in sorted(old.keys() | new.keys())
            if key not in RESUMABLE_KEYS and old.get(key, unset) != new.get(key, unset)]


def flatten_config(node: dict, prefix: str = ""):
    """``(dotted key, value)`` for every leaf of a nested config dict, e.g. ``("optim.lr", 5e-4)``."""
    for key, value in node.items():
        if isinstance(value, dict):
            yield from flatten_config(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value
