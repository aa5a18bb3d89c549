"""Benchmark results: per-seed rows -> aggregated CSV, Markdown tables in the paper's layout, PNG plots.

A *run row* is one measurement: ``method, depth, phase, seed, top1, top5, val_loss, params, params_stored,
epochs, seconds`` where ``phase`` is ``no-tune`` (right after initialization), ``fine-tuned`` (after the short
fine-tune every method gets) or ``trained`` (from scratch with the full budget, the paper's "Trained").
"""
from __future__ import annotations

import csv
import io
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

from learngene.checkpoint import atomic_path, atomic_write_text

METHOD_LABELS = {
    "sws": "SWS", "sws-random": "SWS-RI", "tleg": "TLEG", "weight-selection": "IMwLM", "simple-lg": "Simple-LG",
    "vanilla-lg": "Vanilla-LG", "scratch": "Scratch init", "trained": "Trained",
}
PHASES = ("no-tune", "fine-tuned", "trained")
RUN_FIELDS = ["method", "depth", "phase", "seed", "top1", "top5", "val_loss", "params", "params_stored", "epochs",
              "seconds"]
SUMMARY_FIELDS = ["method", "depth", "phase", "seeds", "top1", "top1_std", "top5", "top5_std", "val_loss",
                  "val_loss_std", "params", "params_stored", "epochs", "seconds"]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(runs: Iterable[dict]) -> list[dict]:
    """One row per (method, depth, phase): mean and sample std over seeds, mean seconds."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in runs:
        groups[(row["method"], int(row["depth"]), row["phase"])].append(row)
    summary = []
    for (method, depth, phase), rows in groups.items():
        out = dict(method=method, depth=depth, phase=phase, seeds=len(rows))
        for key in ("top1", "top5", "val_loss"):
            out[key], out[f"{key}_std"] = mean_std([float(r[key]) for r in rows])
        out.update(params=int(rows[0]["params"]), params_stored=int(rows[0]["params_stored"]),
                   epochs=float(rows[0]["epochs"]), seconds=statistics.fmean(float(r["seconds"]) for r in rows))
        summary.append(out)
    order = {m: i for i, m in enumerate(METHOD_LABELS)}
    summary.sort(key=lambda r: (PHASES.index(r["phase"]), order.get(r["method"], 99), r["depth"]))
    return summary


def write_csv(rows: Sequence[dict], fields: Sequence[str], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in row.items()})
    atomic_write_text(buffer.getvalue(), path)


def _lookup(summary: Sequence[dict]) -> dict[tuple, dict]:
    return {(r["method"], r["depth"], r["phase"]): r for r in summary}


def _accuracy_table(summary, depths, methods, phase, with_trained: bool) -> list[str]:
    """Rows = depths, columns = methods; bold = best mean, or a tie with it (difference within either spread)."""
    cells = _lookup(summary)
    columns = [(m, phase) for m in methods] + ([("trained", "trained")] if with_trained else [])
    header = "| depth | params (M) | " + " | ".join(METHOD_LABELS.get(m, m) for m, _ in columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 2)]
    for depth in depths:
        present = [cells.get((m, depth, p)) for m, p in columns]
        scored = [r for r in present if r]
        if not scored:
            continue
        best = max(scored, key=lambda r: r["top1"])
        row = [str(depth), f"{scored[0]['params'] / 1e6:.3f}"]
        for r in present:
            if r is None:
                row.append("-")
                continue
            text = f"{r['top1']:.1f} ± {r['top1_std']:.1f}"
            tied = best["top1"] - r["top1"] <= max(best["top1_std"], r["top1_std"])
            row.append(f"**{text}**" if tied else text)
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _params_stored_table(summary, depths, learngene_params: int) -> list[str]:
    """PF keeps one pretrained model per depth (its top-1 where a Trained reference exists); SWS one learngene."""
    cells = _lookup(summary)
    lines = ["| depth | params (M) | PF params stored (M) | PF top-1 | SWS params stored (M) | SWS top-1 |",
             "|---|---|---|---|---|---|"]
    pf_total = 0
    for depth in depths:
        sws = cells.get(("sws", depth, "fine-tuned"))
        if not sws:
            continue
        pf = cells.get(("trained", depth, "trained"))
        pf_top1 = f"{pf['top1']:.1f} ± {pf['top1_std']:.1f}" if pf else "-"
        pf_total += sws["params"]
        lines.append(f"| {depth} | {sws['params'] / 1e6:.3f} | {sws['params'] / 1e6:.3f} | {pf_top1} | "
                     f"{learngene_params / 1e6:.3f} | {sws['top1']:.1f} ± {sws['top1_std']:.1f} |")
    if pf_total:
        lines.append(f"| all | | **{pf_total / 1e6:.3f}** | | **{learngene_params / 1e6:.3f}** "
                     f"({pf_total / learngene_params:.1f}x less) | |")
    return lines


def _cost_table(summary, depths, learngene_seconds: dict[str, float]) -> list[str]:
    """Total measured training seconds for one Des-Net of every depth that has a Trained reference."""
    cells = _lookup(summary)
    common = [d for d in depths if ("trained", d, "trained") in cells]

    def total(method, phase):
        rows = [cells.get((method, d, phase)) for d in common]
        return None if not common or not all(rows) else sum(r["seconds"] for r in rows)

    scratch = total("trained", "trained")
    lines = [f"Des-Nets of depths {', '.join(map(str, common))}: learngene training once, then one fine-tune each, "
             "against training each from scratch.", "",
             "| method | learngene training (s) | Des-Net training (s) | total (s) | Trained / method |",
             "|---|---|---|---|---|"]
    for method in ("sws", "tleg", "simple-lg"):
        tuned = total(method, "fine-tuned")
        if tuned is None or method not in learngene_seconds:
            continue
        whole = learngene_seconds[method] + tuned
        ratio = f"{scratch / whole:.1f}x" if scratch else "-"
        lines.append(f"| {METHOD_LABELS[method]} | {learngene_seconds[method]:.1f} | {tuned:.1f} | {whole:.1f} | "
                     f"{ratio} |")
    if scratch:
        lines.append(f"| Trained (from scratch) | 0 | {scratch:.1f} | {scratch:.1f} | 1.0x |")
    return lines


def _learngene_table(learngenes: Sequence[dict], ancestry_top1: float) -> list[str]:
    lines = ["| model | params (M) | val top-1 | gap to ancestry | training (s) |", "|---|---|---|---|---|"]
    for lg in learngenes:
        gap = lg["top1"] - ancestry_top1
        lines.append(f"| {lg['name']} | {lg['params'] / 1e6:.3f} | {lg['top1']:.1f} ± {lg['top1_std']:.1f} | "
                     f"{gap:+.1f} | {lg['seconds']:.1f} |")
    return lines


def markdown_report(summary, depths, methods, learngenes, ancestry_top1, learngene_params, learngene_seconds,
                    finetune_epochs: int, title: str) -> str:
    seeds = max((r["seeds"] for r in summary), default=0)
    parts = [
        f"# {title}", "",
        f"Every number is top-1 accuracy (%) on the validation split, mean ± sample std over {seeds} seeds. "
        "**Bold**: the best of its row, or tied with it (difference no larger than either spread).", "",
        "## Learngenes and the models they come from", "",
        *_learngene_table(learngenes, ancestry_top1), "",
        "## No tuning after initialization (paper Table 1)", "",
        *_accuracy_table(summary, depths, methods, "no-tune", with_trained=True), "",
        f"## After a {finetune_epochs}-epoch fine-tune, same recipe for every method", "",
        *_accuracy_table(summary, depths, methods, "fine-tuned", with_trained=True), "",
        "## Parameters stored to initialize the Des-Nets (paper Table 2)", "",
        "PF (pre-train then fine-tune) stores one pretrained model per depth; SWS stores one learngene.", "",
        *_params_stored_table(summary, depths, learngene_params), "",
        "## Training cost (measured seconds)", "",
        *_cost_table(summary, depths, learngene_seconds), "",
    ]
    return "\n".join(parts)


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
        ax.errorbar(xs, ys, yerr=errs, label=METHOD_LABELS.get(method, method), capsize=2, **style)
    ax.set_xlabel("Des-Net depth (layers)")
    ax.set_ylabel("val top-1 (%)")
    ax.set_title(title)
    ax.set_xticks(list(depths))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)

