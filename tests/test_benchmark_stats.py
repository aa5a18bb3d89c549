"""The paired bootstrap behind the benchmark's verdicts, and the rules of its claims table, on built data."""
import pytest
import torch

from learngene.benchmark import report
from learngene.benchmark.stats import Interval, cluster_means, paired_bootstrap


def hits(pattern: str, n: int) -> str:
    return (pattern * n)[:n]


def test_cluster_means_average_the_units_of_each_cluster():
    means = cluster_means([(0, "1100"), (1, "0000"), (0, "1000")], clusters=2)
    assert means.tolist() == [[1.0, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    with pytest.raises(ValueError, match="not all of 0..2"):
        cluster_means([(0, "1"), (1, "0")], clusters=3)


def test_identical_and_opposite_cells():
    a = cluster_means([(0, hits("10", 400)), (1, hits("01", 400))], 2)
    assert paired_bootstrap(a, a, 500) == Interval(0.0, 0.0, 0.0)
    ones, zeros = torch.ones(2, 400, dtype=torch.float64), torch.zeros(2, 400, dtype=torch.float64)
    assert paired_bootstrap(ones, zeros, 500) == Interval(100.0, 100.0, 100.0)


def test_images_are_resampled():
    """One cluster, 50% of 400 images hit against none: the interval is the binomial one, about 50 ± 4.9."""
    a = cluster_means([(0, hits("10", 400))], 1)
    iv = paired_bootstrap(a, torch.zeros_like(a), 2000)
    assert iv.diff == 50.0 and 44.0 < iv.low < 46.0 and 54.0 < iv.high < 56.0
    assert paired_bootstrap(a, torch.zeros_like(a), 2000) == iv  # a fixed generator: the same interval every time
    assert iv.label() == "better" and Interval(-iv.diff, -iv.high, -iv.low).label() == "worse"


def test_learngene_seeds_are_resampled():
    """Two learngene seeds that differ by 100 points on every image: only resampling the seeds gives a spread,
    whose 95% interval spans both (0 when seed 1 is drawn twice, 100 when seed 0 is)."""
    a = cluster_means([(0, "1" * 50), (1, "0" * 50)], 2)
    iv = paired_bootstrap(a, torch.zeros_like(a), 2000)
    assert (iv.diff, iv.low, iv.high) == (50.0, 0.0, 100.0) and iv.label() == "tie"


def rows_for(cells: dict, clusters: int = 3, n: int = 200) -> list[dict]:
    """Result rows with ``fraction`` of ``n`` test images hit, for each learngene seed, per (method, depth, phase)."""
    rows = []
    for (method, depth, phase), fraction in cells.items():
        correct = "1" * round(fraction * n) + "0" * (n - round(fraction * n))
        rows += [dict(method=method, depth=depth, phase=phase, cluster=c, correct=correct) for c in range(clusters)]
    return rows


def claim_verdicts(cells: dict, methods: list[str], depths: list[int]) -> dict[str, str]:
    analysis = report.Analysis(rows_for(cells), depths, methods, 300)
    return {claim: verdict for claim, _, verdict in report.claims(analysis, [], [], {d: 1000 for d in range(6, 16)},
                                                                    1000)}


def test_claim_rules():
    depths = [6, 9, 12]
    above = {("sws", d, "no-tune"): 0.9 for d in depths} | {("tleg", d, "no-tune"): 0.5 for d in depths}
    verdicts = claim_verdicts(above | {("trained", 12, "trained"): 0.9}, ["sws", "tleg"], depths)
    assert verdicts["SWS above TLEG with no tuning at depths 6-9 (paper Table 1, 3)"] == "reproduced"
    # level with Trained: the whole interval (a point) lies above -1
    assert verdicts["SWS with no tuning within 1 point of or above Trained at depths >= 12 (paper Table 1)"] == \
        "reproduced"
    assert verdicts["SWS above IMwLM with no tuning at depths 6-9 (paper Table 1, 3)"] == "not checked"
    # 10 x 1000 parameters stored by PF over a 1000-parameter learngene: 10x, not about 20x
    assert verdicts["About 20x fewer parameters stored than one pre-trained model per depth (paper Table 2)"] == \
        "not reproduced"

    below_at_9 = dict(above) | {("tleg", 9, "no-tune"): 0.95}
    verdicts = claim_verdicts(below_at_9 | {("trained", 12, "trained"): 0.99}, ["sws", "tleg"], depths)
    assert verdicts["SWS above TLEG with no tuning at depths 6-9 (paper Table 1, 3)"] == "not reproduced"
    assert verdicts["SWS with no tuning within 1 point of or above Trained at depths >= 12 (paper Table 1)"] == \
        "not reproduced"
    tied_at_9 = dict(above) | {("tleg", 9, "no-tune"): 0.9}
    verdicts = claim_verdicts(tied_at_9, ["sws", "tleg"], depths)
    assert verdicts["SWS above TLEG with no tuning at depths 6-9 (paper Table 1, 3)"] == "inconclusive"

    falling = {("sws", d, "no-tune"): 0.9 for d in depths} | {("simple-lg", 6, "no-tune"): 0.9,
                                                              ("simple-lg", 9, "no-tune"): 0.7,
                                                              ("simple-lg", 12, "no-tune"): 0.5}
    verdicts = claim_verdicts(falling, ["sws", "simple-lg"], depths)
    assert verdicts["Simple-LG falling with depth, no tuning (paper Fig. 1d, Table 3)"] == "reproduced"


def test_cost_claim_and_table_amortize_over_the_trained_depths():
    summary = [dict(method="trained", depth=d, phase="trained", seconds=10.0) for d in (6, 12)]
    summary += [dict(method="sws", depth=d, phase="fine-tuned", seconds=1.0) for d in (6, 9, 12)]
    sources = [dict(model="sws", charged_seconds=s) for s in (8.0, 10.0)]  # mean 9 s over learngene seeds
    assert report.cost_totals(summary, sources, [6, 9, 12]) == ([6, 12], 9.0, 2.0, 20.0)
    analysis = report.Analysis(rows_for({("sws", 6, "no-tune"): 0.5}), [6, 9, 12], ["sws"], 300)
    claim = report.claims(analysis, summary, sources, {d: 1 for d in range(6, 16)}, 1)[-1]
    assert claim[1:] == ("N = 2 (depths 6, 12): Trained 20 s, SWS 9 + 2 s: 1.82x", "reproduced")
    one = report.claims(analysis, summary[1:], sources, {d: 1 for d in range(6, 16)}, 1)[-1]
    assert one[1].startswith("N = 1 (depths 12)") and one[2] == "inconclusive"  # cheaper, but nothing to amortize
