"""The intervals behind the benchmark's verdicts (their coverage, simulated), and the rules of its claims tables."""
import math

import numpy as np
import torch
import pytest
from scipy import stats

from learngene.benchmark import grid, report
from learngene.benchmark.stats import TWO_GROUPS, Cell, Interval, cell_matrix, difference

T2 = stats.t.ppf(0.975, 2)  # 4.303: three groups, one seed variance


def hits(pattern: str, n: int) -> str:
    return (pattern * n)[:n]


def test_cell_matrix_averages_the_units_of_each_group():
    cell = cell_matrix([(2, "1100"), (0, "0000"), (2, "1000")])
    assert cell.groups == (0, 2) and cell.hits.tolist() == [[0.0, 0.0, 0.0, 0.0], [1.0, 0.5, 0.0, 0.0]]


def test_identical_and_opposite_cells():
    a = cell_matrix([(0, hits("10", 400)), (1, hits("01", 400)), (2, hits("10", 400))])
    assert difference(a, a, paired=True) == Interval(0.0, 0.0, 0.0, 0.0, math.inf)
    ones = cell_matrix([(g, "1" * 50) for g in range(3)])
    zeros = cell_matrix([(g, "0" * 50) for g in range(3)])
    assert difference(ones, zeros, paired=False) == Interval(100.0, 100.0, 100.0, 0.0, math.inf)


def test_images_only():
    """Three groups with the same hits, 50% of 400 images, against none: no seed variance, so the interval is the
    images' (t on 399 degrees of freedom): 50 ± 1.966 x 50 / sqrt(399)."""
    a = cell_matrix([(g, hits("10", 400)) for g in range(3)])
    iv = difference(a, cell_matrix([(g, "0" * 400) for g in range(3)]), paired=False)
    se = 50 / math.sqrt(399)
    assert iv.diff == 50.0 and iv.df == pytest.approx(399) and iv.se == pytest.approx(se)
    assert (iv.low, iv.high) == pytest.approx((50 - 1.966 * se, 50 + 1.966 * se), abs=0.01)
    assert iv.label() == "better" and Interval(-iv.diff, -iv.high, -iv.low).label() == "worse"


def test_three_groups_give_a_t_interval_on_two_degrees_of_freedom():
    """One learngene seed hits every image, two hit none: every image sees the same difference, so the seed part
    is all the variance: 33.3 ± t(2) x 33.3 (a percentile bootstrap of 3 clusters gave [0, 100])."""
    a = cell_matrix([(0, "1" * 60), (1, "0" * 60), (2, "0" * 60)])
    b = cell_matrix([(0, "0" * 60), (1, "0" * 60), (2, "0" * 60)])
    for paired in (True, False):
        iv = difference(a, b, paired)
        assert iv.df == pytest.approx(2) and iv.se == pytest.approx(100 / 3)
        assert (iv.low, iv.high) == pytest.approx((100 / 3 * (1 - T2), 100 / 3 * (1 + T2)))
        assert iv.label() == "tie"
        assert iv.bounds(0.99)[0] < iv.low and iv.bounds(0.99)[1] > iv.high


def test_pairing_removes_what_a_learngene_seed_gives_both_cells():
    """SWS-RI follows its learngene seed's SWS accuracy (70, 80, 90%) one image lower: paired, the difference is
    the same for every seed; as independent cells the seeds' spread would swamp it."""
    sws = cell_matrix([(c, "1" * k + "0" * (100 - k)) for c, k in enumerate((70, 80, 90))])
    random = cell_matrix([(c, "1" * (k - 1) + "0" * (101 - k)) for c, k in enumerate((70, 80, 90))])
    paired, independent = difference(sws, random, paired=True), difference(sws, random, paired=False)
    assert paired.diff == independent.diff == pytest.approx(1.0)
    assert paired.high - paired.low < 2.5 and independent.low < -20


def test_one_learngene_seed_measures_no_seed_spread():
    """Cells with one group (``learngene_seeds: [0]``): no interval, no verdict."""
    one = cell_matrix([(0, hits("1101", 100)), (0, hits("1110", 100))])  # two fine-tune seeds, one learngene seed
    three = cell_matrix([(c, hits("10", 100)) for c in range(3)])
    for iv in (difference(one, one, paired=True), difference(one, three, paired=False)):
        assert not iv.measured and iv.label() == "not measured" and "seed spread not measured" in iv.text()
    with pytest.raises(ValueError, match="same learngene seeds"):
        difference(one, three, paired=True)


def levels(accuracy: float, seed_sd: float, z):
    """Accuracy levels with a seed effect of about ``seed_sd`` points at ``accuracy``, ``z`` standard normal draws:
    drawn on the logit scale, so they stay in (0, 1) near 0.98."""
    logit = np.log(accuracy / (1 - accuracy)) + seed_sd / 100 / (accuracy * (1 - accuracy)) * z
    return 1 / (1 + np.exp(-logit))


def simulated_cell(rng, reps: int, groups: int, images: int, accuracy: float, seed_sd: float, hard: str,
                   difficulty, units: int = 1, deterministic: bool = False) -> Cell:
    """``reps`` simulated runs of one cell, as ``cell_matrix`` gives them: ``(reps, groups, images)`` mean hits.
    Each group's accuracy level is ``accuracy`` plus a seed effect; with ``units`` > 1 fine-tune seeds nest under
    each group, each adding an effect of half that sd. A ``deterministic`` cell is one Des-Net whatever the seed
    (FRONT's, IMwLM's with its head selected): every group the same hits, at the others' expected level. Each hit is
    drawn with probability 0.8 from an image difficulty, else independently: ``hard="shared"``, the same
    ``difficulty`` for every model (models agree on the hard images); ``"own"``, one per cell (an image part of the
    variance); ``"none"``, every hit independent."""
    if deterministic:
        z, w = np.polynomial.hermite_e.hermegauss(40)
        level = np.full((reps, 1, 1), w @ levels(accuracy, seed_sd, z) / w.sum())
    else:
        level = np.repeat(levels(accuracy, seed_sd, rng.standard_normal((reps, groups, 1))), units, axis=1)
        if units > 1:
            level = levels(level, seed_sd / 2 * level * (1 - level) / (accuracy * (1 - accuracy)),
                           rng.standard_normal(level.shape))
    if hard != "none":
        level = 0.8 * ((difficulty if hard == "shared" else rng.random((reps, 1, images))) < level) + 0.2 * level
    hits = rng.random((reps, level.shape[1], images)) < level
    if deterministic:
        hits = np.broadcast_to(hits, (reps, groups, images))
    return Cell(tuple(range(groups)), torch.from_numpy(hits.reshape(reps, groups, -1, images).mean(2)))


# (a's groups, b's groups, the methods compared (their pairing is the Analysis's), fine-tune seeds per learngene
# seed, b deterministic, accuracy, seed sd in points, hard images, test images, simulated runs). Settings that no
# constant was chosen on: accuracies 0.6 and 0.98, seed sds 0.2-2.5 points, 2,000 and 10,000 images.
COVERAGE_DESIGNS = [
    (3, 3, ("sws", "sws-random"), 1, False, 0.6, 2.5, "shared", 360, 3000),
    (3, 3, ("sws", "sws-random"), 2, False, 0.98, 0.2, "own", 360, 3000),
    (4, 4, ("sws", "sws-random"), 1, False, 0.6, 0.5, "none", 2000, 800),
    (3, 3, ("sws", "tleg"), 1, False, 0.6, 0.5, "own", 360, 3000),
    (3, 3, ("sws", "tleg"), 2, False, 0.98, 0.8, "shared", 360, 3000),
    (3, 6, ("sws", "scratch"), 1, False, 0.6, 1.5, "shared", 2000, 800),  # seeds: 6 replicates, 3 learngene seeds
    (3, 3, ("sws", "front"), 1, True, 0.6, 1.5, "shared", 10_000, 600),  # FRONT: no seed spread
    (5, 5, ("sws", "front"), 1, True, 0.98, 0.5, "own", 360, 3000),
]


def test_interval_coverage_on_the_benchmarks_path():
    """The 95% interval of ``difference`` (what ``Analysis.compare`` returns), paired as the Analysis pairs the two
    methods, under a true null in each design of ``COVERAGE_DESIGNS``: coverage within 93-97% in every one (Monte
    Carlo sd of a 95% coverage: 0.4 points at 3,000 runs, 0.9 at 600). 2 groups get no interval (a verdict is
    refused there, with the reason)."""
    rng = np.random.default_rng(0)
    results = {}
    for ga, gb, (a, b), units, deterministic, accuracy, seed_sd, hard, images, reps in COVERAGE_DESIGNS:
        difficulty = rng.random((reps, 1, images))
        x = simulated_cell(rng, reps, ga, images, accuracy, seed_sd, hard, difficulty, units)
        y = simulated_cell(rng, reps, gb, images, accuracy, seed_sd, hard, difficulty, units, deterministic)
        iv = difference(x, y, report.Analysis.paired(a, b))
        results[a, b, ga, gb, units, accuracy, seed_sd, hard, images] = float(np.mean((iv.low <= 0) & (iv.high >= 0)))
    outside = {key: value for key, value in results.items() if not 0.93 <= value <= 0.97}
    assert not outside, outside

    difficulty = rng.random((10, 1, 360))
    two = simulated_cell(rng, 10, 2, 360, 0.6, 1.0, "shared", difficulty)
    iv = difference(two, two, paired=True)
    assert np.isnan(iv.low).all() and iv.why == TWO_GROUPS and "not calibrated" in Interval(1.0, math.nan, math.nan,
                                                                                             why=iv.why).text()


def test_pairing_follows_the_learngene():
    """SWS and SWS-RI expand the same learngene: paired by learngene seed. Scratch, TLEG and FRONT share nothing
    with SWS, although their groups have the same indices 0, 1, 2: independent. Rows where SWS-RI follows its
    learngene seed's SWS accuracy one image lower, and every baseline likewise follows SWS's group index: only the
    true pairing gives the narrow interval."""
    assert report.Analysis.paired("sws", "sws-random") and report.Analysis.paired("sws", "sws-select")
    assert not any(report.Analysis.paired("sws", m) for m in ("scratch", "tleg", "front", "weight-selection"))
    methods = ["sws", "sws-random", "scratch", "tleg", "front"]
    cells = {("sws", 6, "no-tune"): [0.7, 0.8, 0.9]}
    cells |= {(m, 6, "no-tune"): [0.69, 0.79, 0.89] for m in methods[1:]}
    analysis = report.Analysis(rows_for(cells, n=100), [6], methods, WIDTH)
    for method in methods[1:]:
        iv = analysis.compare(("sws", 6, "no-tune"), (method, 6, "no-tune"))
        assert iv.diff == pytest.approx(1.0)
        if method == "sws-random":
            assert iv.high - iv.low < 2.5
        else:
            assert iv.low < -20 and iv.high > 20


WIDTH = 64  # the learngene's width in these built runs
NOISY = [0.85, 0.9, 0.95]  # three learngene seeds (or replicates) around 90%: wide intervals
CHANCE = {"weight-selection": "keeps the child's fresh head", "vanilla-lg": "keeps fresh blocks"}


def rows_for(cells: dict, groups: int = 3, n: int = 200) -> list[dict]:
    """Result rows with ``fraction`` of ``n`` test images hit, one per group (learngene seed or replicate), per
    (method, depth, phase) or (method, depth, phase, width) (a fraction per group when given a list)."""
    rows = []
    for (method, depth, phase, *width), fraction in cells.items():
        fractions = fraction if isinstance(fraction, list) else [fraction] * groups
        for g, f in enumerate(fractions):
            correct = "1" * round(f * n) + "0" * (n - round(f * n))
            rows.append(dict(method=method, depth=depth, width=width[0] if width else WIDTH, phase=phase, group=g,
                             correct=correct))
    return rows


def by_title(rows) -> dict[str, str]:
    return {claim: verdict for claim, _, verdict in rows}


def claim_verdicts(cells: dict, methods: list[str], depths: list[int], at_chance=None) -> dict[str, str]:
    analysis = report.Analysis(rows_for(cells), depths, methods, WIDTH)
    return by_title(report.claims(analysis, [], [], {d: 1000 for d in range(6, 16)}, 1000, at_chance))


def test_family_verdict_controls_the_family_and_has_three_outcomes():
    above, below = Interval(5.0, 3.0, 7.0, 1.0, 100.0), Interval(-2.5, -4.48, -0.52, 1.0, 100.0)
    assert report.family_verdict({"a": above, "b": above}) == "reproduced"
    assert report.family_verdict({"a": below}) == "not reproduced"
    # one chance dip among 10 places: below 0 at 95%, not at the family's 99.5% (Bonferroni)
    assert report.family_verdict({**{str(i): above for i in range(9)}, "dip": below}) == "inconclusive"
    assert report.family_verdict({"a": above}, margin=6.0) == "inconclusive"
    assert report.family_verdict({"a": above, "b": Interval(1.0, math.nan, math.nan, why=report.NOT_MEASURED)}) == \
        report.NOT_MEASURED
    with pytest.raises(ValueError, match="no comparison"):
        report.family_verdict({})


SHALLOW_TLEG = "SWS above TLEG with no tuning at depths 6-9 (paper Table 1, 3)"
SHALLOW_IMWLM = "SWS above IMwLM with no tuning at depths 6-9 (paper Table 1, 3)"
TUNED_IMWLM = f"SWS above IMwLM after the fine-tune at depths 6-9 ({report.BUDGET_DECIDED})"
TUNED_VANILLA = f"SWS above Vanilla-LG after the fine-tune at depths 6-9 ({report.BUDGET_DECIDED})"
SHALLOW_VANILLA = "SWS above Vanilla-LG with no tuning at depths 6-9 (paper Table 1, 3)"
TRAINED = "SWS with no tuning within 1 point of or above Trained at depths >= 12 (paper Table 1)"
CYCLIC = "Cyclic initialization above random-assigned, no tuning (paper Table 4)"
SIMPLE = "Simple-LG falling with depth, no tuning (paper Fig. 1d, Table 3)"
STORED = "About 20x fewer parameters stored than one pre-trained model per depth (paper Table 2)"


@pytest.mark.parametrize("baseline,outcome", [(0.5, "reproduced"), (0.95, "not reproduced"),
                                              (NOISY, "inconclusive")])
def test_paper_claim_rules_have_three_outcomes(baseline, outcome):
    """Each interval claim of the paper fed a baseline far below SWS (90%), above it, and level with a spread."""
    depths = [6, 9, 12]
    sws = {(m, d, p): 0.9 for m in ("sws", "simple-lg") for d in depths for p in ("no-tune", "fine-tuned")}
    cells = sws | {(m, d, p): baseline for m in ("tleg", "sws-random", "weight-selection", "vanilla-lg")
                   for d in depths for p in ("no-tune", "fine-tuned")}
    cells |= {("trained", 12, "trained"): {0.5: 0.9, 0.95: 0.95, "noisy": NOISY}.get(
        baseline if not isinstance(baseline, list) else "noisy")}
    cells |= {("simple-lg", 12, "no-tune"): baseline}  # shallowest minus deepest: 90% minus the baseline
    methods = ["sws", "sws-random", "tleg", "weight-selection", "simple-lg", "vanilla-lg"]
    verdicts = claim_verdicts(cells, methods, depths, CHANCE)
    for claim in (SHALLOW_TLEG, TUNED_IMWLM, TUNED_VANILLA, TRAINED, CYCLIC, SIMPLE):
        assert verdicts[claim] == outcome, claim
    # at chance before tuning: no verdict, whatever the numbers; with IMwLM's head selected, a real one
    assert verdicts[SHALLOW_IMWLM] == verdicts[SHALLOW_VANILLA] == report.BY_CONSTRUCTION
    selected = claim_verdicts(cells, methods, depths, {"vanilla-lg": "x"})
    assert selected[SHALLOW_IMWLM] == outcome
    # after the fine-tune a baseline at chance before tuning has a row the budget decides, and it says so
    assert selected["SWS above IMwLM after the fine-tune at depths 6-9"] == outcome and TUNED_VANILLA in selected
    assert verdicts[STORED] == report.ARITHMETIC


def test_one_learngene_seed_gives_no_verdict():
    cells = {("sws", d, "no-tune"): [0.9] for d in (6, 9)} | {("tleg", d, "no-tune"): [0.5] for d in (6, 9)}
    analysis = report.Analysis(rows_for(cells, groups=1), [6, 9], ["sws", "tleg"], WIDTH)
    assert by_title(report.claims(analysis, [], [], {d: 1 for d in range(6, 16)}, 1))[SHALLOW_TLEG] == \
        report.NOT_MEASURED
    assert {r["verdict"] for r in analysis.verdict_rows()} == {report.NOT_MEASURED}


def test_cost_claim_and_table_amortize_over_the_trained_depths():
    summary = [dict(method="trained", depth=d, phase="trained", seconds=10.0) for d in (6, 12)]
    summary += [dict(method="sws", depth=d, phase="fine-tuned", seconds=1.0) for d in (6, 9, 12)]
    sources = [dict(model="sws", charged_seconds=s) for s in (8.0, 10.0)]  # mean 9 s over learngene seeds
    assert report.cost_totals(summary, sources, [6, 9, 12]) == ([6, 12], 9.0, 2.0, 20.0)
    analysis = report.Analysis(rows_for({("sws", 6, "no-tune"): 0.5}), [6, 9, 12], ["sws"], WIDTH)
    claim = report.claims(analysis, summary, sources, {d: 1 for d in range(6, 16)}, 1)[-1]
    assert claim[1:] == ("N = 2 (depths 6, 12): Trained 20 s, SWS 9 + 2 s: 1.82x", "reproduced")
    assert claim[0].endswith(f"(paper: 6.6x for N = 10; {report.BUDGET_ARITHMETIC})")
    one = report.claims(analysis, summary[1:], sources, {d: 1 for d in range(6, 16)}, 1)[-1]
    assert one[1].startswith("N = 1 (depths 12)") and one[2] == "inconclusive"  # cheaper, but nothing to amortize




def grid_verdicts(cells: dict, sources=(), gaps=None, at_chance=None) -> dict[str, str]:
    analysis = report.Analysis(rows_for(cells), [6, 9], ["sws-elastic", "sws", "sws-select", "weight-selection",
                                                        "scratch"], WIDTH, grid.REFERENCE)
    rows = grid.grid_claims(analysis, WIDTH, list(sources), {(6, 128, 0): 1e-7} if gaps is None else gaps,
                            at_chance or {})
    return {claim.split(" (elastic learngene")[0]: verdict for claim, _, verdict in rows}


NARROW_75 = "Elastic Des-Nets at 0.75 width within 2 points of the full width, no tuning"
NARROW_50 = "Elastic Des-Nets at 0.5 width within 5 points of the full width, no tuning"
SELECT = "Elastic narrowing at least 20 points above SWS + selection at the same cell, no tuning"
IMWLM = "Elastic narrowing at least 20 points above IMwLM at the same cell, no tuning"
FULL = "Elastic full width within 1 point of plain SWS, no tuning"
TUNED = ("After the fine-tune, elastic at least as good as every baseline in every cell (none better by 1 point or "
         "more)")
GROWTH = "Growth at integer width ratios keeps the no-tune function (logits; a check of an identity, not a claim)"


def test_grid_claim_rules_have_three_outcomes():
    """The grid's claims on a built depth x width grid (widths 32, 48, 64 and 128 of a 64-wide learngene)."""
    cells = {}
    for d in (6, 9):
        cells |= {("sws-elastic", d, "no-tune", 32): 0.96, ("sws-elastic", d, "no-tune", 48): 0.96,
                  ("sws-elastic", d, "no-tune", 64): 0.96, ("sws-elastic", d, "no-tune", 128): 0.96,
                  ("sws", d, "no-tune", 64): 0.96, ("sws-select", d, "no-tune", 32): 0.1,
                  ("sws-select", d, "no-tune", 48): 0.1, ("weight-selection", d, "no-tune", 32): 0.1,
                  ("weight-selection", d, "no-tune", 48): 0.1}
        cells |= {("sws-elastic", d, "fine-tuned", w): 0.9 for w in (32, 48, 64, 128)}
        cells |= {("scratch", d, "fine-tuned", w): 0.5 for w in (32, 48, 64, 128)}
    reproduced = grid_verdicts(cells)
    assert {reproduced[c] for c in (NARROW_75, NARROW_50, SELECT, IMWLM, FULL, TUNED, GROWTH)} == {"reproduced"}
    assert grid_verdicts(cells, at_chance=CHANCE)[IMWLM] == report.BY_CONSTRUCTION

    worse = cells | {("sws-elastic", 9, "no-tune", 48): 0.88, ("sws-elastic", 9, "no-tune", 32): 0.8,
                     ("weight-selection", 6, "no-tune", 32): 0.86, ("sws-elastic", 6, "no-tune", 64): 0.9,
                     ("sws", 6, "no-tune", 64): 1.0,
                     ("scratch", 9, "fine-tuned", 48): 1.0}
    verdicts = grid_verdicts(worse, gaps={(6, 128, 0): 1e-7, (9, 128, 1): 0.5})
    for claim in (NARROW_75, NARROW_50, IMWLM, FULL, TUNED, GROWTH):
        assert verdicts[claim] == "not reproduced", claim

    noisy = {("sws-elastic", 9, "no-tune", 48): NOISY, ("sws-elastic", 9, "no-tune", 32): [0.88, 0.91, 0.94],
             ("sws-select", 6, "no-tune", 32): [0.66, 0.71, 0.76], ("sws", 6, "no-tune", 64): NOISY,
             ("scratch", 9, "fine-tuned", 48): NOISY}
    verdicts = grid_verdicts(cells | noisy, gaps={(6, 128, 0): 1e-3})
    for claim in (NARROW_75, NARROW_50, SELECT, FULL, TUNED, GROWTH):
        assert verdicts[claim] == "inconclusive", claim

    # unequal learngene budgets are said in the claim's own row; a run without plain SWS does not check it
    sources = [dict(model="sws", epochs=10), dict(model="sws-elastic", epochs=20)]
    analysis = report.Analysis(rows_for(cells), [6, 9], ["sws-elastic", "sws"], WIDTH, grid.REFERENCE)
    titles = [claim for claim, _, _ in grid.grid_claims(analysis, WIDTH, sources, {}, {})]
    assert FULL + " (elastic learngene 20 epochs, plain SWS 10: not at equal budgets)" in titles
    no_sws = {k: v for k, v in cells.items() if k[0] != "sws"}
    assert grid_verdicts(no_sws)[FULL] == "not checked"


def test_docs_state_each_claims_rule_as_the_code_does():
    """The rules results.md prints are the docs' tables: one text for each."""
    from pathlib import Path

    docs = Path(__file__).resolve().parents[1] / "docs"
    for claims, page in (([report.FAMILY, *report.CLAIMS], "benchmark.md"), (grid.CLAIMS, "width.md")):
        text = (docs / page).read_text()
        for claim in claims:
            assert claim.bullet() in text, (page, claim.title)


def test_grid_verdict_rows_compare_the_elastic_learngene_cell_by_cell():
    cells = {("sws-elastic", 6, "no-tune", 32): 0.9, ("sws-elastic", 6, "no-tune", 64): 0.9,
             ("scratch", 6, "no-tune", 32): 0.1, ("scratch", 6, "no-tune", 64): 0.9, ("sws", 6, "no-tune", 64): 0.9}
    analysis = report.Analysis(rows_for(cells), [6], ["sws-elastic", "sws", "scratch"], WIDTH, grid.REFERENCE)
    rows = {(r["width"], r["baseline"]): (r["diff"], r["verdict"]) for r in analysis.verdict_rows()}
    assert rows == {(32, "scratch"): (pytest.approx(80.0), "better"), (64, "scratch"): (0.0, "tie"),
                    (64, "sws"): (0.0, "tie")}


def test_front_claim_rules():
    """SWS above FRONT at depths 6-9, with no tuning and after the fine-tune: one row each, the family rule."""
    depths = [6, 9, 12]
    cells = {("sws", d, p): 0.9 for d in depths for p in ("no-tune", "fine-tuned")}
    cells |= {("front", d, "no-tune"): 0.4 for d in depths} | {("front", d, "fine-tuned"): 0.9 for d in depths}
    no_tune = "SWS above FRONT with no tuning at depths 6-9 (FRONT, ICML 2026: newer than the paper)"
    tuned = "SWS above FRONT after the fine-tune at depths 6-9 (FRONT, ICML 2026: newer than the paper)"
    verdicts = claim_verdicts(cells, ["sws", "front"], depths)
    assert (verdicts[no_tune], verdicts[tuned]) == ("reproduced", "inconclusive")
    verdicts = claim_verdicts(cells | {("front", 9, "fine-tuned"): 0.99}, ["sws", "front"], depths)
    assert (verdicts[no_tune], verdicts[tuned]) == ("reproduced", "not reproduced")
    verdicts = claim_verdicts(cells, ["sws", "front"], [12])
    assert (verdicts[no_tune], verdicts[tuned]) == ("not checked", "not checked")


def test_grid_front_claim():
    cells = {("sws-elastic", d, "no-tune", w): 0.9 for d in (6, 9) for w in (32, 64)}
    cells |= {("front", d, "no-tune", w): 0.3 for d in (6, 9) for w in (32, 64, 128)}
    claim = "Elastic above FRONT in every cell, no tuning"

    def front_row(cells):
        analysis = report.Analysis(rows_for(cells), [6, 9], ["sws-elastic", "front"], WIDTH, grid.REFERENCE)
        return next((evidence, verdict) for title, evidence, verdict in grid.grid_claims(analysis, WIDTH, [], {}, {})
                    if title == claim)

    evidence, verdict = front_row(cells)
    assert verdict == "reproduced" and evidence.count("depth ") == 4  # the cells both make, not width 128
    assert front_row(cells | {("front", 9, "no-tune", 32): 0.99})[1] == "not reproduced"
