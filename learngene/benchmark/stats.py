"""Paired bootstrap intervals for differences of top-1 accuracy, resampling learngene seeds and test images.

A cell of the benchmark (method, depth, phase) holds units: one Des-Net (or Trained model) each, with its
top-1 hit on every test image. Units are grouped in clusters, one per learngene seed (a unit without a
learngene goes to the cluster of its replicate, ``r % n``). Two cells are compared on a
``(clusters, images)`` matrix of per-cluster mean hits each: a resample draws clusters with replacement
and test images with replacement, the same draws for both cells (paired), and the statistic is the
difference of their mean accuracies in points. The 95% interval is the 2.5 and 97.5 percentiles over the
resamples, drawn from a fixed generator, so the same data always gives the same interval.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

GENERATOR_SEED = 0
CHUNK = 100  # resamples drawn at once (memory: CHUNK x images)


@dataclass(frozen=True)
class Interval:
    """Mean difference (points) and its 95% bootstrap interval."""

    diff: float
    low: float
    high: float

    def label(self, margin: float = 0.0) -> str:
        """``better`` when the interval lies above ``margin``, ``worse`` when below, else ``tie``."""
        return "better" if self.low > margin else "worse" if self.high < margin else "tie"

    def text(self) -> str:
        return f"{self.diff:+.1f} [{self.low:+.1f}, {self.high:+.1f}]"


def cluster_means(units: Sequence[tuple[int, str]], clusters: int) -> torch.Tensor:
    """``(clusters, images)`` float64 mean hits of each cluster, from ``(cluster, "0110...")`` units."""
    hits = torch.tensor([[c == "1" for c in correct] for _, correct in units], dtype=torch.float64)
    index = torch.tensor([cluster for cluster, _ in units])
    if sorted(set(index.tolist())) != list(range(clusters)):
        raise ValueError(f"units cover clusters {sorted(set(index.tolist()))}, not all of 0..{clusters - 1}")
    sums = torch.zeros(clusters, hits.shape[1], dtype=torch.float64).index_add_(0, index, hits)
    return sums / torch.bincount(index, minlength=clusters).unsqueeze(1)


def paired_bootstrap(a: torch.Tensor, b: torch.Tensor, resamples: int = 2000) -> Interval:
    """Mean accuracy of ``a`` minus ``b`` (``(clusters, images)`` matrices of mean hits) with its 95% interval."""
    if a.shape != b.shape:
        raise ValueError(f"paired cells must have the same (clusters, images): {tuple(a.shape)}, {tuple(b.shape)}")
    diff = 100.0 * (a - b)
    clusters, images = diff.shape
    generator = torch.Generator().manual_seed(GENERATOR_SEED)
    stats = []
    for start in range(0, resamples, CHUNK):
        m = min(CHUNK, resamples - start)
        picks = torch.randint(clusters, (m, clusters), generator=generator)
        weights = torch.zeros(m, clusters, dtype=torch.float64).scatter_add_(
            1, picks, torch.ones(m, clusters, dtype=torch.float64))
        per_image = weights @ diff / clusters  # (m, images): each resample's cluster mean per image
        chosen = torch.randint(images, (m, images), generator=generator)
        stats.append(per_image.gather(1, chosen).mean(1))
    low, high = torch.quantile(torch.cat(stats), torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return Interval(diff.mean().item(), low, high)
