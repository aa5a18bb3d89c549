"""The depth x width grid of the benchmark (docs/width.md): the grid's claims, its tables and heatmaps.

A grid run is the benchmark with ``widths`` set: every method runs at the (depth, width) cells it can make
(``BenchmarkMethod.widths``), and the elastic learngene (``sws-elastic``) is the method every other is
compared with, cell by cell.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from learngene.benchmark.report import BY_CONSTRUCTION, FAMILY, INTERVAL, PER_CELL, Analysis, Claim, claims_table, \
    family_rule, family_verdict, interval_evidence, label, learngene_seconds, learngene_table, mean_std, spread_table
from learngene.benchmark.stats import Interval
from learngene.checkpoint import atomic_path

REFERENCE = "sws-elastic"
NARROW_MARGINS = {0.75: -2.0, 0.5: -5.0}  # width ratio -> the most the elastic Des-Net may lose to its full width
SELECTION_MARGIN = 20.0  # elastic narrowing above post-hoc selection and IMwLM by at least this many points
FULL_WIDTH_MARGIN = -1.0  # elastic full width within 1 point of plain SWS
NONINFERIORITY_MARGIN = -1.0  # after the fine-tune "at least as good": no baseline better by a point or more
GROWTH_EXACT = 1e-4  # grown logits within float rounding of the full width's (relative to the largest logit)
GROWTH_BROKEN = 1e-2  # beyond this the grown Des-Net computes another function
GROWTH_CHECK = "a check of an identity, not a claim"


# -- claims ---------------------------------------------------------------------------------------------------

NARROWING = Claim(
    "Narrowing with no tuning",
    "elastic no-tune at width w minus the elastic full-width Des-Net of the same depth, paired by learngene seed, at "
    f"every depth; at 3/4 width {family_rule(f'{NARROW_MARGINS[0.75]:g}')}; at 1/2 width the same with "
    f"{NARROW_MARGINS[0.5]:g}.")
SELECTION = Claim(
    "Narrowing far above post-hoc selection and IMwLM",
    "elastic minus the baseline, no-tune, at every cell narrower than the learngene; "
    f"{family_rule(f'+{SELECTION_MARGIN:g}')}. "
    "IMwLM's released rule keeps the child's fresh head, at chance before any tuning: unless its head is selected "
    f"(`weight_selection_select_head`) its row is *{BY_CONSTRUCTION}*.")
ELASTIC_ABOVE_FRONT = Claim(
    "Elastic above FRONT with no tuning",
    "elastic minus FRONT (from IMwLM's parent, no training; ICML 2026), no-tune, in every cell both make (every "
    f"width the elastic learngene makes); {family_rule('0')}.")
FULL_WIDTH = Claim(
    "Elasticity costs the full width little",
    "elastic minus plain SWS at the learngene's width, no-tune, at every depth (independent learngenes); "
    f"{family_rule(f'{FULL_WIDTH_MARGIN:g}')}. When the two learngenes were trained for different numbers of epochs "
    "the row says so: the comparison is then not at equal budgets.")
FINE_TUNED = Claim(
    "After the fine-tune, at least as good as every baseline",
    "elastic minus each baseline (and Trained) in every cell, fine-tuned: no baseline better by "
    f"{-NONINFERIORITY_MARGIN:g} point or more; {family_rule(f'{NONINFERIORITY_MARGIN:g}')}.")
GROWTH = Claim(
    "Growth at integer ratios keeps the function",
    "every elastic Des-Net at k times the learngene's width (k = 2, 3, ...) against the full-width Des-Net of the same "
    "depth and learngene seed: the largest difference of their logits on the test images, over the largest logit; "
    f"*reproduced* when at most {GROWTH_EXACT:g} for every pair (float rounding), *not reproduced* when above "
    f"{GROWTH_BROKEN:g} for some pair (another function), else *inconclusive*. It is {GROWTH_CHECK}: the grown "
    "Des-Net computes the same function by construction, so the row checks the code rather than the method.")
CLAIMS = [NARROWING, SELECTION, FULL_WIDTH, ELASTIC_ABOVE_FRONT, FINE_TUNED, GROWTH]
CLAIMS_HEADING = "Claims of the elastic learngene on the depth x width grid"


def grid_claims(analysis: Analysis, full_width: int, sources: Sequence[dict], growth_gaps: dict[tuple, float],
                at_chance: dict[str, str]) -> list[tuple[str, str, str]]:
    """``(claim, evidence, verdict)`` for the grid's claims on this run (rules: ``CLAIMS``). ``growth_gaps``: the
    relative logit gap of each grown Des-Net, by (depth, width, learngene seed); ``at_chance``: the methods at chance
    before tuning by construction, and why."""
    out, depths, widths = [], analysis.depths, analysis.widths
    if REFERENCE not in analysis.methods:
        return [("Claims of the elastic learngene", f"{REFERENCE} not in this run", "not checked")]

    def cell(method, depth, width, phase="no-tune"):
        return (method, depth, phase, width)

    for ratio, margin in NARROW_MARGINS.items():
        claim = f"Elastic Des-Nets at {ratio:g} width within {-margin:g} points of the full width, no tuning"
        width = round(full_width * ratio)
        keys = {d: (cell(REFERENCE, d, width), cell(REFERENCE, d, full_width)) for d in depths}
        if not all(analysis.has(a) and analysis.has(b) for a, b in keys.values()):
            out.append((claim, f"width {width} or {full_width} not in this run", "not checked"))
            continue
        intervals = {f"depth {d}": analysis.compare(a, b) for d, (a, b) in keys.items()}
        out.append((claim, interval_evidence(intervals), family_verdict(intervals, margin)))

    narrow = [w for w in widths if w < full_width]
    for baseline in ("sws-select", "weight-selection"):
        claim = (f"Elastic narrowing at least {SELECTION_MARGIN:g} points above {label(baseline)} at the same cell, "
                 "no tuning")
        pairs = {f"depth {d} width {w}": (cell(REFERENCE, d, w), cell(baseline, d, w)) for d in depths for w in narrow}
        pairs = {k: v for k, v in pairs.items() if analysis.has(v[0]) and analysis.has(v[1])}
        if not pairs:
            out.append((claim, f"{baseline} or a narrower width not in this run", "not checked"))
        elif baseline in at_chance:
            out.append((claim, f"{label(baseline)} {at_chance[baseline]}: at chance before tuning", BY_CONSTRUCTION))
        else:
            intervals = {k: analysis.compare(a, b) for k, (a, b) in pairs.items()}
            out.append((claim, interval_evidence(intervals), family_verdict(intervals, SELECTION_MARGIN)))

    claim = f"Elastic full width within {-FULL_WIDTH_MARGIN:g} point of plain SWS, no tuning"
    epochs = {row["model"]: row["epochs"] for row in sources}
    if epochs.get(REFERENCE) != epochs.get("sws"):
        claim += (f" (elastic learngene {epochs.get(REFERENCE)} epochs, plain SWS {epochs.get('sws')}: not at equal "
                  "budgets)")
    keys = {d: (cell(REFERENCE, d, full_width), cell("sws", d, full_width)) for d in depths}
    if all(analysis.has(a) and analysis.has(b) for a, b in keys.values()):
        intervals = {f"depth {d}": analysis.compare(a, b) for d, (a, b) in keys.items()}
        out.append((claim, interval_evidence(intervals), family_verdict(intervals, FULL_WIDTH_MARGIN)))
    else:
        out.append((claim, "sws or the learngene's width not in this run", "not checked"))

    claim = "Elastic above FRONT in every cell, no tuning"
    pairs = {f"depth {d} width {w}": (cell(REFERENCE, d, w), cell("front", d, w)) for d in depths for w in widths}
    pairs = {k: v for k, v in pairs.items() if analysis.has(v[0]) and analysis.has(v[1])}
    if pairs:
        intervals = {k: analysis.compare(a, b) for k, (a, b) in pairs.items()}
        out.append((claim, interval_evidence(intervals), family_verdict(intervals)))
    else:
        out.append((claim, "front not in this run", "not checked"))

    claim = (f"After the fine-tune, elastic at least as good as every baseline in every cell (none better by "
             f"{-NONINFERIORITY_MARGIN:g} point or more)")
    intervals = {f"depth {d} width {w} vs {label(key[0])}": analysis.compare(cell(REFERENCE, d, w, "fine-tuned"), key)
                 for d in depths for w in widths if analysis.has(cell(REFERENCE, d, w, "fine-tuned"))
                 for key in analysis.baselines(d, "fine-tuned", w)}
    if intervals:
        level = 1 - 0.05 / len(intervals)
        above = sum(iv.low > NONINFERIORITY_MARGIN for iv in intervals.values())
        below = {k: iv for k, iv in intervals.items() if iv.measured and iv.bounds(level)[1] < NONINFERIORITY_MARGIN}
        text = (f"{len(intervals)} comparisons: {above} with the 95% interval above {NONINFERIORITY_MARGIN:g}, "
                f"{len(below)} below it at the family's level" + (": " + interval_evidence(below) if below else ""))
        out.append((claim, text, family_verdict(intervals, NONINFERIORITY_MARGIN)))
    else:
        out.append((claim, "no fine-tuned baseline cell in this run", "not checked"))

    claim = f"Growth at integer width ratios keeps the no-tune function (logits; {GROWTH_CHECK})"
    if growth_gaps:
        worst = max(growth_gaps.values())
        grown = sorted({w for _, w, _ in growth_gaps})
        text = (f"{len(growth_gaps)} Des-Nets (widths {', '.join(map(str, grown))} x depths x learngene seeds): "
                f"largest logit difference {worst:.1e} of the largest logit")
        verdict = ("reproduced" if worst <= GROWTH_EXACT else "not reproduced" if worst > GROWTH_BROKEN
                   else "inconclusive")
        out.append((claim, text, verdict))
    else:
        out.append((claim, f"no width at an integer multiple of {full_width} in this run", "not checked"))
    return out


# -- tables and heatmaps -------------------------------------------------------------------------------------

def grid_table(summary: Sequence[dict], method: str, phase: str, depths, widths) -> list[str]:
    """Rows = depths, columns = widths: mean ± std test top-1 of ``method`` (``-`` where it does not run)."""
    cells = {(r["method"], r["depth"], r["phase"], r["width"]): r for r in summary}
    lines = ["| depth | " + " | ".join(f"width {w}" for w in widths) + " |", "|" + "---|" * (len(widths) + 1)]
    for d in depths:
        row = [cells.get((method, d, phase, w)) for w in widths]
        lines.append(f"| {d} | " + " | ".join("-" if r is None else f"{r['top1']:.1f} ± {r['top1_std']:.1f}"
                                             for r in row) + " |")
    return lines


def grid_verdict_table(analysis: Analysis, phase: str) -> list[str]:
    rows = [r for r in analysis.verdict_rows() if r["phase"] == phase]
    lines = ["| depth | width | baseline | elastic minus baseline [95% interval] | verdict |", "|---|---|---|---|---|"]
    for r in rows:
        iv = Interval(r["diff"], r["low"], r["high"], why=r["verdict"])
        lines.append(f"| {r['depth']} | {r['width']} | {label(r['baseline'])} | {iv.text()} | {r['verdict']} |")
    return lines


def heatmap_name(method: str, phase: str) -> str:
    return f"heatmap_{method}_{phase}.png"


def plot_heatmap(summary: Sequence[dict], method: str, phase: str, depths, widths, path: Path, title: str) -> None:
    """Depth x width test top-1 of one method and phase, the mean written in every cell (blank: not run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cells = {(r["method"], r["depth"], r["phase"], r["width"]): r["top1"] for r in summary}
    values = np.array([[cells.get((method, d, phase, w), np.nan) for w in widths] for d in depths])
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(widths), 1.0 + 0.45 * len(depths)), dpi=120)
    image = ax.imshow(values, vmin=0.0, vmax=100.0, cmap="viridis", aspect="auto")
    for i, j in zip(*np.nonzero(~np.isnan(values))):
        ax.text(j, i, f"{values[i, j]:.1f}", ha="center", va="center", fontsize=8,
                color="black" if values[i, j] > 60 else "white")
    ax.set_xticks(range(len(widths)), [str(w) for w in widths])
    ax.set_yticks(range(len(depths)), [str(d) for d in depths])
    ax.set_xlabel("Des-Net width")
    ax.set_ylabel("Des-Net depth")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label="test top-1 (%)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def params_stored_lines(learngene_params: int, plain_params: int, des_params: dict[tuple[int, int], int]) -> list[str]:
    """One elastic learngene for every cell against one pre-trained model per cell (counted)."""
    total = sum(des_params.values())
    return [f"One pre-trained model per cell ({len(des_params)} cells): **{total / 1e6:.3f}M** parameters; one elastic "
            f"learngene for all of them: **{learngene_params / 1e6:.3f}M** ({total / learngene_params:.1f}x less); "
            f"the plain SWS learngene, which makes only its own width: {plain_params / 1e6:.3f}M."]


def cost_lines(sources: Sequence[dict], summary: Sequence[dict], context: str) -> list[str]:
    """Measured training seconds: the elastic and the plain learngene, and the fine-tunes of the grid's cells."""
    seconds = learngene_seconds(sources)
    epochs = {}
    for row in sources:
        epochs.setdefault(row["model"], row["epochs"])
    lines = [f"Every part was timed in the same context: {context}.", "",
             "| part | epochs | seconds (mean over learngene seeds) | seconds per epoch |", "|---|---|---|---|"]
    for model in ("sws", REFERENCE):
        if model in seconds:
            lines.append(f"| {label(model)} learngene | {epochs[model]} | {seconds[model]:.1f} | "
                         f"{seconds[model] / max(epochs[model], 1):.2f} |")
    if "sws" in seconds and REFERENCE in seconds:
        per_epoch = (seconds[REFERENCE] / max(epochs[REFERENCE], 1)) / (seconds["sws"] / max(epochs["sws"], 1))
        lines += ["", f"Elastic over plain learngene training: {per_epoch:.2f}x per epoch, "
                      f"{seconds[REFERENCE] / seconds['sws']:.2f}x in total."]
    tuned = [r for r in summary if r["phase"] == "fine-tuned"]
    if tuned:
        total = sum(r["seconds"] * r["units"] for r in tuned)
        lines += ["", f"Fine-tunes: {len(tuned)} cells x methods, {total:.0f} s "
                      f"in all ({mean_std([r['seconds'] for r in tuned])[0]:.1f} s per Des-Net on average)."]
    return lines


def grid_markdown(analysis: Analysis, summary: Sequence[dict], sources: Sequence[dict], heatmaps: Sequence[str], *,
                  learngene_params: int, plain_params: int, des_params: dict[tuple[int, int], int],
                  finetune_epochs: int, context: str, title: str, growth_gaps: dict[tuple, float],
                  at_chance: dict[str, str]) -> tuple[str, str]:
    """``(results.md, the console's closing tables)`` of a depth x width grid."""
    depths, widths = analysis.depths, analysis.widths
    claim_table = claims_table(grid_claims(analysis, analysis.width, sources, growth_gaps, at_chance))
    tables, console = [], [f"{title}: test top-1 (%)", ""]
    for phase, heading in (("no-tune", "No tuning after initialization"),
                           ("fine-tuned", f"After a {finetune_epochs}-epoch fine-tune, same recipe for every method")):
        tables += [f"## {heading}", ""]
        for method in analysis.methods:
            if any(r["method"] == method and r["phase"] == phase for r in summary):
                table = grid_table(summary, method, phase, depths, widths)
                tables += [f"**{label(method)}**", "", *table, ""]
                console += [f"{label(method)}, {phase}:", *table, ""]
        tables += [f"{label(analysis.reference)} minus each baseline in every cell, {phase} ({PER_CELL}):", "",
                   *grid_verdict_table(analysis, phase), ""]
    parts = [
        f"# {title}", "",
        "Every number is top-1 accuracy (%) on the test split. A cell is the mean ± sample std over its units (one "
        f"Des-Net per learngene seed for a learned method's no-tune cell, {analysis.learngene_seeds} learngene seeds; "
        "see "
        f"*What each spread covers*). The learngene's own width is {analysis.width}; wider cells are grown from it, "
        "narrower ones narrowed (elastic), selected (post-hoc selection, IMwLM) or drawn (scratch).", "",
        f"## {CLAIMS_HEADING}, checked on this run", "",
        *claim_table, "",
        "How each verdict is computed:", "",
        *(claim.bullet() for claim in [FAMILY, *CLAIMS]), "",
        f"Differences are in points of test top-1 with a {INTERVAL}.", "",
        "## Heatmaps", "",
        *(f"![{name}]({name})" for name in heatmaps), "",
        *tables,
        "## What each spread covers", "",
        "The ancestry (the teacher of every learngene and IMwLM's parent) is one model trained with one seed, and the "
        "data split is fixed: no spread covers them.", "",
        *spread_table(analysis.methods), "",
        "## Learngenes and the models they come from", "",
        *learngene_table(sources, summary, max(analysis.depths)), "",
        "## Parameters stored", "",
        *params_stored_lines(learngene_params, plain_params, des_params), "",
        "## Training cost (measured seconds)", "",
        *cost_lines(sources, summary, context), "",
    ]
    console += [f"{CLAIMS_HEADING}:", *claim_table]
    return "\n".join(parts), "\n".join(console)
