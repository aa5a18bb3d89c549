"""The benchmark pipeline: ancestry -> learngenes -> Des-Nets of every depth and method -> results.

Every part is cached in its own folder under ``cfg.output`` together with a key: the hash of its
resolved config and of the keys of the parts it was made from. A part whose key is unchanged is
reused; an unfinished training resumes from its ``last.pt``; a part whose key changed is recomputed.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from learngene.baselines.methods import METHODS, Initialization
from learngene.benchmark import report
from learngene.benchmark.config import BenchmarkConfig, PartConfig, check_benchmark_config
from learngene.checkpoint import atomic_write_text, save_model_folder, stored_parameter_count
from learngene.config import TrainConfig, load_config
from learngene.data import build_loaders
from learngene.engine import evaluate, train
from learngene.engine.distributed import init_processes

DONE = "done.json"


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


@dataclass
class Part:
    """A finished, cached piece of the benchmark: its folder, its cache key and what it measured."""

    path: Path
    key: str
    result: dict


def digest(*items) -> str:
    text = json.dumps(items, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached(path: Path, key: str, compute) -> Part:
    """Reuse ``path`` when its ``done.json`` carries ``key``; else clear it and ``compute(path) -> dict``."""
    done = path / DONE
    if done.is_file():
        record = json.loads(done.read_text())
        if record.get("key") == key:
            return Part(path, key, record["result"])
    stamp = path / "key.txt"
    if path.exists() and (not stamp.is_file() or stamp.read_text() != key):
        shutil.rmtree(path)  # made from another config: start over
    path.mkdir(parents=True, exist_ok=True)
    stamp.write_text(key)
    result = compute(path)
    atomic_write_text(json.dumps({"key": key, "result": result}, indent=2) + "\n", done)
    return Part(path, key, result)


def train_config(part: PartConfig, output: Path, overrides: list[str]) -> TrainConfig:
    cfg = load_config(part.config, [*part.overrides, *overrides], TrainConfig)
    cfg.output = str(output / "run")
    return cfg


def train_part(path: Path, cfg: TrainConfig, *upstream: Part) -> Part:
    """Train ``cfg`` in ``path/run`` (resuming an interrupted run of the same config), cached."""
    key = digest(OmegaConf.to_yaml(OmegaConf.structured(cfg)), [p.key for p in upstream])

    def compute(_):
        cfg.resume = "auto"
        summary = train(cfg)
        if summary.get("interrupted"):
            raise KeyboardInterrupt("benchmark stopped by SIGTERM; run the same command again to continue")
        return summary

    return cached(path, key, compute)


class Benchmark:
    def __init__(self, cfg: BenchmarkConfig):
        self.cfg = check_benchmark_config(cfg)
        self.out = Path(cfg.output)
        self.runs: list[dict] = []
        finetune = load_config(cfg.finetune.config, cfg.finetune.overrides, TrainConfig)
        self.device = init_processes(finetune.device).device
        self.amp = finetune.amp
        self.data_name = finetune.data.name
        _, self.val_loader, self.info = build_loaders(finetune.data, seed=0)

    # -- parts ------------------------------------------------------------------------------------

    def ancestry(self) -> Part:
        cfg = train_config(self.cfg.ancestry, self.out / "ancestry", [])
        return train_part(self.out / "ancestry", cfg)

    def learngene(self, name: str, part: PartConfig, seed: int, teacher: Part, model: tuple[str, dict] | None = None
                  ) -> Part:
        """An Aux-Net (or, for Simple-LG, a plain net of the Des-Nets' architecture given as ``model``)."""
        path = self.out / "learngenes" / name / f"seed{seed}"
        cfg = train_config(part, path, [f"seed={seed}", f"teacher.name=local-dir:{teacher.result['artifact']}"])
        if model is not None:
            cfg.model.name, cfg.model.kwargs = model
        return train_part(path, cfg, teacher)

    def initialization(self, method: str, depth: int, seed: int, source: Part | None, **options) -> Part:
        """A Des-Net initialized by ``method``, saved as a timm model folder and evaluated with no tuning."""
        path = self.out / "init" / method / f"depth{depth}" / f"seed{seed}"
        key = digest(method, depth, seed, options, source.key if source else None)

        def compute(folder: Path):
            init: Initialization = METHODS[method.replace("-random", "")](
                source.result["artifact"] if source else None, depth, seed=seed, **options)
            model = init.build()
            model_dir = folder / "model"
            if model_dir.exists():
                shutil.rmtree(model_dir)
            save_model_folder(model, model_dir, extra_files={"init.json": init.info})
            metrics = evaluate(model.to(self.device), self.val_loader, self.device, self.amp)
            return dict(metrics, artifact=str(model_dir), params=sum(p.numel() for p in model.parameters()),
                        params_stored=init.info["parameters_stored"])

        return cached(path, key, compute)

    def finetune(self, init: Part, method: str, depth: int, seed: int) -> Part:
        path = self.out / "finetune" / method / f"depth{depth}" / f"seed{seed}"
        cfg = train_config(self.cfg.finetune, path, [f"seed={seed}", f"optim.epochs={self.cfg.finetune_epochs}",
                                                     f"model.name=local-dir:{init.result['artifact']}",
                                                     "model.pretrained=true"])
        return train_part(path, cfg, init)

    def trained(self, depth: int, seed: int, des_args: dict, architecture: str) -> Part:
        path = self.out / "trained" / f"depth{depth}" / f"seed{seed}"
        cfg = train_config(self.cfg.trained, path, [f"seed={seed}", f"model.name={architecture}"])
        cfg.model.kwargs = {**des_args, "depth": depth}
        return train_part(path, cfg)

    # -- the whole pipeline -------------------------------------------------------------------------

    def record(self, method: str, depth: int, phase: str, seed: int, metrics: dict, params: int, stored: int,
               epochs: float, seconds: float) -> None:
        self.runs.append(dict(method=method, depth=depth, phase=phase, seed=seed, top1=metrics["top1"],
                              top5=metrics["top5"], val_loss=metrics["loss"], params=params, params_stored=stored,
                              epochs=epochs, seconds=seconds))

    def run(self) -> dict:
        """Run (or continue) the whole benchmark; write results.csv, results.md and the plots."""
        cfg = self.cfg
        clock = StageClock()
        with clock("ancestry"):
            ancestry = self.ancestry()

        learngenes: dict[str, list[Part]] = {name: [] for name in ("sws", "tleg", "simple-lg")}
        with clock("learngenes"):
            for seed in cfg.learngene_seeds:
                # The SWS learngene is always trained: it also fixes the Des-Net architecture of every method.
                learngenes["sws"].append(self.learngene("sws", cfg.sws_aux, seed, ancestry))
                if "tleg" in cfg.methods:
                    learngenes["tleg"].append(self.learngene("tleg", cfg.tleg_aux, seed, ancestry))
                if "simple-lg" in cfg.methods:
                    architecture, des_args = self.des_architecture(learngenes["sws"][0])
                    learngenes["simple-lg"].append(self.learngene("simple-lg", cfg.simple_lg, seed, ancestry,
                                                                  (architecture, {**des_args, "depth": 5})))
        architecture, des_args = self.des_architecture(learngenes["sws"][0])

        trained = {}
        with clock("trained"):
            for depth in cfg.trained_depths or cfg.depths:
                for seed in cfg.seeds:
                    part = trained[depth, seed] = self.trained(depth, seed, des_args, architecture)
                    self.record("trained", depth, "trained", seed, metrics_of(part), params_of(part),
                                params_of(part), part.result["epochs"], part.result["seconds"])

        for method in cfg.methods:
            for depth in cfg.depths:
                for i, seed in enumerate(cfg.seeds):
                    source, options = self.source_and_options(method, learngenes, ancestry, trained, i)
                    with clock("initialize+no-tune eval"):
                        init = self.initialization(method, depth, seed, source, **options)
                    self.record(method, depth, "no-tune", seed, init.result, init.result["params"],
                                init.result["params_stored"], 0, 0.0)
                    with clock("fine-tune"):
                        tuned = self.finetune(init, method, depth, seed)
                    self.record(method, depth, "fine-tuned", seed, metrics_of(tuned), init.result["params"],
                                init.result["params_stored"], tuned.result["epochs"], tuned.result["seconds"])
        return self.write_reports(ancestry, learngenes, trained, clock.seconds)

    # -- helpers ------------------------------------------------------------------------------------

    def des_architecture(self, sws: Part) -> tuple[str, dict]:
        init = METHODS["scratch"](sws.result["artifact"], 1)
        args = {k: v for k, v in init.model_args.items() if k != "depth"}
        return init.architecture, args

    def source_and_options(self, method: str, learngenes: dict, ancestry: Part, trained: dict,
                           index: int) -> tuple[Part | None, dict]:
        cfg = self.cfg
        pick = lambda parts: parts[index % len(parts)]  # noqa: E731  fine-tune seed i <- learngene seed i % n
        if method == "sws":
            return pick(learngenes["sws"]), {}
        if method == "sws-random":
            return pick(learngenes["sws"]), {"strategy": "random"}
        if method == "tleg":
            return pick(learngenes["tleg"]), {}
        if method == "simple-lg":
            return pick(learngenes["simple-lg"]), {}
        architecture, args = self.des_architecture(learngenes["sws"][0])
        if method == "weight-selection":
            return ancestry, {"model": architecture, "model_args": args, "layers": cfg.weight_selection_layers,
                              "elements": cfg.weight_selection_elements}
        if method == "vanilla-lg":
            deepest = max(d for d, _ in trained)
            return trained[deepest, cfg.seeds[0]], {"num_layers": cfg.vanilla_lg_layers}
        return pick(learngenes["sws"]), {}  # scratch: the learngene only names the Des-Net architecture

    def write_reports(self, ancestry: Part, learngenes: dict, trained: dict, timings: dict) -> dict:
        cfg = self.cfg
        summary = report.summarize(self.runs)
        report.write_csv(self.runs, report.RUN_FIELDS, self.out / "runs.csv")
        report.write_csv(summary, report.SUMMARY_FIELDS, self.out / "results.csv")

        names = {"sws": "SWS Aux-Net (learngene)", "tleg": "TLEG Aux-Net (learngene)",
                 "simple-lg": "Simple-LG 5-layer net (learngene)"}
        rows = [dict(name="Ancestry", params=params_of(ancestry), top1=ancestry.result["val_top1"], top1_std=0.0,
                     seconds=ancestry.result["seconds"])]
        seconds = {}
        for key, parts in learngenes.items():
            if not parts:
                continue
            top1 = [p.result["val_top1"] for p in parts]
            mean, std = report.mean_std(top1)
            seconds[key] = sum(p.result["seconds"] for p in parts) / len(parts)
            rows.append(dict(name=names[key], params=params_of(parts[0]), top1=mean, top1_std=std,
                             seconds=seconds[key]))
        deepest = max(d for d, _ in trained)
        plain = [trained[deepest, s] for s in cfg.seeds]
        mean, std = report.mean_std([p.result["val_top1"] for p in plain])
        rows.append(dict(name=f"Plain ViT-{deepest} from scratch (Trained budget)", params=params_of(plain[0]),
                         top1=mean, top1_std=std, seconds=sum(p.result["seconds"] for p in plain) / len(plain)))

        methods = list(cfg.methods)
        markdown = report.markdown_report(summary, cfg.depths, methods, rows, ancestry.result["val_top1"],
                                          params_of(learngenes["sws"][0]), seconds, cfg.finetune_epochs,
                                          title=f"SWS benchmark on {self.data_name} ({self.info.num_classes} "
                                                f"classes, {self.info.num_val} validation images)")
        atomic_write_text(markdown, self.out / "results.md")
        for phase, name in (("no-tune", "no_tune.png"), ("fine-tuned", "fine_tuned.png")):
            title = "no tuning after initialization" if phase == "no-tune" else \
                f"after a {cfg.finetune_epochs}-epoch fine-tune"
            report.plot_accuracy(summary, cfg.depths, methods, phase, self.out / name, f"Des-Nets, {title}")
        result = dict(wall_seconds=timings, results_md=str(self.out / "results.md"), results_csv=str(self.out / "results.csv"))
        atomic_write_text(json.dumps(result, indent=2) + "\n", self.out / "benchmark.json")
        return result


def metrics_of(part: Part) -> dict:
    r = part.result
    return {"top1": r["val_top1"], "top5": r["val_top5"], "loss": r["val_loss"]}


def params_of(part: Part) -> int:
    """Parameters of a trained part's artifact (its model folder or learngene file)."""
    return stored_parameter_count(part.result["artifact"])
