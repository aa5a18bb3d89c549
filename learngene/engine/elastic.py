"""Elastic (width-nested) Aux-Net training: one set of weights whose leading channels work at every width.

Each optimizer step runs the *sandwich rule* (slimmable networks, MatFormer): the trainer's usual forward
at the largest width (the Aux-Net's own layers), one pass at the smallest width and ``random_widths``
passes at widths drawn from all configured ones, every pass distilled from the same teacher outputs and
the losses averaged, so one backward accumulates the gradients of all passes into the shared weights.

A pass at width ``w`` runs the *same* parameters sliced to their leading prefix
(:func:`learngene.expand.width.narrow_width`: the first ``w / head_dim`` heads of q, k and v, the first
MLP hidden units at the model's MLP ratio (``mlp_units``, the expander's rule: widths without a whole
number of them are refused), the first ``w`` embedding channels of patch embed, pos embed,
every LayerNorm and the head's input) through ``torch.func.functional_call`` on a skeleton Aux-Net of
that width, built on the meta device. A LayerNorm of the skeleton normalizes over its ``w`` channels
only, exactly as the narrower Des-Net that :func:`narrow_width` gives will.

With ``sample_depths: [lo, hi]`` the extra passes also draw a Des-Net depth in ``lo .. hi`` and run the
stages as the cyclic expansion of that depth lays them out (``learngene.expand.cyclic_layer_sources``),
so shallow Des-Nets are trained too (the project's first prototype: this kept every depth working when narrowed).

Draws depend only on (seed, epoch, step), so resumed runs repeat them, and they use no global RNG.
"""
from __future__ import annotations

import random
from collections import Counter
from typing import Callable

import torch
from torch import nn

from learngene.config.schema import ElasticConfig
from learngene.errors import LearngeneError
from learngene.expand.plan import cyclic_layer_sources
from learngene.expand.width import mlp_units, narrow_width
from learngene.models import SWSAuxViT


def check_elastic(cfg: ElasticConfig, model: torch.nn.Module) -> None:
    """Refuse elastic settings the model cannot train (a one-line LearngeneError)."""
    if not isinstance(model, SWSAuxViT):
        raise LearngeneError(f"elastic training needs an SWS Aux-Net (sws_aux_*), not {type(model).__name__}: "
                             "set elastic.widths=[] or model.name=sws_aux_...")
    head_dim = model.embed_dim // model.num_heads
    bad = [w for w in cfg.widths if w % head_dim or not 0 < w <= model.embed_dim]
    if bad or max(cfg.widths) != model.embed_dim:
        raise LearngeneError(f"elastic.widths={list(cfg.widths)} must be multiples of the head dim {head_dim} up "
                             f"to the model's width {model.embed_dim}, which must be one of them")
    hidden = model.stages[0].mlp.fc1.out_features
    fractional = [w for w in cfg.widths if mlp_units(w, hidden / model.embed_dim) is None]
    if fractional:  # the expander could not make Des-Nets of those widths (plan_width): do not train them
        raise LearngeneError(f"elastic.widths {fractional} have no whole number of MLP units at the model's "
                             f"{hidden} units for width {model.embed_dim}: use widths w with w * {hidden} / "
                             f"{model.embed_dim} a whole number")
    if cfg.sample_depths and min(cfg.sample_depths) < len(model.stage_sizes):
        raise LearngeneError(f"elastic.sample_depths={list(cfg.sample_depths)} must start at >= "
                             f"{len(model.stage_sizes)} (the number of stages): shallower cyclic Des-Nets skip stages")


class ElasticSandwich:
    """The extra passes of the sandwich rule for one SWS Aux-Net (``model``, trained in place)."""

    def __init__(self, cfg: ElasticConfig, model: SWSAuxViT, drop_path_rate: float = 0.0, seed: int = 0):
        check_elastic(cfg, model)
        self.cfg, self.model, self.drop_path_rate, self.seed = cfg, model, drop_path_rate, seed
        self.widths = sorted(set(cfg.widths))
        self.skeletons: dict[tuple, SWSAuxViT] = {}

    def draw(self, epoch: int, step: int) -> list[tuple[int, int | None]]:
        """(width, depth) of the extra passes of batch ``step`` of ``epoch``; depth None = the Aux-Net's own."""
        rng = random.Random(f"elastic {self.seed} {epoch} {step}")
        widths = [self.widths[0]] + [rng.choice(self.widths) for _ in range(self.cfg.random_widths)]
        if not self.cfg.sample_depths:
            return [(w, None) for w in widths]
        low, high = self.cfg.sample_depths
        return [(w, rng.randint(low, high)) for w in widths]

    def skeleton(self, width: int, depth: int | None) -> SWSAuxViT:
        """A parameter-less (meta) Aux-Net of ``width`` whose stages are applied as a depth-``depth`` Des-Net's."""
        stage_sizes = self.model.stage_sizes
        if depth is not None:
            counts = Counter(cyclic_layer_sources(depth, stage_sizes))
            stage_sizes = [counts[s] for s in range(len(stage_sizes))]
        key = (width, tuple(stage_sizes))
        if key not in self.skeletons:
            hidden = mlp_units(width, self.model.stages[0].mlp.fc1.out_features / self.model.embed_dim)
            args = dict(self.model.architecture_args(), embed_dim=width, stage_sizes=stage_sizes,
                        num_heads=width * self.model.num_heads // self.model.embed_dim, mlp_ratio=hidden / width)
            with torch.device("meta"):
                self.skeletons[key] = SWSAuxViT(**args, drop_path_rate=self.drop_path_rate)
        return self.skeletons[key]

    def forward(self, images: torch.Tensor, width: int, depth: int | None = None) -> torch.Tensor:
        """The logits of the Aux-Net's leading ``width`` channels (applied as a depth-``depth`` Des-Net)."""
        params = dict(self.model.named_parameters())
        sliced = narrow_width(params, self.model.num_heads, width) if width != self.model.embed_dim else params
        skeleton = self.skeleton(width, depth).train(self.model.training)
        return torch.func.functional_call(skeleton, sliced, (images,))

    def extra_logits(self, images: torch.Tensor, epoch: int, step: int) -> list[torch.Tensor]:
        return [self.forward(images, width, depth) for width, depth in self.draw(epoch, step)]

    def at_width(self, width: int) -> nn.Module:
        """The Aux-Net's leading ``width`` channels as a module (what ``evaluate`` takes), its depth unchanged."""
        return AtWidth(self, width)

    def metadata(self) -> dict:
        """What a learngene records about its elastic training (``extra["elastic"]``)."""
        return {"widths": self.widths, "sample_depths": list(self.cfg.sample_depths),
                "random_widths": self.cfg.random_widths}


class AtWidth(nn.Module):
    """``ElasticSandwich.forward`` at one width; holds the Aux-Net, so ``eval()`` / ``train()`` reach it."""

    def __init__(self, sandwich: ElasticSandwich, width: int):
        super().__init__()
        self.sandwich, self.width, self.aux = sandwich, width, sandwich.model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.sandwich.forward(images, self.width)


def mean_over_passes(criterion: Callable[[torch.Tensor], torch.Tensor],
                     logits: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """``criterion(logits)``, or its mean over the passes when ``logits`` is a list (elastic training)."""
    if isinstance(logits, list):
        return sum(criterion(out) for out in logits) / len(logits)
    return criterion(logits)
