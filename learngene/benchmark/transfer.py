"""The transfer benchmark: every method's Des-Nets fine-tuned on new downstream tasks, with curves over epochs.

The upstream half is the benchmark's own (``graph.BenchmarkGraph``): the ancestry, the Trained references (which
are also PF's models, one pre-trained per Des-Net size) and the learngenes, cached in the same part folders. Then,
for every downstream task (``BenchmarkConfig.downstream``) and every Des-Net the run makes (each method, depth,
width and seed), one job initializes the Des-Net from its upstream artifact, gives it the task's classifier (a
fresh one by default, as both papers do for a new label set) and evaluates it on the task's test split (epoch 0);
its own job fine-tunes it on the task's train split with the task's recipe for the task's budget, evaluating the
test split after every epoch (``TrainConfig.test_curve``), and another optionally trains a linear probe of the same
initialized Des-Net. With ``learngene_epochs``, the SWS learngenes saved after those Aux-Net epochs are expanded
and fine-tuned too (SWS Table 6).

Every evaluation is one row of ``transfer.csv`` and keeps each test image's hit, so the benchmark's paired
intervals (``stats.difference``) compare any two cells at any epochs (``transfer_report``). Parts live in
``OUTPUT/transfer/<task>/{init,finetune,probe}/<method>/<cell>/seed<N>``. docs/transfer.md explains the setting.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from learngene.benchmark import results, transfer_report
from learngene.benchmark.config import BENCHMARK_METHODS, BenchmarkConfig, DownstreamConfig, PartConfig
from learngene.benchmark.graph import DesNet, Job, task_recipes
from learngene.benchmark.cache import Part, rank
from learngene.benchmark.runner import Benchmark
from learngene.checkpoint import atomic_write_text
from learngene.config import TrainConfig
from learngene.data import DatasetInfo, build_loaders
from learngene.errors import LearngeneError

@dataclass
class Task:
    """A downstream task, resolved: its config, fine-tune and probe recipes, and its data."""

    cfg: DownstreamConfig
    finetune: TrainConfig
    probe: TrainConfig | None
    info: DatasetInfo

    @property
    def name(self) -> str:
        return self.cfg.name


class TransferBenchmark(Benchmark):
    def __init__(self, cfg: BenchmarkConfig):
        if cfg.learngene_epochs:  # the SWS Aux-Net saves its learngene after those epochs too
            cfg = dataclasses.replace(cfg, sws_aux=PartConfig(
                cfg.sws_aux.config, [*cfg.sws_aux.overrides, f"snapshot_epochs={list(cfg.learngene_epochs)}"]))
        super().__init__(cfg)
        aux_epochs = self.graph.train_config(cfg.sws_aux, self.out, []).optim.epochs
        never = [e for e in cfg.learngene_epochs if e >= aux_epochs]
        if never:
            raise LearngeneError(f"learngene_epochs {never} are never saved: the SWS Aux-Net trains {aux_epochs} "
                                 f"epochs (its learngene after all of them is the run's own); choose epochs below "
                                 f"{aux_epochs}")
        self.tasks = [self.resolve(task) for task in cfg.downstream]

    def resolve(self, task: DownstreamConfig) -> Task:
        """A downstream task's recipes and data, checked before anything is trained."""
        finetune, probe = task_recipes(self.cfg, task)
        info = build_loaders(finetune.data, seed=0)[2]  # a missing dataset or a bad class list stops here
        where = f"downstream task {task.name!r}"
        if info.num_classes != task.num_classes:
            raise LearngeneError(f"{where}: its data ({finetune.data.name}) has {info.num_classes} classes, not "
                                 f"num_classes={task.num_classes}: correct num_classes or the data's classes")
        if task.head == "keep" and info.num_classes != self.info.num_classes:
            raise LearngeneError(f"{where}: head=keep needs the upstream's {self.info.num_classes} classes, not "
                                 f"{info.num_classes}: use head=fresh for a new label set")
        shared = sorted(set(info.class_names) & set(self.info.class_names))
        if task.disjoint and finetune.data.name == self.finetune_cfg.data.name and shared:
            raise LearngeneError(f"{where} is disjoint from the upstream data but shares its classes {shared}: set "
                                 "data.classes of the two to different classes, or disjoint=false")
        return Task(task, finetune, probe, info)

    def write_results(self, jobs: list[Job], done: dict[str, Part], seconds: float) -> dict:
        up, des_nets = results.upstream(jobs, done), results.des_net_parts(jobs, done)
        rows = self.transfer_rows(des_nets)
        result = dict(wall_seconds={"all parts": seconds}, results_md=str(self.out / "results.md"),
                      transfer_csv=str(self.out / "transfer.csv"),
                      **({"stale_parts": self.stale_parts} if self.stale_parts else {}))
        if rank() == 0:
            result["console"] = transfer_report.write(self, up, rows, des_nets)
            atomic_write_text(json.dumps(result, indent=2) + "\n", self.out / "benchmark.json")
        return result

    # -- results ------------------------------------------------------------------------------------

    def transfer_rows(self, des_nets: list[tuple[DesNet, tuple]]) -> list[dict]:
        """One row per evaluation (``transfer_report.TRANSFER_FIELDS``), each with its per-image hits (``correct``) and ``group``
        (as the benchmark's result rows: the learngene seed's index for a method with a learngene, else the
        replicate's). Epoch 0 is the initialized Des-Net, the first row of each phase's curve."""
        cfg, lg_of, rows = self.cfg, self.graph.learngene_seed_of, []
        replicate = {s: r for r, s in enumerate(cfg.seeds)}
        for des_net, (init, tuned, probed) in des_nets:
            info = BENCHMARK_METHODS[des_net.method]
            lg = des_net.seed if info.learned else (lg_of[des_net.seed] if info.learngene else None)
            group = replicate[des_net.seed] if lg is None else cfg.learngene_seeds.index(lg)
            epoch = des_net.learngene_epoch
            common = dict(dataset=des_net.task, method=des_net.method, depth=des_net.depth, width=des_net.width,
                          learngene_epoch="" if epoch is None else epoch,
                          learngene_seed="" if lg is None else lg, split="test", params=init.result["params"],
                          params_stored=init.result["params_stored"], flops=init.result["flops"], group=group)
            for phase, parts in (("fine-tuned", tuned), ("probe", probed)):
                for seed, part in zip(des_net.finetune_seeds, parts):
                    start = init.result["test"]
                    rows.append(dict(common, phase=phase, seed=seed, epoch=0, top1=start["top1"], top5=start["top5"],
                                     loss=start["loss"], seconds=0.0, correct=start["correct"]))
                    for point in part.result["test_curve"]:
                        rows.append(dict(common, phase=phase, seed=seed, epoch=point["epoch"], top1=point["top1"],
                                         top5=point["top5"], loss=point["loss"], seconds=point["seconds"],
                                         correct=point["correct"]))
        return rows
