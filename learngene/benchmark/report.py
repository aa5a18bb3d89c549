"""Benchmark results: measurement rows -> CSVs, paired verdicts, a claims table, Markdown in the paper's layout, plots.

A *result row* is one measurement on the test split: ``method, depth, width, phase, learngene_seed, seed, split,
top1, top5, loss, params, params_stored, epochs, seconds`` where ``phase`` is ``no-tune`` (right after
initialization), ``fine-tuned`` (after the short fine-tune every method gets) or ``trained`` (from scratch
with the full budget, the paper's "Trained"). In memory a row also holds its per-image top-1 hits
(``correct``) and its ``group`` (the index of its learngene seed for a method with a learngene, of its replicate
otherwise): what the intervals (``stats.difference``) treat as independent draws.
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from learngene.benchmark.config import BENCHMARK_METHODS, method_info
from learngene.benchmark.stats import ONE_GROUP, TWO_GROUPS, Cell, Interval, cell_matrix, difference
from learngene.checkpoint import atomic_path, atomic_write_csv

PHASES = ("no-tune", "fine-tuned", "trained")
RESULT_FIELDS = ["method", "depth", "width", "phase", "learngene_seed", "seed", "split", "top1", "top5", "loss",
                 "params", "params_stored", "epochs", "seconds"]
SUMMARY_FIELDS = ["method", "depth", "width", "phase", "units", "top1", "top1_std", "top5", "top5_std", "loss",
                  "loss_std", "params", "params_stored", "epochs", "seconds", "spread_covers"]
SOURCE_FIELDS = ["model", "learngene_seed", "split", "top1", "top5", "loss", "params", "epochs", "seconds",
                 "teacher_seconds", "charged_seconds"]
VERDICT_FIELDS = ["phase", "depth", "width", "method", "baseline", "diff", "low", "high", "verdict"]
INTERVAL = ("95% interval over seeds and test images (a t interval with the variance of both; paired by learngene "
            "seed where both cells expand the same learngene; docs/benchmark.md)")
PAPER_DEPTHS = range(6, 16)  # the depths of the paper's parameter count (Des-B-6 to Des-B-15)
PAPER_STORED_RATIO = 759.3 / 37.0  # paper Table 2: PF stores 759.3M, SWS 37.0M
COST_MARGIN = 1.1  # timings on a shared CPU move by ~10%: a cost ratio within 1.1x of 1 is inconclusive


def label(method: str) -> str:
    return method_info(method).label


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def spread_covers(method: str, phase: str) -> str:
    """The sources of variance that the ± of a cell covers (the ancestry and the data split are fixed)."""
    own = method_info(method).spread
    return own + " x fine-tune seed" if phase == "fine-tuned" else own


def summarize(rows: Iterable[dict]) -> list[dict]:
    """One row per (method, depth, width, phase): mean and sample std over its units, mean seconds."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["method"], int(row["depth"]), int(row["width"]), row["phase"])].append(row)
    summary = []
    for (method, depth, width, phase), units in groups.items():
        out = dict(method=method, depth=depth, width=width, phase=phase, units=len(units))
        for key in ("top1", "top5", "loss"):
            out[key], out[f"{key}_std"] = mean_std([float(r[key]) for r in units])
        out.update(params=int(units[0]["params"]), params_stored=int(units[0]["params_stored"]),
                   epochs=float(units[0]["epochs"]), seconds=statistics.fmean(float(r["seconds"]) for r in units),
                   spread_covers=spread_covers(method, phase))
        summary.append(out)
    order = {m: i for i, m in enumerate([*BENCHMARK_METHODS, "trained"])}
    summary.sort(key=lambda r: (PHASES.index(r["phase"]), order.get(r["method"], 99), r["depth"], r["width"]))
    return summary


def source_row(method: str, learngene_seed, result: dict, charged: float) -> dict:
    """A learngenes.csv row: the ancestry or a learngene, measured on test, with its training seconds."""
    test = result["test"]
    return dict(model=method, learngene_seed=learngene_seed, split="test", top1=test["top1"], top5=test["top5"],
                loss=test["loss"], params=result["params"], epochs=result["epochs"], seconds=result["seconds"],
                teacher_seconds=result.get("teacher_seconds", 0.0), charged_seconds=charged)


def write_csv(rows: Sequence[dict], fields: Sequence[str], path: Path) -> None:
    atomic_write_csv(({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in row.items()} for row in rows),
                     fields, path)


class Analysis:
    """Paired comparisons between the cells of a run: verdicts against the ``reference`` method (SWS; the elastic
    learngene on the depth x width grid), ties with the best, the claims.

    A cell's key is ``(method, depth, phase, width)``; ``(method, depth, phase)`` means the run's ``width`` (the SWS
    learngene's), which is every cell of a run without a width grid.
    """

    def __init__(self, rows: Sequence[dict], depths: Sequence[int], methods: Sequence[str], width: int,
                 reference: str = "sws"):
        self.depths, self.methods = list(depths), list(methods)
        self.width, self.reference = width, reference
        self.widths = sorted({int(row["width"]) for row in rows})
        self.units: dict[tuple, list[tuple[int, str]]] = defaultdict(list)
        for row in rows:
            key = (row["method"], int(row["depth"]), row["phase"], int(row["width"]))
            self.units[key].append((row["group"], row["correct"]))
        self.means = {key: sum(c.count("1") / len(c) for _, c in units) * 100 / len(units)
                      for key, units in self.units.items()}
        self.learngene_seeds = max((len({g for g, _ in units}) for key, units in self.units.items()
                                    if method_info(key[0]).learned), default=0)
        self._cells: dict[tuple, Cell] = {}
        self._intervals: dict[tuple, Interval] = {}

    def key(self, key: tuple) -> tuple:
        return key if len(key) == 4 else (*key, self.width)

    def has(self, key: tuple) -> bool:
        return self.key(key) in self.units

    def mean(self, key: tuple) -> float:
        return self.means[self.key(key)]

    def compare(self, a: tuple, b: tuple) -> Interval:
        """Cell ``a`` minus cell ``b`` (points of test top-1), paired by learngene seed when both expand the same
        learngene, else independent (``stats.difference``)."""
        a, b = self.key(a), self.key(b)
        if (a, b) not in self._intervals:
            for key in (a, b):
                if key not in self._cells:
                    self._cells[key] = cell_matrix(self.units[key])
            self._intervals[a, b] = difference(self._cells[a], self._cells[b], self.paired(a[0], b[0]))
        return self._intervals[a, b]

    @staticmethod
    def paired(a: str, b: str) -> bool:
        """Whether the cells of methods ``a`` and ``b`` are paired: both expand the same learngene, so their groups
        are the same learngene seeds (the groups of other methods are independent replicates)."""
        learngene = method_info(a).learngene
        return learngene is not None and learngene == method_info(b).learngene

    def baselines(self, depth: int, phase: str, width: int) -> list[tuple]:
        """The cells the reference is compared with at (depth, width): every other method's, and Trained where it
        exists."""
        keys = [(m, depth, phase, width) for m in self.methods if m != self.reference]
        return [k for k in keys + [("trained", depth, "trained", width)] if self.has(k)]

    def verdict_rows(self) -> list[dict]:
        rows = []
        for phase in ("no-tune", "fine-tuned"):
            for depth in self.depths:
                for width in self.widths:
                    reference = (self.reference, depth, phase, width)
                    if not self.has(reference):
                        continue
                    for key in self.baselines(depth, phase, width):
                        iv = self.compare(reference, key)
                        rows.append(dict(phase=phase, depth=depth, width=width, method=self.reference,
                                         baseline=key[0], diff=iv.diff, low=iv.low, high=iv.high,
                                         verdict=iv.label() if iv.measured else iv.why))
        return rows

    def bold(self, depth: int, keys: Sequence[tuple]) -> set[tuple]:
        """The best mean of a row and every cell whose paired interval against it includes 0 (a tie)."""
        present = [k for k in keys if self.has(k)]
        if not present:
            return set()
        best = max(present, key=self.mean)
        return {best} | {k for k in present if k != best and self.compare(best, k).label() != "better"}


# What the per-cell marks of the verdict tables mean.
PER_CELL = ("better / tie / worse: the 95% interval above 0 / containing 0 / below 0, each cell on its own, "
            "unadjusted for multiplicity: among many cells some marks are chance; the claims use the family rule")
NOT_MEASURED = ONE_GROUP  # a cell with one learngene seed: no interval, no verdict
BY_CONSTRUCTION = "by construction (no verdict)"  # the baseline cannot do otherwise
ARITHMETIC = "arithmetic (no verdict)"  # counted on the configuration, not measured
# Labels of the claims table's rows whose outcome the budget decides rather than the method.
BUDGET_DECIDED = ("decided by the fine-tune budget: the baseline starts at chance and its fresh parts barely move in "
                  "a short fine-tune; the transfer benchmark, docs/transfer.md, compares them over a real budget")
BUDGET_ARITHMETIC = "budget arithmetic: the measured seconds of the configured epochs"


@dataclass(frozen=True)
class Claim:
    """A claim checked on a run: ``title`` names its rows, ``rule`` says how their verdicts are computed (results.md
    and the docs print this text; ``tests/test_benchmark_stats.py`` checks that the docs do)."""

    title: str
    rule: str

    def bullet(self) -> str:
        return f"- **{self.title}**: {self.rule}"


FAMILY = Claim(
    "The family rule with margin m",
    "a claim that a difference lies above m at each of its k places (depths, cells) is *reproduced* when every "
    "95% interval lies above m, *not reproduced* when some interval lies below m at the Bonferroni level 1 - 0.05/k "
    "(a chance *not reproduced* then has probability at most 2.5%, like a chance *reproduced*), else "
    f"*inconclusive*; it has no verdict when a cell has a single learngene seed (*{NOT_MEASURED}*) or two "
    f"(*{TWO_GROUPS}*: simulated, paired cells of 2 seeds covered 92.5-94% of the time against 95%).")


def family_rule(margin: str) -> str:
    return f"the family rule with m = {margin}"


def family_verdict(intervals: dict[str, Interval], margin: float = 0.0) -> str:
    """The verdict of "the difference lies above ``margin`` at every place of ``intervals``" (``family_rule``)."""
    if not intervals:
        raise ValueError("a claim with no comparison has no verdict: check that the run has its cells first")
    unmeasured = [iv for iv in intervals.values() if not iv.measured]
    if unmeasured:
        return unmeasured[0].why
    if all(iv.low > margin for iv in intervals.values()):
        return "reproduced"
    level = 1 - 0.05 / len(intervals)
    if any(iv.bounds(level)[1] < margin for iv in intervals.values()):
        return "not reproduced"
    return "inconclusive"


def interval_evidence(intervals: dict[str, Interval]) -> str:
    return "; ".join(f"{where}: {iv.text()}" for where, iv in intervals.items())


SHALLOW = Claim(
    "SWS above a baseline at depths 6-9",
    "SWS minus the baseline (test top-1) at every depth of 6-9 in the run: with no tuning against TLEG and "
    "Simple-LG (paper Table 1, 3), and against IMwLM when its head is selected (`weight_selection_select_head`); "
    "after the fine-tune against IMwLM and Vanilla-LG; " + family_rule("0") + ". IMwLM's released rule keeps the "
    "child's fresh head and Vanilla-LG fresh embeddings and lower blocks: both are at chance before any tuning, so "
    f"their no-tune rows are *{BY_CONSTRUCTION}*, and their fine-tuned rows say that they are {BUDGET_DECIDED} (on "
    "digits a 1-epoch fine-tune brings them to 18-44% against SWS's 90% and more).")
ABOVE_FRONT = Claim(
    "SWS above FRONT at depths 6-9",
    "SWS minus FRONT (from IMwLM's parent, no training; ICML 2026, newer than the paper) at every depth of 6-9 in the "
    "run, with no tuning and after the fine-tune (one row each); " + family_rule("0") + ".")
TRAINED_DEEP = Claim(
    "SWS within 1 point of or above Trained at depths >= 12",
    "SWS no-tune minus Trained at every depth >= 12 with a Trained reference; " + family_rule("-1") + ".")
CYCLIC = Claim(
    "Cyclic above random-assigned",
    "SWS (cyclic) minus SWS-RI, no-tune, at every depth of the run, paired by learngene seed; " + family_rule("0")
    + ".")
SIMPLE_LG = Claim(
    "Simple-LG falling with depth",
    "Simple-LG no-tune at the shallowest depth minus at the deepest, paired by learngene seed; " + family_rule("0")
    + " (k = 1).")
STORED = Claim(
    "About 20x fewer parameters stored",
    "the parameters of one Des-Net of every depth 6-15 (what PF stores) over the SWS learngene's: counted on the "
    f"configuration, so the row is *{ARITHMETIC}*; it also gives the paper's {PAPER_STORED_RATIO:.1f}x.")
COST = Claim(
    "Total training cost of N Des-Nets",
    "measured seconds of the Trained references of the N depths that have one over the SWS learngene (charged "
    f"seconds, mean over learngene seeds) plus the N fine-tunes; *reproduced* when the ratio is >= {COST_MARGIN}, "
    f"*not reproduced* when <= 1/{COST_MARGIN} (timings on a shared CPU move by ~10%), else *inconclusive* (also "
    f"when N = 1: one Des-Net has nothing to amortize the learngene over). The row is {BUDGET_ARITHMETIC}: the "
    "epochs of the learngene, the fine-tunes and the Trained references decide it, not how well the Des-Nets do.")
CLAIMS = [SHALLOW, ABOVE_FRONT, TRAINED_DEEP, CYCLIC, SIMPLE_LG, STORED, COST]


def claims(analysis: Analysis, summary: Sequence[dict], sources: Sequence[dict], des_params: dict[int, int],
           learngene_params: int, at_chance: dict[str, str] | None = None) -> list[tuple[str, str, str]]:
    """``(claim, evidence, verdict)`` for each SWS paper claim, computed on this run (rules: ``CLAIMS``).
    ``at_chance``: the methods whose Des-Nets are at chance before tuning by construction, and why."""
    at_chance = at_chance or {}
    out = []
    shallow = [d for d in analysis.depths if 6 <= d <= 9]
    for baseline, info in BENCHMARK_METHODS.items():  # BenchmarkMethod.claim_phases
        for phase in info.claim_phases:
            when = "with no tuning" if phase == "no-tune" else "after the fine-tune"
            source = (f" ({info.claim_source})" if info.claim_source
                      else " (paper Table 1, 3)" if phase == "no-tune" else "")
            claim = f"SWS above {label(baseline)} {when} at depths 6-9" + source
            if phase == "fine-tuned" and baseline in at_chance:
                claim += f" ({BUDGET_DECIDED})"
            if baseline not in analysis.methods or not shallow:
                out.append((claim, "not in this run (method or depths 6-9 missing)", "not checked"))
            elif phase == "no-tune" and baseline in at_chance:
                out.append((claim, f"{label(baseline)} {at_chance[baseline]}: at chance before tuning",
                            BY_CONSTRUCTION))
            else:
                intervals = {f"depth {d}": analysis.compare(("sws", d, phase), (baseline, d, phase)) for d in shallow}
                out.append((claim, interval_evidence(intervals), family_verdict(intervals)))

    claim = "SWS with no tuning within 1 point of or above Trained at depths >= 12 (paper Table 1)"
    deep = [d for d in analysis.depths if d >= 12 and analysis.has(("trained", d, "trained"))]
    if deep:
        intervals = {f"depth {d}": analysis.compare(("sws", d, "no-tune"), ("trained", d, "trained")) for d in deep}
        out.append((claim, interval_evidence(intervals), family_verdict(intervals, margin=-1.0)))
    else:
        out.append((claim, "no Trained reference at depths >= 12 in this run", "not checked"))

    claim = "Cyclic initialization above random-assigned, no tuning (paper Table 4)"
    if "sws-random" in analysis.methods:
        intervals = {f"depth {d}": analysis.compare(("sws", d, "no-tune"), ("sws-random", d, "no-tune"))
                     for d in analysis.depths}
        out.append((claim, interval_evidence(intervals), family_verdict(intervals)))
    else:
        out.append((claim, "sws-random not in this run", "not checked"))

    claim = "Simple-LG falling with depth, no tuning (paper Fig. 1d, Table 3)"
    lo, hi = min(analysis.depths), max(analysis.depths)
    if "simple-lg" in analysis.methods and lo < hi:
        iv = analysis.compare(("simple-lg", lo, "no-tune"), ("simple-lg", hi, "no-tune"))
        out.append((claim, f"depth {lo} minus depth {hi}: {iv.text()}", family_verdict({"": iv})))
    else:
        out.append((claim, "simple-lg or two depths not in this run", "not checked"))

    stored = sum(des_params[d] for d in PAPER_DEPTHS)
    out.append(("About 20x fewer parameters stored than one pre-trained model per depth (paper Table 2)",
                f"depths 6-15: PF {stored / 1e6:.3f}M, SWS learngene {learngene_params / 1e6:.3f}M: "
                f"{stored / learngene_params:.1f}x", ARITHMETIC))

    cost = cost_totals(summary, sources, analysis.depths)
    claim = ("Training N Des-Nets costs less with SWS than training each from scratch (paper: 6.6x for N = 10; "
             f"{BUDGET_ARITHMETIC})")
    if cost is None:
        out.append((claim, "no depth with both a Trained reference and an SWS fine-tune", "not checked"))
    else:
        depths, learngene, tuned, scratch = cost
        ratio = scratch / (learngene + tuned)
        evidence = (f"N = {len(depths)} (depths {', '.join(map(str, depths))}): Trained {scratch:.0f} s, SWS "
                    f"{learngene:.0f} + {tuned:.0f} s: {ratio:.2f}x")
        verdict = ("inconclusive" if len(depths) < 2 else "reproduced" if ratio >= COST_MARGIN
                   else "not reproduced" if ratio <= 1 / COST_MARGIN else "inconclusive")
        out.append((claim, evidence, verdict))
    return out


def _lookup(summary: Sequence[dict]) -> dict[tuple, dict]:
    """Summary rows by (method, depth, phase): the tables of a run at one width (not the grid's)."""
    return {(r["method"], r["depth"], r["phase"]): r for r in summary}


def cost_totals(summary, sources, depths) -> tuple[list[int], float, float, float] | None:
    """``(depths, SWS learngene s, SWS fine-tunes s, Trained s)`` over the depths that have a Trained reference."""
    cells = _lookup(summary)
    common = [d for d in depths if ("trained", d, "trained") in cells and ("sws", d, "fine-tuned") in cells]
    learngene = learngene_seconds(sources).get("sws")
    if not common or learngene is None:
        return None
    return (common, learngene, sum(cells["sws", d, "fine-tuned"]["seconds"] for d in common),
            sum(cells["trained", d, "trained"]["seconds"] for d in common))


def learngene_seconds(sources: Sequence[dict]) -> dict[str, float]:
    """Mean charged training seconds of each learngene over its seeds."""
    groups = defaultdict(list)
    for row in sources:
        if row["model"] != "ancestry":
            groups[row["model"]].append(row["charged_seconds"])
    return {model: statistics.fmean(values) for model, values in groups.items()}


def _accuracy_table(analysis: Analysis, summary, depths, methods, phase) -> list[str]:
    """Rows = depths, columns = methods and Trained; bold = best mean or tied with it (paired 95% interval)."""
    cells = _lookup(summary)
    columns = [(m, phase) for m in methods] + [("trained", "trained")]
    header = "| depth | params (M) | " + " | ".join(method_info(m).label for m, _ in columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 2)]
    for depth in depths:
        keys = [(m, depth, p) for m, p in columns]
        present = [cells.get(k) for k in keys]
        if not any(present):
            continue
        bold = analysis.bold(depth, keys)
        row = [str(depth), f"{next(r for r in present if r)['params'] / 1e6:.3f}"]
        for key, r in zip(keys, present):
            text = "-" if r is None else f"{r['top1']:.1f} ± {r['top1_std']:.1f}"
            row.append(f"**{text}**" if key in bold else text)
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _verdict_table(analysis: Analysis, depths, phase: str) -> list[str]:
    baselines = [m for m in analysis.methods if m != "sws"] + ["trained"]
    baselines = [b for b in baselines if any(analysis.has((b, d, "trained" if b == "trained" else phase))
                                             for d in depths)]
    lines = ["| depth | " + " | ".join(label(b) for b in baselines) + " |",
             "|" + "---|" * (len(baselines) + 1)]
    for depth in depths:
        if not analysis.has(("sws", depth, phase)):
            continue
        row = [str(depth)]
        for b in baselines:
            key = (b, depth, "trained" if b == "trained" else phase)
            if analysis.has(key):
                iv = analysis.compare(("sws", depth, phase), key)
                row.append(f"{iv.text()} {iv.label()}")
            else:
                row.append("-")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def claims_table(claim_rows) -> list[str]:
    return ["| claim | this run (difference [95% interval] or measurement) | verdict |", "|---|---|---|",
            *(f"| {claim} | {evidence} | **{verdict}** |" for claim, evidence, verdict in claim_rows)]


def _params_stored_table(summary, depths, learngene_params: int, des_params: dict[int, int]) -> list[str]:
    """PF keeps one pretrained model per depth (its top-1 where a Trained reference exists); SWS one learngene;
    FRONT, where the run has it, its parent (fine-tuned top-1)."""
    cells = _lookup(summary)

    def top1(r):
        return f"{r['top1']:.1f} ± {r['top1_std']:.1f}" if r else "-"

    front = {d: cells.get(("front", d, "fine-tuned")) for d in depths}
    parent = next((r["params_stored"] for r in front.values() if r), None)
    extra = " FRONT params stored (M) | FRONT top-1 |" if parent else ""
    lines = ["| depth | params (M) | PF params stored (M) | PF top-1 | SWS params stored (M) | SWS top-1 |" + extra,
             "|---|---|---|---|---|---|" + ("---|---|" if parent else "")]
    for depth in depths:
        sws = cells.get(("sws", depth, "fine-tuned"))
        pf = cells.get(("trained", depth, "trained"))
        params = des_params[depth] / 1e6
        front_cells = f" {parent / 1e6:.3f} | {top1(front[depth])} |" if parent else ""
        lines.append(f"| {depth} | {params:.3f} | {params:.3f} | {top1(pf)} | {learngene_params / 1e6:.3f} | "
                     f"{top1(sws)} |" + front_cells)
    total = sum(des_params[d] for d in depths)
    lines.append(f"| all {len(depths)} | | **{total / 1e6:.3f}** | | **{learngene_params / 1e6:.3f}** "
                 f"({total / learngene_params:.1f}x less) | |" + (f" **{parent / 1e6:.3f}** (one parent) | |"
                                                                    if parent else ""))
    return lines


def _cost_table(summary, sources, depths, context: str, teacher_cache: bool) -> list[str]:
    """Measured training seconds of one Des-Net of every depth that has a Trained reference."""
    cost = cost_totals(summary, sources, depths)
    if cost is None:
        return ["No depth has both a Trained reference and an SWS fine-tune: no cost comparison."]
    common, _, _, scratch = cost
    cells = _lookup(summary)
    seconds = learngene_seconds(sources)
    charge = (" A learngene that replays the teacher cache is charged the teacher's forward time measured while "
              "the SWS learngene of its seed recorded it." if teacher_cache else "")
    lines = [f"N = {len(common)} Des-Nets, of depths {', '.join(map(str, common))} (the depths with a Trained "
             "reference): one learngene training (mean over learngene seeds), then one fine-tune each (mean over "
             "seeds), against training each from scratch (mean over seeds)."
             + (" With N = 1 there is nothing to amortize the learngene over: see the default preset for N > 1."
                if len(common) == 1 else ""),
             f"Every part was timed in the same context: {context}.{charge}", "",
             "| method | learngene training (s) | Des-Net training (s) | total (s) | Trained / method |",
             "|---|---|---|---|---|"]
    for method in ("sws", "tleg", "simple-lg"):
        rows = [cells.get((method, d, "fine-tuned")) for d in common]
        if method not in seconds or not all(rows):
            continue
        tuned = sum(r["seconds"] for r in rows)
        whole = seconds[method] + tuned
        lines.append(f"| {label(method)} | {seconds[method]:.1f} | {tuned:.1f} | {whole:.1f} | "
                     f"{scratch / whole:.2f}x |")
    front = [cells.get(("front", d, "fine-tuned")) for d in common]
    if all(front):  # no learngene to train: its parent (IMwLM's) is given, and stored whole
        tuned = sum(r["seconds"] for r in front)
        lines.append(f"| FRONT (no training; stores the parent's {front[0]['params_stored'] / 1e6:.3f}M parameters) "
                     f"| 0 | {tuned:.1f} | {tuned:.1f} | {scratch / tuned:.2f}x |")
    lines.append(f"| Trained (from scratch) | 0 | {scratch:.1f} | {scratch:.1f} | 1.00x |")
    return lines


def learngene_table(sources: Sequence[dict], summary, deepest: int) -> list[str]:
    groups = defaultdict(list)
    for row in sources:
        groups[row["model"]].append(row)
    ancestry = groups["ancestry"][0]["top1"]
    lines = ["| model | params (M) | test top-1 | gap to ancestry | training (s) |", "|---|---|---|---|---|"]
    for model, rows in groups.items():
        mean, std = mean_std([r["top1"] for r in rows])
        seconds = statistics.fmean(r["charged_seconds"] if model != "ancestry" else r["seconds"] for r in rows)
        name = "Ancestry" if model == "ancestry" else BENCHMARK_METHODS[model].learngene_label
        lines.append(f"| {name} | {rows[0]['params'] / 1e6:.3f} | {mean:.1f} ± {std:.1f} | "
                     f"{mean - ancestry:+.1f} | {seconds:.1f} |")
    trained = _lookup(summary).get(("trained", deepest, "trained"))
    if trained:
        lines.append(f"| Plain ViT-{deepest} from scratch (Trained budget) | {trained['params'] / 1e6:.3f} | "
                     f"{trained['top1']:.1f} ± {trained['top1_std']:.1f} | {trained['top1'] - ancestry:+.1f} | "
                     f"{trained['seconds']:.1f} |")
    return lines


def spread_table(methods) -> list[str]:
    lines = ["| method | no-tune ± covers | fine-tuned ± covers |", "|---|---|---|"]
    for m in methods:
        lines.append(f"| {label(m)} | {spread_covers(m, 'no-tune')} | {spread_covers(m, 'fine-tuned')} |")
    lines.append(f"| Trained | {spread_covers('trained', 'trained')} | |")
    return lines


def markdown_report(analysis: Analysis, summary, sources, *, trained_deepest: int, learngene_params: int,
                    des_params: dict[int, int], finetune_epochs: int, context: str, teacher_cache: bool,
                    title: str, at_chance: dict[str, str]) -> tuple[str, str]:
    """``(results.md, the console's closing tables)``."""
    depths, methods = analysis.depths, analysis.methods
    no_tune = _accuracy_table(analysis, summary, depths, methods, "no-tune")
    tuned = _accuracy_table(analysis, summary, depths, methods, "fine-tuned")
    claim_table = claims_table(claims(analysis, summary, sources, des_params, learngene_params, at_chance))
    units = max((r["units"] for r in summary if r["phase"] == "fine-tuned"), default=0)
    parts = [
        f"# {title}", "",
        "Every number is top-1 accuracy (%) on the test split, which nothing but this report reads (trainings log "
        f"the val split; recipes were chosen on val). A cell is the mean ± sample std over its units: "
        f"{analysis.learngene_seeds} learngene seeds for a no-tune cell of a learned method, {units} Des-Nets for a "
        "fine-tuned cell (see *What each spread covers*). **Bold**: the best mean of its row and every cell whose "
        "95% interval against it includes 0 (or that cannot be told from it: seed spread not measured).", "",
        "## Claims of the SWS paper, checked on this run", "",
        *claim_table, "",
        "How each verdict is computed:", "",
        *(claim.bullet() for claim in [FAMILY, *CLAIMS]), "",
        f"Differences are in points of test top-1, SWS minus the other, with a {INTERVAL}.", "",
        "## No tuning after initialization (paper Table 1)", "",
        *no_tune, "",
        f"SWS minus each baseline, no tuning ({PER_CELL}):", "",
        *_verdict_table(analysis, depths, "no-tune"), "",
        f"## After a {finetune_epochs}-epoch fine-tune, same recipe for every method", "",
        *tuned, "",
        "SWS minus each baseline after the fine-tune:", "",
        *_verdict_table(analysis, depths, "fine-tuned"), "",
        "## What each spread covers", "",
        "The ancestry (the teacher of every learngene and IMwLM's parent) is one model trained with one seed, and the "
        "data split is fixed: no spread covers them.", "",
        *spread_table(methods), "",
        "## Learngenes and the models they come from", "",
        *learngene_table(sources, summary, trained_deepest), "",
        "## Parameters stored to initialize the Des-Nets (paper Table 2)", "",
        "PF (pre-train then fine-tune) stores one pretrained model per depth; SWS stores one learngene; FRONT (and "
        "IMwLM) the whole parent.", "",
        *_params_stored_table(summary, depths, learngene_params, des_params), "",
        "## Training cost (measured seconds)", "",
        *_cost_table(summary, sources, depths, context, teacher_cache), "",
    ]
    console = "\n".join([f"{title}: test top-1 (%)", "", "No tuning after initialization:", *no_tune, "",
                         f"After a {finetune_epochs}-epoch fine-tune:", *tuned, "", "Claims of the SWS paper:",
                         *claim_table])
    return "\n".join(parts), console


def plot_accuracy(summary, depths, methods, phase: str, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = _lookup(summary)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    series = [(m, phase) for m in methods] + [("trained", "trained")]
    for method, row_phase in series:
        rows = [cells.get((method, d, row_phase)) for d in depths]
        points = [(d, r["top1"], r["top1_std"]) for d, r in zip(depths, rows) if r]
        if not points:
            continue
        xs, ys, errs = zip(*points)
        style = dict(linestyle="--", color="black") if method == "trained" else dict(marker="o", markersize=3)
        ax.errorbar(xs, ys, yerr=errs, label=method_info(method).label, capsize=2, **style)
    ax.set_xticks(list(depths))
    save_plot(fig, ax, path, "Des-Net depth (layers)", title)


def save_plot(fig, ax, path: Path, xlabel: str, title: str) -> None:
    """Label a test top-1 plot, write it as a PNG (atomically) and close it."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
