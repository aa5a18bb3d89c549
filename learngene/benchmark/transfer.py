"""The transfer benchmark: every method's Des-Nets fine-tuned on new downstream tasks, with curves over epochs.

The upstream half is the benchmark's own first two stages (``Benchmark.run_upstream``): the ancestry, the Trained
references (which are also PF's models, one pre-trained per Des-Net size) and the learngenes, cached in the same
part folders. Then, for every downstream task (``BenchmarkConfig.downstream``) and every Des-Net the run makes
(``Benchmark.des_net_cells``: each method, depth, width and seed), stage 3 initializes the Des-Net from the
upstream artifacts, gives it the task's classifier (a fresh one by default, as both papers do for a new label
set), evaluates it on the task's test split (epoch 0), fine-tunes it on the task's train split with the task's
recipe for the task's budget, evaluating the test split after every epoch (``TrainConfig.test_curve``), and
optionally trains a linear probe of the same initialized Des-Net. With ``learngene_epochs``, the SWS learngenes
saved after those Aux-Net epochs are expanded and fine-tuned too (SWS Table 6).

Every evaluation is one row of ``transfer.csv`` and keeps each test image's hit, so the benchmark's paired
intervals (``stats.difference``) compare any two cells at any epochs (``transfer_report``). Parts live in
``OUTPUT/transfer/<task>/{init,finetune,probe}/<method>/<cell>/seed<N>``. docs/transfer.md explains the setting.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from learngene.benchmark import transfer_report
from learngene.benchmark.config import BENCHMARK_METHODS, BenchmarkConfig, DownstreamConfig, PartConfig, \
    downstream_recipe, task_depths
from learngene.benchmark.runner import Benchmark, DesNetJob, Part, Upstream, digest, rank, train_config
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
    STAGES = ("sources", "learngenes", "downstream")

    def __init__(self, cfg: BenchmarkConfig):
        if cfg.learngene_epochs:  # the SWS Aux-Net saves its learngene after those epochs too
            cfg = dataclasses.replace(cfg, sws_aux=PartConfig(
                cfg.sws_aux.config, [*cfg.sws_aux.overrides, f"snapshot_epochs={list(cfg.learngene_epochs)}"]))
        super().__init__(cfg)
        aux_epochs = self.train_config(cfg.sws_aux, self.out, []).optim.epochs
        never = [e for e in cfg.learngene_epochs if e >= aux_epochs]
        if never:
            raise LearngeneError(f"learngene_epochs {never} are never saved: the SWS Aux-Net trains {aux_epochs} "
                                 f"epochs (its learngene after all of them is the run's own); choose epochs below "
                                 f"{aux_epochs}")
        self.tasks = [self.resolve(task) for task in cfg.downstream]

    def resolve(self, task: DownstreamConfig) -> Task:
        """A downstream task's recipes and data, checked before anything is trained."""
        folder = self.out / "transfer" / task.name
        finetune = self.task_config(task, folder, [f"optim.epochs={task.epochs}"])
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
        probe = None
        if task.probe_epochs:
            probe = self.task_config(task, folder, ["model.linear_probe=true", f"optim.epochs={task.probe_epochs}"])
        return Task(task, finetune, probe, info)

    def task_config(self, task: DownstreamConfig, folder: Path, overrides: list[str]) -> TrainConfig:
        """A downstream recipe: the task's config, then ``overrides``, every epoch evaluated on test. The run's
        part_overrides are the upstream's: a task's data settings are its own and the run's downstream_overrides."""
        return train_config(downstream_recipe(self.cfg, task), folder, [*overrides, "test_curve=true"],
                            self.cfg.deterministic)

    # -- the run ------------------------------------------------------------------------------------

    def run_parts(self) -> dict:
        up = self.run_upstream()
        jobs = [job for task in self.tasks for job in self.task_jobs(task, up)]
        done = self.run_stage(3, "downstream", jobs)
        if self.survey:  # the check before the run (Benchmark.check_stale) writes nothing
            return {}
        des_nets = [(job, done[job.name]) for job in jobs]
        rows = self.transfer_rows(des_nets)
        result = dict(wall_seconds=self.clock.seconds, results_md=str(self.out / "results.md"),
                      transfer_csv=str(self.out / "transfer.csv"),
                      **({"stale_parts": self.stale_parts} if self.stale_parts else {}))
        if rank() == 0:
            result["console"] = transfer_report.write(self, up, rows, des_nets)
            atomic_write_text(json.dumps(result, indent=2) + "\n", self.out / "benchmark.json")
        return result

    def task_jobs(self, task: Task, up: Upstream) -> list[DesNetJob]:
        """Every Des-Net of the run, then the SWS ones from the learngenes saved at ``learngene_epochs``."""
        cells = [cell for cell in self.des_net_cells(up) if cell[1] in task_depths(self.cfg, task.cfg)]
        sws = [cell for cell in cells if cell[0] == "sws"]
        for epoch in self.cfg.learngene_epochs:
            for method, depth, width, lg, seeds, source, options in sws:
                snapshot = Path(source.result["artifact"]).parent / f"epoch{epoch}" / "learngene.safetensors"
                cells.append((method, depth, width, lg, seeds, Part(snapshot.parent, digest(source.key, epoch),
                                                                    {"artifact": str(snapshot)}), options))
        return [self.task_job(task, *cell) for cell in cells]

    def task_job(self, task: Task, method: str, depth: int, width: int, init_seed: int, seeds: list[int],
                 source: Part | None, options: dict) -> DesNetJob:
        epoch = self.learngene_epoch(source) if method == "sws" else None
        cell = f"depth{depth}" if width == self.full_width else f"depth{depth}-width{width}"
        folder = Path(method if epoch is None else f"{method}-learngene-epoch{epoch}") / cell
        return DesNetJob(f"{task.name} {folder.as_posix().replace('/', ' ')} seed{init_seed}",
                         self.out / "transfer" / task.name, method, depth, width, folder, init_seed, tuple(seeds),
                         source, options, task.finetune, self.cfg.keep_training_states,
                         fresh_classes=task.info.num_classes if task.cfg.head == "fresh" else None, probe=task.probe)

    def learngene_epoch(self, source: Part) -> int | None:
        """The Aux-Net epoch a snapshot learngene was saved at; None for the learngene of the whole training."""
        folder = Path(source.result["artifact"]).parent.name
        return int(folder[len("epoch"):]) if folder.startswith("epoch") else None

    # -- results ------------------------------------------------------------------------------------

    def transfer_rows(self, des_nets: list[tuple[DesNetJob, tuple]]) -> list[dict]:
        """One row per evaluation (``transfer_report.TRANSFER_FIELDS``), each with its per-image hits (``correct``) and ``group``
        (as the benchmark's result rows: the learngene seed's index for a method with a learngene, else the
        replicate's). Epoch 0 is the initialized Des-Net, the first row of each phase's curve."""
        cfg, lg_of, rows = self.cfg, self.learngene_seed_of, []
        replicate = {s: r for r, s in enumerate(cfg.seeds)}
        for job, (init, tuned, probed) in des_nets:
            info = BENCHMARK_METHODS[job.method]
            lg = job.init_seed if info.learned else (lg_of[job.init_seed] if info.learngene else None)
            group = replicate[job.init_seed] if lg is None else cfg.learngene_seeds.index(lg)
            epoch = self.learngene_epoch(job.source) if job.method == "sws" else None
            common = dict(dataset=job.out.name, method=job.method, depth=job.depth, width=job.width,
                          learngene_epoch="" if epoch is None else epoch,
                          learngene_seed="" if lg is None else lg, split="test", params=init.result["params"],
                          params_stored=init.result["params_stored"], flops=init.result["flops"], group=group)
            for phase, parts in (("fine-tuned", tuned), ("probe", probed)):
                for seed, part in zip(job.finetune_seeds, parts):
                    start = init.result["test"]
                    rows.append(dict(common, phase=phase, seed=seed, epoch=0, top1=start["top1"], top5=start["top5"],
                                     loss=start["loss"], seconds=0.0, correct=start["correct"]))
                    for point in part.result["test_curve"]:
                        rows.append(dict(common, phase=phase, seed=seed, epoch=point["epoch"], top1=point["top1"],
                                         top5=point["top5"], loss=point["loss"], seconds=point["seconds"],
                                         correct=point["correct"]))
        return rows
