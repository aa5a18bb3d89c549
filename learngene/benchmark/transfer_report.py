"""The transfer benchmark's results: transfer.csv, curves, time to accuracy, verdicts, the papers' transfer claims.

Every comparison is ``report.Analysis.compare`` (``stats.difference``: seeds and test images, paired by learngene
seed where two cells expand the same learngene) between cells keyed ``(method, depth, "<phase> epoch <e>",
width)`` of one task. ``budget`` is the task's fine-tune epochs E, ``third`` is round(E / 3).

Time to accuracy of a method at a depth: the first epoch whose mean reaches Scratch's mean after the whole budget,
with an interval of epochs: from the first epoch whose 95% interval against Scratch-at-E reaches 0 (it may have
reached it) to the first whose interval lies at or above 0 (it has, at 95%), or "not reached" within the budget.
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from learngene.benchmark import report, results
from learngene.benchmark.config import task_depths
from learngene.benchmark.report import ARITHMETIC, COST_MARGIN, Analysis, Claim, family_rule, family_verdict, \
    interval_evidence, label
from learngene.benchmark.stats import Interval, cell_matrix, difference
from learngene.checkpoint import atomic_write_text

TRANSFER_FIELDS = ["dataset", "method", "depth", "width", "phase", "learngene_epoch", "learngene_seed", "seed", "epoch",
                   "split", "top1", "top5", "loss", "params", "params_stored", "flops", "seconds"]
TTA_FIELDS = ["dataset", "method", "depth", "width", "target", "epoch", "earliest", "confirmed", "budget", "ratio"]
VERDICT_FIELDS = ["dataset", "phase", "epoch", "depth", "width", "method", "baseline", "diff", "low", "high",
                  "verdict"]
NOT_REACHED = "not reached"


def phase_key(phase: str, epoch: int) -> str:
    return f"{phase} epoch {epoch}"


def third(budget: int) -> int:
    return max(1, round(budget / 3))


class TaskAnalysis:
    """The cells of one downstream task at every epoch (SWS's learngene-epoch Des-Nets kept apart)."""

    def __init__(self, rows: Sequence[dict], depths: Sequence[int], methods: Sequence[str], width: int, budget: int,
                 probe_budget: int):
        self.depths, self.methods, self.width = list(depths), list(methods), width
        self.budget, self.probe_budget = budget, probe_budget
        own = [dict(r, phase=phase_key(r["phase"], r["epoch"])) for r in rows if r["learngene_epoch"] == ""]
        self.analysis = Analysis(own, depths, methods, width)
        self.snapshots: dict[tuple, list] = defaultdict(list)  # (learngene epoch, depth) -> final-epoch units
        for r in rows:
            if r["learngene_epoch"] != "" and r["phase"] == "fine-tuned" and r["epoch"] == budget:
                self.snapshots[r["learngene_epoch"], r["depth"]].append((r["group"], r["correct"]))

    def key(self, method: str, depth: int, epoch: int, phase: str = "fine-tuned") -> tuple:
        return method, depth, phase_key(phase, epoch), self.width

    def has(self, method: str, depth: int, epoch: int, phase: str = "fine-tuned") -> bool:
        return self.analysis.has(self.key(method, depth, epoch, phase))

    def mean(self, method: str, depth: int, epoch: int, phase: str = "fine-tuned") -> float:
        return self.analysis.mean(self.key(method, depth, epoch, phase))

    def compare(self, a: tuple, b: tuple) -> Interval:
        """``a`` minus ``b``, each ``(method, depth, epoch[, phase])``."""
        return self.analysis.compare(self.key(*a), self.key(*b))

    def time_to_accuracy(self, method: str, depth: int) -> dict:
        """The epochs at which ``method`` reaches Scratch's mean after the whole budget (module docstring)."""
        target = ("scratch", depth, self.budget)
        point = earliest = confirmed = None
        for epoch in range(self.budget + 1):
            if not self.has(method, depth, epoch):
                continue
            iv = self.compare((method, depth, epoch), target)
            if point is None and iv.diff >= 0:
                point = epoch
            if earliest is None and iv.measured and iv.high >= 0:
                earliest = epoch
            if confirmed is None and iv.measured and iv.low >= 0:
                confirmed = epoch
        return dict(target=self.mean(*target), epoch=point, earliest=earliest, confirmed=confirmed,
                    ratio=None if point is None else point / self.budget)

    def snapshot_interval(self, epoch: int, depth: int) -> Interval:
        """SWS from the learngene of the whole Aux-Net training minus SWS from the one saved after ``epoch``, at the
        end of the budget, paired by learngene seed."""
        full = self.analysis.units[self.key("sws", depth, self.budget)]
        return difference(cell_matrix(full), cell_matrix(self.snapshots[epoch, depth]), paired=True)


FIG5 = Claim(
    "SWS above PF, Scratch, Vanilla-LG and TLEG downstream (SWS Fig. 5, Table 2)",
    "SWS minus the baseline after the whole downstream budget, at every task and depth of the run (one row per "
    "baseline); " + family_rule("0") + ".")
TABLE6 = Claim(
    "A longer-trained learngene transfers better (SWS Table 6)",
    "SWS from the learngene of the whole Aux-Net training minus SWS from the learngene saved after fewer epochs, "
    "after the whole downstream budget, paired by learngene seed, at every task, depth and saved epoch; "
    + family_rule("0") + ".")
WS_FINAL = Claim(
    "IMwLM above random init after the downstream budget (weight selection Table 2)",
    "IMwLM minus Scratch after the whole budget at every task and depth; " + family_rule("0") + ".")
WS_THIRD = Claim(
    "IMwLM reaches random init's accuracy in about 1/3 of the epochs (weight selection Fig. 4a)",
    "IMwLM after a third of the budget minus Scratch after the whole budget, at every task and depth; "
    + family_rule("-1") + " (the same accuracy: within 1 point or above).")
WS_PROBE = Claim(
    "IMwLM's linear probe above random init's (weight selection Table 9)",
    "IMwLM minus Scratch, linear probe of the initialized features after the probe budget, at every task and depth; "
    + family_rule("0") + ".")
STORED = Claim(
    "About 20x fewer parameters stored than PF (SWS Table 2)",
    f"the parameters PF stores to initialize every Des-Net size of the run (one pre-trained model per size) over the "
    f"SWS learngene's: counted, so the row is *{ARITHMETIC}*.")
UPSTREAM_COST = Claim(
    "The learngene costs less upstream training than PF's models",
    "measured seconds of PF's pre-trainings (one per depth of the run, mean over seeds) over the SWS learngene's "
    f"(charged, mean over learngene seeds); *reproduced* when >= {COST_MARGIN}, *not reproduced* when <= "
    f"1/{COST_MARGIN}, else *inconclusive* (also with one depth: nothing to amortize the learngene over).")
CLAIMS = [FIG5, TABLE6, WS_FINAL, WS_THIRD, WS_PROBE, STORED, UPSTREAM_COST]


def claims(tasks: dict[str, TaskAnalysis], stored: dict[str, int], costs: dict[str, float]) -> list[tuple]:
    """``(claim, evidence, verdict)`` for each transfer claim of the two papers (rules: ``CLAIMS``)."""
    out = []

    def family(claim: str, places: dict[str, Interval], margin: float = 0.0, missing: str = "") -> None:
        if places:
            out.append((claim, interval_evidence(places), family_verdict(places, margin)))
        else:
            out.append((claim, missing or "not in this run", "not checked"))

    for baseline in ("pf", "scratch", "vanilla-lg", "tleg"):
        places = {f"{name} depth {d}": t.compare(("sws", d, t.budget), (baseline, d, t.budget))
                  for name, t in tasks.items() for d in t.depths
                  if t.has("sws", d, t.budget) and t.has(baseline, d, t.budget)}
        family(f"SWS above {label(baseline)} after the downstream budget (SWS Fig. 5"
               + (", Table 2)" if baseline == "pf" else ")"), places)
    family("SWS from a longer-trained learngene above a shorter-trained one (SWS Table 6)",
           {f"{name} depth {d}, learngene epoch {e}": t.snapshot_interval(e, d)
            for name, t in tasks.items() for e, d in sorted(t.snapshots)}, missing="learngene_epochs not set")
    for claim, phase, at_third, margin in (
            ("IMwLM above random init after the downstream budget (weight selection Table 2)", "fine-tuned", False,
             0.0),
            ("IMwLM after a third of the budget within 1 point of or above random init after all of it (weight "
             "selection Fig. 4a)", "fine-tuned", True, -1.0),
            ("IMwLM's linear probe above random init's (weight selection Table 9)", "probe", False, 0.0)):
        places = {}
        for name, t in tasks.items():
            final = t.budget if phase == "fine-tuned" else t.probe_budget
            epoch = third(t.budget) if at_third else final
            for d in t.depths:
                if t.has("weight-selection", d, epoch, phase) and t.has("scratch", d, final, phase):
                    places[f"{name} depth {d}"] = t.compare(("weight-selection", d, epoch, phase),
                                                            ("scratch", d, final, phase))
        family(claim, places, margin)
    if "pf" in stored and "sws" in stored:
        out.append(("About 20x fewer parameters stored than PF (SWS Table 2: 759.3M against 37.0M)",
                    f"PF {stored['pf'] / 1e6:.3f}M, SWS learngene {stored['sws'] / 1e6:.3f}M: "
                    f"{stored['pf'] / stored['sws']:.1f}x", ARITHMETIC))
    else:
        out.append(("About 20x fewer parameters stored than PF (SWS Table 2)", "pf or sws not in this run",
                    "not checked"))
    claim = "The learngene costs less upstream training than one pre-trained model per size (SWS Table 2)"
    if "pf" in costs and "sws" in costs:
        ratio = costs["pf"] / costs["sws"]
        verdict = ("inconclusive" if costs["depths"] < 2 else "reproduced" if ratio >= COST_MARGIN
                   else "not reproduced" if ratio <= 1 / COST_MARGIN else "inconclusive")
        out.append((claim, f"PF {costs['pf']:.0f} s ({costs['depths']:.0f} sizes), SWS learngene "
                           f"{costs['sws']:.0f} s: {ratio:.2f}x", verdict))
    else:
        out.append((claim, "pf or sws not in this run", "not checked"))
    return out


def verdict_rows(name: str, t: TaskAnalysis) -> list[dict]:
    """Every method against SWS and against Scratch, after a third of the budget and the whole of it, and after the
    probe budget."""
    rows = []
    points = [("fine-tuned", third(t.budget)), ("fine-tuned", t.budget)]
    points += [("probe", t.probe_budget)] if t.probe_budget else []
    for phase, epoch in points:
        for baseline in ("sws", "scratch"):
            for depth in t.depths:
                if not t.has(baseline, depth, epoch, phase):
                    continue
                for method in t.methods:
                    if method != baseline and t.has(method, depth, epoch, phase):
                        iv = t.compare((method, depth, epoch, phase), (baseline, depth, epoch, phase))
                        rows.append(dict(dataset=name, phase=phase, epoch=epoch, depth=depth, width=t.width,
                                         method=method, baseline=baseline, diff=iv.diff, low=iv.low, high=iv.high,
                                         verdict=iv.label()))
    return rows


def tta_rows(name: str, t: TaskAnalysis) -> list[dict]:
    rows = []
    for depth in t.depths:
        if not t.has("scratch", depth, t.budget):
            continue
        for method in t.methods:
            if t.has(method, depth, 0):
                tta = t.time_to_accuracy(method, depth)
                rows.append(dict(dataset=name, method=method, depth=depth, width=t.width, budget=t.budget,
                                 **{k: NOT_REACHED if v is None else v for k, v in tta.items()}))
    return rows


def stored_parameters(des_nets) -> dict[str, int]:
    """Parameters each method stores to initialize all the run's Des-Nets of one replicate (its first seed, on the
    first task): each distinct source once (a learngene or parent once, PF's pre-trained model of every size).
    SWS's learngenes saved at ``learngene_epochs`` are another experiment, not counted."""
    first_task = des_nets[0][0].task
    first_seed = {}
    for des_net, _ in des_nets:
        first_seed[des_net.method] = min(des_net.seed, first_seed.get(des_net.method, des_net.seed))
    sources = defaultdict(dict)
    for des_net, (init, *_) in des_nets:
        if des_net.task == first_task and des_net.seed == first_seed[des_net.method] \
                and des_net.learngene_epoch is None:
            sources[des_net.method][des_net.source] = init.result["params_stored"]
    return {method: sum(stored.values()) for method, stored in sources.items()}


def upstream_costs(sources: Sequence[dict], trained: dict, depths: Sequence[int]) -> dict[str, float]:
    """Mean training seconds of the SWS learngene (charged) and of PF's pre-trainings, one per depth of the run."""
    costs = {"depths": float(len(depths))}
    seconds = report.learngene_seconds(sources)
    if "sws" in seconds:
        costs["sws"] = seconds["sws"]
    if all(any(d == depth for d, _ in trained) for depth in depths):
        costs["pf"] = sum(statistics.fmean(p.result["seconds"] for (d, _), p in trained.items() if d == depth)
                          for depth in depths)
    return costs


def curve_table(t: TaskAnalysis, depth: int, phase: str, epochs: Sequence[int]) -> list[str]:
    """Rows = methods, columns = epochs: mean ± std of test top-1."""
    lines = ["| method | " + " | ".join(f"epoch {e}" for e in epochs) + " |", "|---|" + "---|" * len(epochs)]
    for method in t.methods:
        if not t.has(method, depth, epochs[0], phase):
            continue
        cells = []
        for e in epochs:
            units = t.analysis.units.get(t.key(method, depth, e, phase), [])
            values = [100 * c.count("1") / len(c) for _, c in units]
            mean, std = report.mean_std(values) if values else (float("nan"), 0.0)
            cells.append(f"{mean:.1f} ± {std:.1f}")
        lines.append(f"| {label(method)} | " + " | ".join(cells) + " |")
    return lines


def tta_table(rows: Sequence[dict], depth: int) -> list[str]:
    lines = ["| method | Scratch at E (target) | first epoch (mean) | interval of epochs | fraction of the budget |",
             "|---|---|---|---|---|"]
    for r in rows:
        if r["depth"] != depth:
            continue
        interval = f"[{r['earliest']}, {r['confirmed']}]"
        ratio = r["ratio"] if r["ratio"] == NOT_REACHED else f"{r['ratio']:.2f} (1/{1 / r['ratio']:.1f})" \
            if r["ratio"] else "0 (at initialization)"
        lines.append(f"| {label(r['method'])} | {r['target']:.1f} | {r['epoch']} | {interval} | {ratio} |")
    return lines


def verdict_table(rows: Sequence[dict], depth: int, phase: str, epoch: int, baseline: str) -> list[str]:
    picked = [r for r in rows if (r["depth"], r["phase"], r["epoch"], r["baseline"]) == (depth, phase, epoch, baseline)]
    return [f"| method | minus {label(baseline)} | verdict |", "|---|---|---|",
            *(f"| {label(r['method'])} | {Interval(r['diff'], r['low'], r['high']).text()} | {r['verdict']} |"
              for r in picked)]


def plot_curves(t: TaskAnalysis, depth: int, phase: str, budget: int, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for method in t.methods:
        points = []
        for e in range(budget + 1):
            units = t.analysis.units.get(t.key(method, depth, e, phase), [])
            if units:
                points.append((e, *report.mean_std([100 * c.count("1") / len(c) for _, c in units])))
        if points:
            xs, ys, errs = zip(*points)
            ax.plot(xs, ys, label=label(method), linewidth=1.2)
            ax.fill_between(xs, [y - s for y, s in zip(ys, errs)], [y + s for y, s in zip(ys, errs)], alpha=0.15)
    report.save_plot(fig, ax, path, "downstream epoch", title)


def write(bench, up, rows: list[dict], des_nets) -> str:
    """Write transfer.csv, the verdicts, time to accuracy, plots and results.md; return the console's summary."""
    cfg, out = bench.cfg, bench.out
    report.write_csv(rows, TRANSFER_FIELDS, out / "transfer.csv")
    sources = results.source_rows(bench, up.ancestry, up.learngenes)
    report.write_csv(sources, report.SOURCE_FIELDS, out / "learngenes.csv")
    tasks, verdicts, ttas, plots = {}, [], [], []
    for task in bench.tasks:
        t = TaskAnalysis([r for r in rows if r["dataset"] == task.name], task_depths(cfg, task.cfg),
                         list(cfg.methods), bench.full_width, task.cfg.epochs, task.cfg.probe_epochs)
        tasks[task.name] = t
        verdicts += verdict_rows(task.name, t)
        ttas += tta_rows(task.name, t)
        for depth in t.depths:
            for phase, budget in (("fine-tuned", t.budget), ("probe", t.probe_budget)):
                if budget:
                    name = f"curve_{task.name}_depth{depth}{'_probe' if phase == 'probe' else ''}.png"
                    plot_curves(t, depth, phase, budget, out / name,
                                f"{task.name}, depth {depth}: {'linear probe' if phase == 'probe' else 'fine-tune'}")
                    plots.append(name)
    report.write_csv(verdicts, VERDICT_FIELDS, out / "transfer_verdicts.csv")
    report.write_csv(ttas, TTA_FIELDS, out / "time_to_accuracy.csv")
    stored = stored_parameters(des_nets)
    costs = upstream_costs(sources, up.trained, cfg.depths)
    claim_rows = claims(tasks, stored, costs)
    markdown, console = markdown_report(bench, tasks, verdicts, ttas, plots, claim_rows, stored, costs, rows)
    atomic_write_text(markdown, out / "results.md")
    return console


def flops_table(rows: Sequence[dict], depths: Sequence[int]) -> list[str]:
    flops = {int(r["depth"]): (int(r["params"]), int(r["flops"])) for r in rows}
    return ["| depth | params (M) | forward FLOPs per image (M, 2 per multiply-add) | papers' FLOPs (M, multiply-adds) |",
            "|---|---|---|---|",
            *(f"| {d} | {flops[d][0] / 1e6:.3f} | {flops[d][1] / 1e6:.2f} | {flops[d][1] / 2e6:.2f} |"
              for d in depths if d in flops)]


def markdown_report(bench, tasks: dict[str, TaskAnalysis], verdicts, ttas, plots, claim_rows, stored, costs,
                    rows) -> tuple[str, str]:
    cfg = bench.cfg
    claims = report.claims_table(claim_rows)
    parts = [f"# Transfer benchmark: {', '.join(tasks)} from {bench.finetune_cfg.data.name} upstream", "",
             "Every Des-Net is initialized from the upstream artifacts, given a new classifier for the downstream "
             "classes (where the task says head=fresh), and fine-tuned on the downstream train split; every number is "
             "top-1 (%) on the downstream **test** split, measured after every epoch (epoch 0: as initialized). No "
             "choice reads test: recipes and budgets were chosen on val. A cell is the mean ± sample std over its "
             f"Des-Nets ({len(cfg.seeds)} per cell: {len(cfg.learngene_seeds)} learngene seeds for a learned method). "
             f"Execution: {bench.context}.", "",
             "## Claims of the two papers' transfer settings, checked on this run", "", *claims, "",
             "How each verdict is computed:", "", *(c.bullet() for c in [report.FAMILY, *CLAIMS]), "",
             f"Differences are in points of test top-1 with a {report.INTERVAL}. Per-cell better / tie / worse marks "
             "are each at 95%, not adjusted for multiplicity.", ""]
    for name, t in tasks.items():
        third_epoch = third(t.budget)
        epochs = sorted({0, 1, third_epoch, t.budget})
        parts += [f"## Task {name}: {t.budget}-epoch budget", ""]
        for depth in t.depths:
            parts += [f"### Depth {depth}", "", f"Fine-tune curve (test top-1 at epochs {epochs}):", "",
                      *curve_table(t, depth, "fine-tuned", epochs), ""]
            if t.probe_budget:
                parts += [f"Linear probe of the initialized features ({t.probe_budget} epochs):", "",
                          *curve_table(t, depth, "probe", [0, t.probe_budget]), ""]
            parts += ["Time to Scratch's accuracy after the whole budget (interval of epochs: from the first epoch "
                      "that may have reached it to the first that has, at 95%):", "", *tta_table(
                          [r for r in ttas if r["dataset"] == name], depth), ""]
            for epoch in (third_epoch, t.budget):
                for baseline in ("sws", "scratch"):
                    parts += [f"Every method minus {label(baseline)} after {epoch} epochs:", "",
                              *verdict_table([r for r in verdicts if r["dataset"] == name], depth, "fine-tuned",
                                             epoch, baseline), ""]
            parts += [f"![curves](curve_{name}_depth{depth}.png)", ""]
        if t.snapshots:
            parts += ["### Learngene quality (SWS Table 6)", "", "| depth | learngene epoch | SWS after the budget | "
                      "whole-training learngene minus it |", "|---|---|---|---|"]
            for (epoch, depth), units in sorted(t.snapshots.items(), key=lambda kv: (kv[0][1], kv[0][0])):
                mean = statistics.fmean(100 * c.count("1") / len(c) for _, c in units)
                parts.append(f"| {depth} | {epoch} | {mean:.1f} | {t.snapshot_interval(epoch, depth).text()} |")
            parts.append("")
    parts += ["## Parameters stored to initialize every Des-Net of the run", "",
              "| method | parameters stored (M) |", "|---|---|",
              *(f"| {label(m)} | {v / 1e6:.3f} |" for m, v in stored.items()), "",
              "## FLOPs (torch's FlopCounterMode, one image)", "", *flops_table(rows, cfg.depths), "",
              "## Upstream training cost (measured seconds)", "",
              f"SWS learngene (charged, mean over learngene seeds): {costs.get('sws', float('nan')):.1f} s; PF, one "
              f"model per depth ({', '.join(map(str, cfg.depths))}): {costs.get('pf', float('nan')):.1f} s. Every "
              f"part ran in the same context: {bench.context}.", "",
              "## Files", "", "transfer.csv (every evaluation), transfer_verdicts.csv, time_to_accuracy.csv, "
              "learngenes.csv, and the curves: " + ", ".join(plots), ""]
    console = "\n".join(["Transfer claims:", *claims])
    return "\n".join(parts), console
