"""Intervals for differences of top-1 accuracy between two cells of the benchmark, over seeds and test images.

A cell of the benchmark (method, depth, width, phase) holds units: one Des-Net (or Trained model) each, with its
top-1 hit on every test image. Units are grouped by what they share: the units of a method with a learngene by
learngene seed (its fine-tune seeds, or SWS-RI's plan seeds, nest under it), every other unit alone. A cell is
then a ``(groups, images)`` matrix of mean hits (:func:`cell_matrix`), its groups independent draws.

The difference of two cells' mean accuracies varies with the seeds (between groups) and with the test images
(shared by both cells). Its variance is estimated from the two-way (group x image) analysis of variance of each
matrix, which is unbiased whatever the split between the two:

* the seed part, the variance of the group means over the number of groups (it holds the image noise that is
  particular to each group);
* the image part, the variance over images of the per-image difference, over the number of images, less the
  group x image residual already counted in the seed part, floored at 0.

Two cells that expand the same learngene (SWS and SWS-RI, a method at two depths or widths) are paired: the
seed part is that of the per-group differences, on ``groups - 1`` degrees of freedom. Cells that share no
learngene are independent: one seed part each (Welch). The interval is ``diff ± t * se`` with Satterthwaite's
degrees of freedom; for paired cells they are computed at the seed variance's one-sided 70% upper confidence
bound: with 3 groups the plain plug-in is liberal when the seed and image parts are of similar size (an
underestimated seed variance inflates the degrees of freedom too); so are two independent cells one of which
has no seed spread (a deterministic Des-Net), the same estimate. ``tests/test_benchmark_stats.py`` measures the
coverage of ``difference`` by simulation (docs/benchmark.md). With one group in a cell the seed variance is not
measured, and with two the intervals are not calibrated (paired cells covered 92.5-94% of the time against 95%):
no interval, and the reason in its place.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from scipy import stats

SEED_BOUND = 0.3  # the seed variances enter the degrees of freedom at their one-sided (1 - SEED_BOUND) upper bound
ONE_GROUP = "seed spread not measured"  # why a cell with one group gets no interval
TWO_GROUPS = "2 seeds: interval not calibrated"  # why a cell with two groups gets none


@dataclass(frozen=True)
class Interval:
    """Mean difference (points) and its 95% interval; ``se`` and ``df`` give it at other levels. ``low`` and
    ``high`` are NaN when a cell has fewer than 3 groups, and ``why`` says why."""

    diff: float
    low: float
    high: float
    se: float = math.nan
    df: float = math.nan
    why: str = ""

    @property
    def measured(self) -> bool:
        return not math.isnan(self.low)

    def bounds(self, level: float) -> tuple[float, float]:
        """The two-sided ``level`` interval."""
        if self.se == 0.0:
            return self.diff, self.diff
        half = float(stats.t.ppf(0.5 + level / 2, self.df)) * self.se
        return self.diff - half, self.diff + half

    def label(self, margin: float = 0.0) -> str:
        """``better`` when the interval lies above ``margin``, ``worse`` when below, else ``tie``; ``not measured``
        without an interval."""
        if not self.measured:
            return "not measured"
        return "better" if self.low > margin else "worse" if self.high < margin else "tie"

    def text(self) -> str:
        if not self.measured:
            return f"{self.diff:+.1f} [{self.why}]"
        return f"{self.diff:+.1f} [{self.low:+.1f}, {self.high:+.1f}]"


@dataclass(frozen=True)
class Cell:
    """The ``(groups, images)`` mean hits of a cell, the group ids of its rows in order."""

    groups: tuple[int, ...]
    hits: torch.Tensor


def cell_matrix(units: Sequence[tuple[int, str]]) -> Cell:
    """A cell from its ``(group, "0110...")`` units: the mean hits of each group, groups in increasing order."""
    hits = torch.tensor([[c == "1" for c in correct] for _, correct in units], dtype=torch.float64)
    groups = sorted({group for group, _ in units})
    index = torch.tensor([groups.index(group) for group, _ in units])
    sums = torch.zeros(len(groups), hits.shape[1], dtype=torch.float64).index_add_(0, index, hits)
    return Cell(tuple(groups), sums / torch.bincount(index, minlength=len(groups)).unsqueeze(1))


def anova(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(mean, seed part, residual part, per-image means)`` of ``(..., groups, images)`` matrices: the variance of
    the group means over the number of groups, and the group x image residual mean square over groups x images."""
    n, images = x.shape[-2:]
    rows, cols = x.mean(-1), x.mean(-2)
    mean = rows.mean(-1)
    residual = (x.pow(2).sum((-2, -1)) - images * rows.pow(2).sum(-1) - n * cols.pow(2).sum(-1)
                + n * images * mean.pow(2)).clamp(min=0.0) / ((n - 1) * (images - 1))
    return mean, rows.var(-1) / n, residual / (n * images), cols


def variance_terms(a: torch.Tensor, b: torch.Tensor, paired: bool):
    """``(diff, [(seed variance, df), ...], image variance)`` of mean(a) - mean(b), in units of the inputs;
    ``a`` and ``b`` are ``(..., groups, images)``."""
    images = a.shape[-1]
    if paired:
        diff, seed, residual, cols = anova(a - b)
        seeds = [(seed, a.shape[-2] - 1)]
        image = cols.var(-1) / images - residual
    else:
        mean_a, seed_a, residual_a, cols_a = anova(a)
        mean_b, seed_b, residual_b, cols_b = anova(b)
        diff, seeds = mean_a - mean_b, [(seed_a, a.shape[-2] - 1), (seed_b, b.shape[-2] - 1)]
        image = (cols_a - cols_b).var(-1) / images - residual_a - residual_b
    return diff, seeds, image.clamp(min=0.0)


def degrees_of_freedom(seeds, image: torch.Tensor, images: int) -> torch.Tensor:
    """Satterthwaite's degrees of freedom of the seed and image parts, a lone seed variance taken at its upper
    bound: that of paired cells, or of two independent cells one of which has no seed spread at all (a
    deterministic Des-Net: FRONT's, IMwLM's with its head selected), which is the same estimate. Two measured
    seed variances stay as they are: Welch's degrees of freedom are already conservative with few seeds of similar
    variance, which offsets the plug-in."""
    def satterthwaite(terms):
        numerator = (sum(v for v, _ in terms) + image) ** 2
        return numerator / (sum(v ** 2 / k for v, k in terms) + image ** 2 / (images - 1))

    upper = [(v * k / stats.chi2.ppf(SEED_BOUND, k), k) for v, k in seeds]
    if len(seeds) == 1:
        return satterthwaite(upper)
    lone = (seeds[0][0] == 0) | (seeds[1][0] == 0)
    return torch.where(lone, satterthwaite(upper), satterthwaite(seeds))


def difference(a: Cell, b: Cell, paired: bool) -> Interval:
    """Mean accuracy of ``a`` minus ``b`` (points) with its 95% interval; ``paired`` when both expand the same
    learngene (their groups are its seeds). Cells whose hits have leading dimensions (simulated runs, the
    coverage test) give an Interval of numpy arrays of those dimensions."""
    if a.hits.shape[-1] != b.hits.shape[-1]:
        raise ValueError(f"cells on {a.hits.shape[-1]} and {b.hits.shape[-1]} test images cannot be compared")
    if paired and a.groups != b.groups:
        raise ValueError(f"paired cells must have the same learngene seeds: {a.groups}, {b.groups}")
    x, y = 100.0 * a.hits.double(), 100.0 * b.hits.double()
    groups = min(len(a.groups), len(b.groups))
    if groups < 3:
        diff = numbers(x.mean((-2, -1)) - y.mean((-2, -1)))
        return Interval(diff, diff * math.nan, diff * math.nan, why=ONE_GROUP if groups == 1 else TWO_GROUPS)
    diff, seeds, image = variance_terms(x, y, paired)
    variance = sum(v for v, _ in seeds) + image
    exact = variance == 0.0  # every unit hits the same images: nothing varies
    df = torch.where(exact, math.inf, degrees_of_freedom(seeds, image, x.shape[-1]))
    se = variance.sqrt()
    half = torch.as_tensor(stats.t.ppf(0.975, df.numpy()), dtype=torch.float64) * se
    return Interval(numbers(diff), numbers(diff - half), numbers(diff + half), numbers(se), numbers(df))


def numbers(values: torch.Tensor):
    """A float for a 0-d tensor, else a numpy array."""
    return values.item() if values.dim() == 0 else values.numpy()
