"""The benchmark pipeline: ancestry -> learngenes -> Des-Nets of every depth and method -> results.

Every part is cached in its own folder under ``cfg.output`` with a key: the hash of its resolved
config and of the keys of the parts it was made from. A part whose key is unchanged is reused; an
unfinished training resumes from its ``last.pt``; a part whose key changed is recomputed.

Independent parts (the learngenes, the Trained references, the Des-Nets) run on ``cfg.workers``
processes at once: the models are small, and two one-thread processes use two CPU cores far better
than one process with two threads. Under ``torchrun`` the parts run one after the other, each
trained and evaluated by all ranks in one process group; rank 0 alone writes the cache.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import functools
import hashlib
import json
import multiprocessing
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from omegaconf import OmegaConf

from learngene.baselines.methods import METHODS
from learngene.benchmark import report
from learngene.benchmark.config import BenchmarkConfig, PartConfig, check_benchmark_config
from learngene.checkpoint import atomic_write_text, recorded_preprocessing, save_model_folder, stored_parameter_count
from learngene.config import TrainConfig, load_config
from learngene.data import build_loaders
from learngene.engine import evaluate, train
from learngene.engine.distributed import init_processes, shard_loader

DONE = "done.json"
WAIT_SECONDS = 2.0  # how often non-zero ranks look for the part rank 0 is writing


@dataclass
class Part:
    """A finished, cached piece of the benchmark: its folder, its cache key and what it measured."""

    path: Path
    key: str
    result: dict


def digest(*items) -> str:
    text = json.dumps(items, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def read_done(path: Path, key: str) -> Part | None:
    done = path / DONE
    if done.is_file():
        record = json.loads(done.read_text())
        if record.get("key") == key:
            return Part(path, key, record["result"])
    return None


def cached(path: Path, key: str, compute: Callable[[Path], dict]) -> Part:
    """Reuse ``path`` when its ``done.json`` carries ``key``; else clear it and ``compute(path) -> dict``.

    Under torchrun every rank computes (trainings and evaluations are collective); rank 0 alone writes
    the cache, and the other ranks take its result.
    """
    part = read_done(path, key)
    if part is not None:
        return part
    stamp = path / "key.txt"
    if rank() == 0:
        if path.exists() and (not stamp.is_file() or stamp.read_text() != key):
            shutil.rmtree(path)  # made from another config: start over
        path.mkdir(parents=True, exist_ok=True)
        stamp.write_text(key)
    result = compute(path)
    if rank() == 0:
        atomic_write_text(json.dumps({"key": key, "result": result}, indent=2) + "\n", path / DONE)
        return Part(path, key, result)
    while (part := read_done(path, key)) is None:  # rank 0 saves the artifacts and records the result
        time.sleep(WAIT_SECONDS)
    return part


def train_config(part: PartConfig, path: Path, overrides: list[str]) -> TrainConfig:
    cfg = load_config(part.config, [*part.overrides, *overrides], TrainConfig)
    cfg.output = str(path / "run")
    return cfg


def train_part(path: Path, cfg: TrainConfig, upstream_keys: tuple[str, ...] = ()) -> Part:
    """Train ``cfg`` in ``path/run`` (resuming an interrupted run of the same config), cached."""
    key = digest(OmegaConf.to_yaml(OmegaConf.structured(cfg)), upstream_keys)

    def compute(_):
        cfg.resume = "auto" if cfg.optim.epochs > 0 else ""  # an evaluate-only run has nothing to resume
        summary = train(cfg)
        if summary.get("interrupted"):
            raise KeyboardInterrupt("benchmark stopped by SIGTERM; run the same command again to continue")
        if "artifact" not in summary:  # not rank 0: it writes nothing, its result comes from rank 0
            return summary
        return dict(summary, params=stored_parameter_count(summary["artifact"]))

    return cached(path, key, compute)


@functools.lru_cache(maxsize=2)
def validation(data_yaml: str, device: str):
    """This process's share of a fine-tune config's validation set (all of it unless under torchrun)."""
    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TrainConfig), OmegaConf.create(data_yaml)))
    procs = init_processes(device)  # under torchrun: the benchmark's process group
    return shard_loader(build_loaders(cfg.data, seed=0)[1], procs), procs.device


def initialize(path: Path, method: str, depth: int, seed: int, source: Part | None, options: dict,
               finetune: TrainConfig) -> Part:
    """A Des-Net initialized by ``method``, saved as a timm model folder and evaluated with no tuning.

    Under torchrun every rank builds the same Des-Net and evaluates its share; rank 0 saves it.
    """
    key = digest(method, depth, seed, options, source.key if source else None)

    def compute(folder: Path) -> dict:
        source_artifact = source.result["artifact"] if source else None
        init = METHODS[method](source_artifact, depth, seed=seed, **options)
        model = init.build()
        model_dir = folder / "model"
        if rank() == 0:
            if model_dir.exists():
                shutil.rmtree(model_dir)
            save_model_folder(model, model_dir, preprocessing=recorded_preprocessing(source_artifact),
                              model_args=init.model_args, extra_files={"init.json": init.info})
        val_loader, device = validation(OmegaConf.to_yaml(OmegaConf.structured({"data": finetune.data})),
                                        finetune.device)
        metrics = evaluate(model.to(device), val_loader, device, finetune.amp)
        return dict(metrics, artifact=str(model_dir), params=sum(p.numel() for p in model.parameters()),
                    params_stored=init.info["parameters_stored"])

    return cached(path, key, compute)


def des_net(out: Path, name: str, method: str, depth: int, seed: int, source: Part | None, options: dict,
            finetune: TrainConfig) -> tuple[Part, Part]:
    """Initialize (``METHODS[method]``), evaluate, then fine-tune the Des-Net of benchmark method ``name``."""
    where = Path(name) / f"depth{depth}" / f"seed{seed}"
    init = initialize(out / "init" / where, method, depth, seed, source, options, finetune)
    cfg = copy.deepcopy(finetune)
    cfg.model.name, cfg.model.pretrained = f"local-dir:{init.result['artifact']}", True
    cfg.seed, cfg.output = seed, str(out / "finetune" / where / "run")
    return init, train_part(out / "finetune" / where, cfg, (init.key,))


def worker_setup(threads: int) -> None:
    torch.set_num_threads(threads)


class StageClock:
    """Wall-clock seconds spent in each named stage of this invocation (cached parts cost ~0)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


class Benchmark:
    def __init__(self, cfg: BenchmarkConfig):
        self.cfg = check_benchmark_config(cfg)
        self.out = Path(cfg.output)
        self.runs: list[dict] = []
        self.finetune_cfg = load_config(cfg.finetune.config, [*cfg.finetune.overrides,
                                                              f"optim.epochs={cfg.finetune_epochs}"], TrainConfig)
        self.info = build_loaders(self.finetune_cfg.data, seed=0)[2]
        distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        self.workers = 1 if distributed else cfg.workers
        self.pool: concurrent.futures.ProcessPoolExecutor | None = None

    def map(self, fn: Callable, jobs: list[tuple]) -> list:
        """``[fn(*job) for job in jobs]``, on ``self.workers`` processes when there are several."""
        if self.workers == 1 or len(jobs) == 1:
            return [fn(*job) for job in jobs]
        if self.pool is None:  # started once, on first need: each worker pays torch's import time
            threads = max(1, (os.cpu_count() or 1) // self.workers)
            self.pool = concurrent.futures.ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=worker_setup,
                initargs=(threads,))
        return list(self.pool.map(fn, *zip(*jobs)))

    # -- parts ------------------------------------------------------------------------------------

    def part(self, name: str, part: PartConfig) -> Part:
        return train_part(self.out / name, train_config(part, self.out / name, []))

    def learngene_job(self, name: str, part: PartConfig, seed: int, teacher: Part,
                      model: tuple[str, dict] | None = None) -> tuple:
        """An Aux-Net, or (Simple-LG) a plain net whose timm ``model`` name and kwargs are given."""
        path = self.out / "learngenes" / name / f"seed{seed}"
        overrides = [f"seed={seed}", f"teacher.name=local-dir:{teacher.result['artifact']}"]
        if self.cfg.teacher_cache:
            overrides.append(f"distill.teacher_cache={self.out / 'teacher_cache' / f'seed{seed}'}")
        cfg = train_config(part, path, overrides)
        if model is not None:
            cfg.model.name, cfg.model.kwargs = model
        return path, cfg, (teacher.key,)

    def trained_job(self, depth: int, seed: int, architecture: str, des_args: dict) -> tuple:
        path = self.out / "trained" / f"depth{depth}" / f"seed{seed}"
        cfg = train_config(self.cfg.trained, path, [f"seed={seed}"])
        cfg.model.name, cfg.model.kwargs = architecture, {**des_args, "depth": depth}
        return path, cfg

    # -- the whole pipeline -------------------------------------------------------------------------

    def run(self) -> dict:
        """Run (or continue) the whole benchmark; write results.csv, results.md and the plots."""
        procs = init_processes(self.finetune_cfg.device)  # under torchrun: one process group for all trainings
        try:
            return self.run_parts()
        finally:
            if self.pool is not None:
                self.pool.shutdown()
            procs.close()

    def run_parts(self) -> dict:
        cfg = self.cfg
        clock = StageClock()
        with clock("ancestry"):
            ancestry = self.part("ancestry", cfg.ancestry)
        sources = {method: self.part(f"sources/{method}", part)
                   for method, part in (("weight-selection", cfg.weight_selection_parent),
                                        ("vanilla-lg", cfg.vanilla_lg_source)) if part.config and method in cfg.methods}

        with clock("learngenes"):
            sws = self.map(train_part, [self.learngene_job("sws", cfg.sws_aux, s, ancestry)
                                        for s in cfg.learngene_seeds])
            # The SWS learngene fixes the Des-Net architecture of every method.
            architecture, des_args = des_architecture(sws[0])
            jobs = {"tleg": [self.learngene_job("tleg", cfg.tleg_aux, s, ancestry) for s in cfg.learngene_seeds],
                    "simple-lg": [self.learngene_job("simple-lg", cfg.simple_lg, s, ancestry,
                                                     (architecture, {**des_args, "depth": 5}))
                                  for s in cfg.learngene_seeds]}
            names = [name for name in jobs if name in cfg.methods]
            parts = self.map(train_part, [job for name in names for job in jobs[name]])
            n = len(cfg.learngene_seeds)
            learngenes = {"sws": sws, "tleg": [], "simple-lg": []}
            learngenes.update({name: parts[i * n:(i + 1) * n] for i, name in enumerate(names)})

        with clock("trained"):
            keys = [(d, s) for d in cfg.trained_depths or cfg.depths for s in cfg.seeds]
            parts = self.map(train_part, [self.trained_job(d, s, architecture, des_args) for d, s in keys])
            trained = dict(zip(keys, parts))
            for (depth, seed), part in trained.items():
                self.record("trained", depth, "trained", seed, metrics_of(part), part.result["params"],
                            part.result["params"], part.result["epochs"], part.result["seconds"])

        with clock("Des-Nets"):
            keys = [(m, d, i, s) for m in cfg.methods for d in cfg.depths for i, s in enumerate(cfg.seeds)]
            jobs = []
            for method, depth, i, seed in keys:
                initializer, source, options = self.initializer(method, learngenes, sources.get(method, ancestry),
                                                                trained, i, architecture, des_args)
                jobs.append((self.out, method, initializer, depth, seed, source, options, self.finetune_cfg))
            for (method, depth, _, seed), (init, tuned) in zip(keys, self.map(des_net, jobs)):
                self.record(method, depth, "no-tune", seed, init.result, init.result["params"],
                            init.result["params_stored"], 0, 0.0)
                self.record(method, depth, "fine-tuned", seed, metrics_of(tuned), init.result["params"],
                            init.result["params_stored"], tuned.result["epochs"], tuned.result["seconds"])
        result = dict(wall_seconds=clock.seconds, results_md=str(self.out / "results.md"),
                      results_csv=str(self.out / "results.csv"))
        if rank() == 0:
            self.write_reports(ancestry, learngenes, trained)
            atomic_write_text(json.dumps(result, indent=2) + "\n", self.out / "benchmark.json")
        return result

    # -- helpers ------------------------------------------------------------------------------------

    def record(self, method: str, depth: int, phase: str, seed: int, metrics: dict, params: int, stored: int,
               epochs: float, seconds: float) -> None:
        self.runs.append(dict(method=method, depth=depth, phase=phase, seed=seed, top1=metrics["top1"],
                              top5=metrics["top5"], val_loss=metrics["loss"], params=params, params_stored=stored,
                              epochs=epochs, seconds=seconds))

    def initializer(self, method: str, learngenes: dict, source: Part, trained: dict, index: int,
                    architecture: str, des_args: dict) -> tuple[str, Part | None, dict]:
        """The ``METHODS`` entry, source part and options of benchmark ``method``; fine-tune seed number
        ``index`` uses learngene seed ``index % n``.

        ``source`` is the method's configured source part (the ancestry when it has none).
        """
        cfg = self.cfg

        def pick(parts: list[Part]) -> Part:
            return parts[index % len(parts)]

        if method in ("sws", "tleg", "simple-lg"):
            return method, pick(learngenes[method]), {}
        if method == "sws-random":
            return "sws", pick(learngenes["sws"]), {"strategy": "random"}
        if method == "weight-selection":
            return method, source, {"model": architecture, "model_args": des_args,
                                    "layers": cfg.weight_selection_layers, "elements": cfg.weight_selection_elements}
        if method == "vanilla-lg":  # a configured source, or the deepest same-width model trained here
            if self.cfg.vanilla_lg_source.config:
                return method, source, {"num_layers": cfg.vanilla_lg_layers}
            deepest = max(d for d, _ in trained)
            return method, trained[deepest, cfg.seeds[0]], {"num_layers": cfg.vanilla_lg_layers}
        return method, pick(learngenes["sws"]), {}  # scratch: the learngene only names the Des-Net architecture

    def write_reports(self, ancestry: Part, learngenes: dict, trained: dict) -> None:
        cfg = self.cfg
        summary = report.summarize(self.runs)
        report.write_csv(self.runs, report.RUN_FIELDS, self.out / "runs.csv")
        report.write_csv(summary, report.SUMMARY_FIELDS, self.out / "results.csv")

        names = {"sws": "SWS Aux-Net (learngene)", "tleg": "TLEG Aux-Net (learngene)",
                 "simple-lg": "Simple-LG 5-layer net (learngene)"}
        rows = [dict(name="Ancestry", params=ancestry.result["params"], top1=ancestry.result["val_top1"],
                     top1_std=0.0, seconds=ancestry.result["seconds"])]
        seconds = {}
        for key, parts in learngenes.items():
            if parts:
                seconds[key] = sum(p.result["seconds"] for p in parts) / len(parts)
                rows.append(part_row(names[key], parts))
        deepest = max(d for d, _ in trained)
        rows.append(part_row(f"Plain ViT-{deepest} from scratch (Trained budget)",
                             [trained[deepest, s] for s in cfg.seeds]))

        markdown = report.markdown_report(
            summary, cfg.depths, list(cfg.methods), rows, ancestry.result["val_top1"],
            learngenes["sws"][0].result["params"], seconds, cfg.finetune_epochs,
            title=f"SWS benchmark on {self.finetune_cfg.data.name} ({self.info.num_classes} classes, "
                  f"{self.info.num_val} validation images)")
        atomic_write_text(markdown, self.out / "results.md")
        for phase, name, title in (("no-tune", "no_tune.png", "no tuning after initialization"),
                                   ("fine-tuned", "fine_tuned.png", f"after a {cfg.finetune_epochs}-epoch fine-tune")):
            report.plot_accuracy(summary, cfg.depths, list(cfg.methods), phase, self.out / name, f"Des-Nets, {title}")


def des_architecture(sws: Part) -> tuple[str, dict]:
    """The timm name and constructor arguments (without depth) of the SWS learngene's Des-Nets."""
    init = METHODS["scratch"](sws.result["artifact"], 1)
    return init.architecture, {k: v for k, v in init.model_args.items() if k != "depth"}


def metrics_of(part: Part) -> dict:
    r = part.result
    return {"top1": r["val_top1"], "top5": r["val_top5"], "loss": r["val_loss"]}


def part_row(name: str, parts: list[Part]) -> dict:
    mean, std = report.mean_std([p.result["val_top1"] for p in parts])
    return dict(name=name, params=parts[0].result["params"], top1=mean, top1_std=std,
                seconds=sum(p.result["seconds"] for p in parts) / len(parts))
