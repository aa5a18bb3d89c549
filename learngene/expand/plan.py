"""Which learngene stage initializes each layer of a Des-Net.

A plan is a plain list ``layer_sources`` with one stage index per Des-Net layer, e.g. for the
default five stages (3, 3, 4, 3, 3) and depth 12: ``[0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4]``.
:class:`ExpansionPlan` adds what produced it so a Des-Net folder records where every layer came from.

Cyclic initialization (the SWS default) visits the stages round-robin in an *order*; every visit
gives that stage one more layer. The layers are then laid out stage by stage, so the Des-Net keeps
the Aux-Net's stage order and only the number of layers per stage changes.

Named orders group the M stages into front / mid / last parts: ``front`` is the first
``(M - 1) // 2`` stages, ``last`` the last ``(M - 1) // 2``, ``mid`` the rest (one stage when M is
odd, two when it is even). For 5 stages: front {0, 1}, mid {2}, last {3, 4}. The order name lists
the parts in visiting order, e.g. ``front-last-mid`` visits 0, 1, 3, 4, 2.
"""
from __future__ import annotations

import dataclasses
import random
from typing import Sequence

from learngene.errors import LearngeneError
from learngene.models.sws_aux import check_stage_sizes

ORDER_NAMES = (
    "front-mid-last",
    "front-last-mid",
    "mid-front-last",
    "mid-last-front",
    "last-front-mid",
    "last-mid-front",
)
STRATEGIES = ("cyclic", "random", "shuffled")


def check_positive_int(value: int, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise LearngeneError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_depth(depth: int | None) -> int:
    if depth is None:  # the tools' --depth, optional for the methods that can keep their source's depth
        raise LearngeneError("no depth given: this method needs the Des-Net's depth, e.g. --depth 12")
    return check_positive_int(depth, "depth")


def stage_groups(num_stages: int) -> dict[str, list[int]]:
    """The front / mid / last grouping used by named orders (see module docstring)."""
    side = (num_stages - 1) // 2
    return {
        "front": list(range(side)),
        "mid": list(range(side, num_stages - side)),
        "last": list(range(num_stages - side, num_stages)),
    }


def resolve_order(order: str | Sequence[int] | None, num_stages: int) -> list[int]:
    """Turn an order name, a list of stage indices, or None (front-mid-last) into stage indices."""
    if order is None:
        return list(range(num_stages))
    if isinstance(order, str):
        name = order.strip().lower().replace("_", "-")
        if name not in ORDER_NAMES:
            if all(part.strip().isdigit() for part in name.split(",")):
                return resolve_order([int(p) for p in name.split(",")], num_stages)
            raise LearngeneError(
                f"unknown order {order!r}: use one of {', '.join(ORDER_NAMES)} or a permutation like 0,1,2,3,4"
            )
        groups = stage_groups(num_stages)
        return [s for part in name.split("-") for s in groups[part]]
    stages = [int(s) for s in order]
    if sorted(stages) != list(range(num_stages)):
        raise LearngeneError(
            f"order {stages} must be a permutation of the stage indices 0..{num_stages - 1}"
        )
    return stages


def order_name(visit: Sequence[int]) -> str:
    """The name of a stage order (``front-last-mid``), or its stage indices (``0,2,1,3,4``) when it has none."""
    names = [name for name in ORDER_NAMES if resolve_order(name, len(visit)) == list(visit)]
    return names[0] if names else ",".join(map(str, visit))


def layout_by_stage(counts: Sequence[int]) -> list[int]:
    """Stage-by-stage layout: counts (2, 1, 3) -> [0, 0, 1, 2, 2, 2]."""
    return [s for s, n in enumerate(counts) for _ in range(n)]


def cyclic_layer_sources(depth: int, stage_sizes: Sequence[int], order=None) -> list[int]:
    """Cyclic initialization: round-robin over stages in ``order``, laid out stage by stage.

    >>> cyclic_layer_sources(12, (3, 3, 4, 3, 3))
    [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4]
    """
    sizes = check_stage_sizes(stage_sizes)
    return layout_by_stage(cyclic_counts(depth, resolve_order(order, len(sizes))))


def cyclic_counts(depth: int, visit: Sequence[int]) -> list[int]:
    """Layers per stage when ``depth`` layers visit the stages round-robin in the order ``visit``.

    Only the first ``depth % M`` stages of the order get an extra layer, so at a depth that is a multiple
    of the number of stages M every order gives the same plan.
    """
    check_depth(depth)
    counts = [0] * len(visit)
    for i in range(depth):
        counts[visit[i % len(visit)]] += 1
    return counts


def random_layer_sources(depth: int, stage_sizes: Sequence[int], seed: int, keep_order: bool = True) -> list[int]:
    """Random-assigned initialization, reproducible per ``seed``.

    ``keep_order=True`` (our reading of the paper's RI): the number of layers per stage is random,
    every stage gets at least one layer when ``depth >= M`` (with fewer layers, a random subset of
    stages gets one each), and layers are laid out stage by stage.
    ``keep_order=False`` (ablation): every layer independently picks any stage, in any position.
    """
    check_depth(depth)
    sizes = check_stage_sizes(stage_sizes)
    rng = random.Random(seed)
    num_stages = len(sizes)
    if not keep_order:
        return [rng.randrange(num_stages) for _ in range(depth)]
    counts = [0] * num_stages
    if depth >= num_stages:
        counts = [1] * num_stages
        for _ in range(depth - num_stages):
            counts[rng.randrange(num_stages)] += 1
    else:
        for s in rng.sample(range(num_stages), depth):
            counts[s] = 1
    return layout_by_stage(counts)


def own_layer_sources(stage_sizes: Sequence[int]) -> list[int]:
    """The Aux-Net's own layout: stage s repeated stage_sizes[s] times."""
    return layout_by_stage(check_stage_sizes(stage_sizes))


@dataclasses.dataclass
class ExpansionPlan:
    """Where each Des-Net layer comes from, and how that was decided. Plain data, JSON-serializable."""

    layer_sources: list[int]
    strategy: str = "cyclic"
    order: list[int] | None = None
    seed: int | None = None
    source: str | None = None

    @property
    def depth(self) -> int:
        return len(self.layer_sources)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """The strategy and its order or seed (``cyclic order front-last-mid``); says when the order changes nothing."""
        if self.strategy != "cyclic":
            return f"{self.strategy} (seed {self.seed})"
        if self.order is None:
            return "cyclic"
        text = f"cyclic order {order_name(self.order)}"
        default = sorted(self.order)
        if self.order != default and cyclic_counts(self.depth, self.order) == cyclic_counts(self.depth, default):
            text += f" (at depth {self.depth} the same plan as {order_name(default)})"
        return text

    @classmethod
    def from_dict(cls, data: dict) -> "ExpansionPlan":
        return cls(**data)


def make_plan(depth: int, stage_sizes: Sequence[int], strategy: str = "cyclic", order=None, seed: int = 0,
              source: str | None = None) -> ExpansionPlan:
    """Build a plan with one of the strategies: cyclic, random (stage order kept), shuffled (not kept)."""
    sizes = check_stage_sizes(stage_sizes)
    if strategy == "cyclic":
        visit = resolve_order(order, len(sizes))
        return ExpansionPlan(cyclic_layer_sources(depth, sizes, visit), "cyclic", visit, None, source)
    if strategy in ("random", "shuffled"):
        sources = random_layer_sources(depth, sizes, seed, keep_order=strategy == "random")
        return ExpansionPlan(sources, strategy, None, seed, source)
    raise LearngeneError(f"unknown strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
