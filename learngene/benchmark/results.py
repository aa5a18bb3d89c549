"""A finished benchmark's parts read into tables: results.csv, summary.csv, verdicts.csv, learngenes.csv, results.md
and the plots (``report`` and ``grid`` lay them out), from the parts ``runner.Benchmark`` ran (``{job name: Part}``).
"""
from __future__ import annotations

from dataclasses import dataclass

import timm
import torch

from learngene.benchmark import grid, report
from learngene.benchmark.cache import Part
from learngene.benchmark.config import BENCHMARK_METHODS, method_info
from learngene.benchmark.graph import DesNet, Job
from learngene.checkpoint import atomic_write_text, load_model_folder
from learngene.data import build_eval_loader
from learngene.engine.distributed import resolve_device
from learngene.methods import count_parameters


@dataclass
class Upstream:
    """The parts every Des-Net is made from, for the reports: the ancestry, the Trained references (by depth and
    seed) and the learngenes (by method and learngene seed)."""

    ancestry: Part
    trained: dict[tuple[int, int], Part]
    learngenes: dict[str, dict[int, Part]]


def upstream(jobs: list[Job], done: dict[str, Part]) -> Upstream:
    """The ancestry, the Trained references and the learngenes of a finished run."""
    learngenes = {}
    for job in jobs:
        if job.kind == "learngene":
            learngenes.setdefault(job.method, {})[job.seed] = done[job.name]
    return Upstream(done["ancestry"], {(job.depth, job.seed): done[job.name] for job in jobs
                                       if job.kind == "trained"}, learngenes)


def des_net_parts(jobs: list[Job], done: dict[str, Part]) -> list[tuple[DesNet, tuple[Part, list[Part], list[Part]]]]:
    """Every Des-Net with its parts: initialized, fine-tuned (one per fine-tune seed) and probed (as many)."""
    tuned: dict[str, dict[str, list[Part]]] = {}
    for job in jobs:
        if job.kind in ("finetune", "probe"):
            tuned.setdefault(job.reads[0], {"finetune": [], "probe": []})[job.kind].append(done[job.name])
    empty = {"finetune": [], "probe": []}
    return [(job.des_net, (done[job.name], tuned.get(job.name, empty)["finetune"],
                           tuned.get(job.name, empty)["probe"])) for job in jobs if job.kind == "init"]


def result_rows(bench, des_nets: list[tuple[DesNet, tuple]], trained: dict) -> list[dict]:
    """One row per measurement (see ``report.RESULT_FIELDS``), each with its per-image hits and its ``group``:
    the index of its learngene seed for a method with a learngene, of its replicate for the others (whose
    replicates share nothing)."""
    cfg, lg_of, rows = bench.cfg, bench.graph.learngene_seed_of, []
    replicate = {s: r for r, s in enumerate(cfg.seeds)}

    def row(method, depth, width, phase, lg, seed, part, params, stored, group):
        r = part.result
        rows.append(dict(method=method, depth=depth, width=width, phase=phase,
                         learngene_seed="" if lg is None else lg,
                         seed=seed, split="test", top1=r["test"]["top1"], top5=r["test"]["top5"],
                         loss=r["test"]["loss"], params=params, params_stored=stored,
                         epochs=r.get("epochs", 0), seconds=r.get("seconds", 0.0), correct=r["test"]["correct"],
                         group=group))

    for (depth, seed), part in trained.items():
        row("trained", depth, bench.full_width, "trained", None, seed, part, part.result["params"],
            part.result["params"], replicate[seed])
    for des_net, (init, tuned, _) in des_nets:
        method, depth, width, init_seed = des_net.method, des_net.depth, des_net.width, des_net.seed
        learned = BENCHMARK_METHODS[method].learned
        lg = init_seed if learned else (lg_of[init_seed] if BENCHMARK_METHODS[method].learngene else None)
        group = replicate[init_seed] if lg is None else cfg.learngene_seeds.index(lg)
        params, stored = init.result["params"], init.result["params_stored"]
        row(method, depth, width, "no-tune", lg, init_seed, init, params, stored, group)
        for seed, part in zip(des_net.finetune_seeds, tuned):
            row(method, depth, width, "fine-tuned", lg, seed, part, params, stored, group)
    return rows


def source_rows(bench, ancestry: Part, learngenes: dict) -> list[dict]:
    """learngenes.csv: the ancestry and every learngene, measured on test, with charged training seconds."""
    # Teacher seconds per epoch of the learngene of each seed that ran the teacher (the others replayed it).
    teacher_rate = {s: max(parts[s].result.get("teacher_seconds", 0.0) / max(parts[s].result["epochs"], 1)
                           for parts in learngenes.values()) for s in bench.cfg.learngene_seeds}
    sources = [report.source_row("ancestry", "", ancestry.result, 0.0)]
    for method, parts in learngenes.items():
        for s, part in parts.items():
            r = part.result
            # A learngene that replayed the teacher cache is charged the recording's teacher time per epoch.
            charged = r["seconds"] - r.get("teacher_seconds", 0.0) + teacher_rate[s] * r["epochs"] \
                if bench.cfg.teacher_cache else r["seconds"]
            sources.append(report.source_row(method, s, r, charged))
    return sources


def write_reports(bench, up: Upstream, rows: list[dict], des_nets: list) -> str:
    cfg, learngenes, trained = bench.cfg, up.learngenes, up.trained
    sources = source_rows(bench, up.ancestry, learngenes)
    deepest = max(d for d, _ in trained)
    summary = report.summarize(rows)
    report.write_csv(rows, report.RESULT_FIELDS, bench.out / "results.csv")
    report.write_csv(summary, report.SUMMARY_FIELDS, bench.out / "summary.csv")
    report.write_csv(sources, report.SOURCE_FIELDS, bench.out / "learngenes.csv")
    reference = grid.REFERENCE if cfg.widths and grid.REFERENCE in cfg.methods else "sws"
    analysis = report.Analysis(rows, cfg.depths, list(cfg.methods), bench.full_width, reference)
    report.write_csv(analysis.verdict_rows(), report.VERDICT_FIELDS, bench.out / "verdicts.csv")
    if cfg.widths:
        return write_grid_report(bench, analysis, summary, sources, learngenes, des_nets)
    learngene_params = learngenes["sws"][cfg.learngene_seeds[0]].result["params"]
    markdown, console = report.markdown_report(
        analysis, summary, sources, trained_deepest=deepest, learngene_params=learngene_params,
        des_params=des_params(bench), finetune_epochs=cfg.finetune_epochs, context=bench.context,
        teacher_cache=cfg.teacher_cache, at_chance=at_chance(bench),
        title=f"SWS benchmark on {bench.finetune_cfg.data.name} ({bench.info.num_classes} classes, "
              f"{bench.info.num_test} test images)")
    atomic_write_text(markdown, bench.out / "results.md")
    for phase, name, title in (("no-tune", "no_tune.png", "no tuning after initialization"),
                               ("fine-tuned", "fine_tuned.png", f"after a {cfg.finetune_epochs}-epoch fine-tune")):
        report.plot_accuracy(summary, cfg.depths, list(cfg.methods), phase, bench.out / name, f"Des-Nets, {title}")
    return console


def at_chance(bench) -> dict[str, str]:
    """The run's methods whose Des-Nets are at chance before tuning by construction, and why."""
    chance = {m: BENCHMARK_METHODS[m].at_chance for m in bench.cfg.methods if BENCHMARK_METHODS[m].at_chance}
    if bench.cfg.weight_selection_select_head:
        chance.pop("weight-selection", None)
    return chance


def growth_gaps(bench, des_nets: dict) -> dict[tuple, float]:
    """For every elastic Des-Net at an integer multiple of the learngene's width: the largest difference of its
    test logits from those of the full-width Des-Net of its depth and learngene seed, over the largest logit."""
    cfg, loader = bench.cfg, build_eval_loader(bench.finetune_cfg.data, "test")
    device = resolve_device(bench.finetune_cfg.device)
    grown = [w for w in cfg.widths if w > bench.full_width and w % bench.full_width == 0]
    gaps = {}
    for (depth, width, lg), init in des_nets.items():
        if width in grown:
            full = des_nets[depth, bench.full_width, lg]
            gaps[depth, width, lg] = logit_gap(init.result["artifact"], full.result["artifact"], loader, device)
    return gaps


def write_grid_report(bench, analysis: report.Analysis, summary: list[dict], sources: list[dict],
                      learngenes: dict, des_nets: list) -> str:
    """results.md and one heatmap per method and phase for a depth x width grid; returns the console tables."""
    cfg = bench.cfg
    heatmaps = []
    for method in cfg.methods:
        for phase in ("no-tune", "fine-tuned"):
            if any(r["method"] == method and r["phase"] == phase for r in summary):
                name = grid.heatmap_name(method, phase)
                grid.plot_heatmap(summary, method, phase, cfg.depths, analysis.widths, bench.out / name,
                                  f"{method_info(method).label}, {phase}: test top-1 (%)")
                heatmaps.append(name)
    reference = learngenes.get(analysis.reference, learngenes["sws"])
    markdown, console = grid.grid_markdown(
        analysis, summary, sources, heatmaps, learngene_params=reference[cfg.learngene_seeds[0]].result["params"],
        plain_params=learngenes["sws"][cfg.learngene_seeds[0]].result["params"], des_params=cell_params(bench),
        finetune_epochs=cfg.finetune_epochs, context=bench.context, at_chance=at_chance(bench),
        growth_gaps=growth_gaps(bench, {(d.depth, d.width, d.seed): init for d, (init, *_) in des_nets
                                      if d.method == grid.REFERENCE}),
        title=f"SWS depth x width grid on {bench.finetune_cfg.data.name} ({bench.info.num_classes} classes, "
              f"{bench.info.num_test} test images)")
    atomic_write_text(markdown, bench.out / "results.md")
    return console


def cell_params(bench) -> dict[tuple[int, int], int]:
    """Parameters of the Des-Net of every (depth, width) cell of the grid (counted on meta tensors)."""
    with torch.device("meta"):
        models = {(d, w): timm.create_model(bench.architecture, **bench.graph.des(d, w)[1])
                  for d in bench.cfg.depths for w in bench.cfg.widths}
    return {cell: count_parameters(model.parameters()) for cell, model in models.items()}


def des_params(bench) -> dict[int, int]:
    """Parameters of the Des-Net of every depth the paper's parameter claim counts (6-15) and of the run's."""
    with torch.device("meta"):
        return {d: count_parameters(timm.create_model(bench.architecture, **bench.graph.des(d)[1]).parameters())
                for d in sorted({*range(6, 16), *bench.cfg.depths})}


@torch.no_grad()
def logit_gap(folder: str, reference: str, loader, device: torch.device) -> float:
    """The largest difference between the logits of two model folders on every batch of ``loader``, over the
    largest logit of ``reference``."""
    a, b = (load_model_folder(f).to(device).eval() for f in (folder, reference))
    gap = scale = 0.0
    for images, _ in loader:
        images = images.to(device)
        logits, ref = a(images), b(images)
        gap, scale = max(gap, (logits - ref).abs().max().item()), max(scale, ref.abs().max().item())
    return gap / scale
