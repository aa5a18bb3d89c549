"""The one training engine behind tools/train_aux.py and tools/finetune.py.

``train(cfg)`` trains ``cfg.model`` on ``cfg.data`` with cross-entropy, or by distillation when
``cfg.teacher.name`` is set, and fills the run folder ``cfg.output``:

* ``config.yaml``  the resolved config, written once the run is accepted (validated, resumable, locked);
* ``last.pt``      the training state, rewritten (atomically) after every epoch and on SIGTERM;
* ``log.csv``      one row per finished epoch;
* ``test_curve.json`` with ``test_curve=true``: the test split's metrics after every epoch, each image's hit kept;
* ``epoch<N>/``    with ``snapshot_epochs``: the artifact as it was after epoch N;
* ``summary.json`` final metrics and paths;
* the artifact: ``learngene.safetensors`` for an Aux-Net, else ``model/`` (a timm local-dir folder).

Resuming: ``resume=auto`` continues from ``last.pt`` if the config is the one it was written with (up to
``learngene.config.RESUMABLE_KEYS``). Every source of randomness (RNG states, the sampler order, which
depends only on seed and epoch) is restored, so on CPU a run that is killed and resumed ends with bitwise
the same weights as one that never stopped. A SIGTERM finishes the current optimizer update, saves a
mid-epoch ``last.pt`` and returns; the resumed run re-draws the skipped batches of that epoch (same
sampler order, same worker seeds) before continuing. One process at a time may use a run folder
(``learngene.engine.run_folder``).
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import torch
from omegaconf import OmegaConf
from timm.models import get_model_args
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3, random_seed
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from learngene.checkpoint import atomic_torch_save, atomic_write_csv, atomic_write_text, load_torch_file, \
    preprocessing_of, save_learngene, save_model_folder
from learngene.cli import INTERRUPTED_EXIT_CODE
from learngene.signals import SIGTERM_EXIT_CODE, Terminated, sigterm_sets_flag
from learngene.config import TrainConfig, resume_conflicts, save_config
from learngene.data import build_eval_loader, build_loaders, build_mixup
from learngene.data.seeded import seeded_rng
from learngene.distill import classification_loss, distillation_loss
from learngene.distill.teacher_cache import TeacherLogitCache
from learngene.engine.distributed import Processes, default_cpu_threads, init_processes, resolve_device, shard_loader
from learngene.engine.elastic import ElasticSandwich, mean_over_passes
from learngene.engine.evaluate import autocast, evaluate, test_split_metrics
from learngene.engine.models import build_student, build_teacher, load_fitting_state_dict, teacher_fingerprint
from learngene.engine.preflight import check_training
from learngene.engine.run_folder import check_fresh_output, locked_run_folder, remove_orphans
from learngene.engine.state import capture_rng, restore_rng
from learngene.errors import LearngeneError, first_line
from learngene.models import PooledViT

LOG_COLUMNS = ("epoch", "train_loss", "val_loss", "val_top1", "val_top5", "lr", "images_per_s", "seconds")


def train_tool(cfg: TrainConfig) -> int:
    """What tools/train_aux.py and tools/finetune.py run: ``train(cfg)`` and the exit code.

    0 when finished, 143 when stopped by SIGTERM (``last.pt`` saved mid-epoch), 130 on Ctrl-C, which
    prints one line saying how to continue instead of a traceback.
    """
    threads = default_cpu_threads()
    is_main = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 prints
    if is_main and resolve_device(cfg.device).type == "cpu":
        print(f"using {threads} CPU thread{'s' * (threads != 1)} (set OMP_NUM_THREADS to change)", flush=True)
    try:
        summary = train(cfg)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM outside the training loop (which saves last.pt)
        terminated = isinstance(e, Terminated)
        if is_main:  # under torchrun every process gets the Ctrl-C
            last = Path(cfg.output) / "last.pt"
            since = f"from {last}" if last.exists() else "from the start: no epoch had finished"
            print(f"stopped by {'SIGTERM' if terminated else 'Ctrl-C'}: continue with the same command plus "
                  f"resume=auto ({since})", file=sys.stderr)
        return SIGTERM_EXIT_CODE if terminated else INTERRUPTED_EXIT_CODE
    return SIGTERM_EXIT_CODE if summary.get("interrupted") else 0


def train(cfg: TrainConfig) -> dict:
    """Run (or resume) a whole training; return the summary (also in ``OUTPUT/summary.json``).

    With ``optim.epochs=0`` the model is only evaluated (and written as the artifact, e.g. to export a
    pretrained timm model as a model folder). A run stopped by SIGTERM returns
    ``{"interrupted": True, ...}`` after saving ``last.pt``.
    """
    check_training(cfg)
    procs = init_processes(cfg.device)
    try:
        if cfg.amp == "fp16" and procs.device.type != "cuda":
            raise LearngeneError("amp=fp16 needs a CUDA device: use amp=bf16 or amp=none on CPU")
        with determinism(cfg.deterministic):
            random_seed(cfg.seed, procs.rank)
            run = Run(cfg, procs)
            with locked_run_folder(run.out, procs):
                return run.fit() if cfg.optim.epochs > 0 else run.evaluate_only()
    finally:
        procs.close()


@contextlib.contextmanager
def determinism(deterministic: bool):
    """Deterministic algorithms and no cuDNN autotuning while training, or the fastest kernels."""
    cudnn = torch.backends.cudnn
    saved = torch.are_deterministic_algorithms_enabled(), cudnn.benchmark, cudnn.deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by deterministic cuBLAS
    torch.use_deterministic_algorithms(deterministic)
    cudnn.benchmark, cudnn.deterministic = not deterministic, deterministic
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0])
        cudnn.benchmark, cudnn.deterministic = saved[1:]


class Run:
    """Everything one training run holds: data, models, optimizer, schedule, and its progress."""

    def __init__(self, cfg: TrainConfig, procs: Processes):
        self.cfg, self.procs, self.device = cfg, procs, procs.device
        self.out = Path(cfg.output)
        self.last_path = self.out / "last.pt"
        self.train_loader, val_loader, self.info = build_loaders(cfg.data, seed=cfg.seed,
                                                                 distributed=procs.distributed)
        self.val_loader = shard_loader(val_loader, procs)
        self.mixup = build_mixup(cfg.data, self.info.num_classes)
        self.model = build_student(cfg.model, self.info).to(self.device)
        if cfg.model.linear_probe:  # only the classifier learns
            self.model.requires_grad_(False)
            self.model.get_classifier().requires_grad_(True)
        self.test_loader = shard_loader(build_eval_loader(cfg.data, "test"), procs) if cfg.test_curve else None
        self.teacher = build_teacher(cfg.teacher, self.info).to(self.device) if cfg.teacher.name else None
        self.elastic = (ElasticSandwich(cfg.elastic, self.model, cfg.model.drop_path_rate, cfg.seed)
                        if cfg.elastic.widths else None)
        self.teacher_cache = None  # opened once the run is accepted: opening writes the cache's manifest
        self.saved_config = OmegaConf.to_container(OmegaConf.structured(cfg))  # in every last.pt (0.1 s to build)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
            if self.teacher is not None:
                self.teacher.to(memory_format=torch.channels_last)

        # progress, all of it saved in last.pt
        self.epoch = 0  # epochs finished
        self.step = 0  # batches done in epoch `self.epoch` (non-zero only in a SIGTERM checkpoint)
        self.num_updates = 0
        self.history: list[dict] = []  # the log.csv rows
        self.test_curve: list[dict] = []  # the test_curve.json rows
        self.teacher_top1: float | None = None
        self.start_top1: float | None = None  # val top-1 of pretrained starting weights (a fine-tune's "before")
        self.teacher_clock = ForwardClock()  # the teacher's forward, this process (replayed batches cost none)
        self.tensorboard = None

    # -- setup --------------------------------------------------------------------------------------

    def build_optimization(self) -> None:
        cfg, optim = self.cfg, self.cfg.optim
        global_batch = cfg.data.batch_size * optim.accum_steps * self.procs.world_size
        lr = optim.lr * global_batch / optim.lr_base_batch if optim.lr_base_batch else optim.lr
        fused = {"fused": True} if optim.opt == "adamw" and self.device.type == "cuda" else {}
        try:
            self.optimizer = create_optimizer_v2(self.model, optim.opt, lr=lr, weight_decay=optim.weight_decay,
                                                 **fused)
            self.scheduler, _ = create_scheduler_v2(
                self.optimizer, sched=optim.sched, num_epochs=optim.epochs, warmup_epochs=optim.warmup_epochs,
                warmup_lr=optim.warmup_lr, min_lr=optim.min_lr, step_on_epochs=not optim.sched_on_updates,
                updates_per_epoch=math.ceil(len(self.train_loader) / optim.accum_steps))
        except (AssertionError, ValueError) as e:  # timm's answer to unknown optimizer / scheduler names
            raise LearngeneError(f"bad optim settings (opt={optim.opt!r}, sched={optim.sched!r}): {e}") from None
        if self.scheduler is None:
            raise LearngeneError(f"optim.sched={optim.sched!r} gives no schedule: use cosine, step or constant")
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.amp == "fp16")

        self.train_model = self.model
        if self.procs.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.model, device_ids=ids)
        # after DDP, which has broadcast rank 0's initial weights to every rank
        self.ema = ModelEmaV3(self.model, decay=cfg.ema_decay) if cfg.ema else None
        if cfg.compile:
            self.train_model = torch.compile(self.train_model)

    def open_teacher_cache(self) -> None:
        """The teacher-logit cache of this teacher: ``distill.teacher_cache/teacher-<fingerprint>/``.

        One subfolder per teacher fingerprint (weights, architecture, how it is run), so a changed teacher
        records afresh instead of replaying the old teacher's outputs; within it the cache's manifest
        refuses other data settings, seed or world size.
        """
        cfg = self.cfg
        if self.teacher is None or not cfg.distill.teacher_cache:
            return
        fingerprint = teacher_fingerprint(self.teacher, cfg)
        self.teacher_cache = TeacherLogitCache(
            Path(cfg.distill.teacher_cache) / f"teacher-{fingerprint[:16]}", teacher=fingerprint, data_cfg=cfg.data,
            seed=cfg.seed, num_classes=self.info.num_classes,
            topk=min(cfg.distill.teacher_cache_topk, self.info.num_classes),  # fewer classes: keep them all
            rank=self.procs.rank, world_size=self.procs.world_size)

    def start_writing(self) -> None:
        """The run is accepted: clear what a killed run of this folder left half-written, record the config."""
        if self.procs.is_main:
            for orphan in remove_orphans(self.out):
                print(f"removed {orphan}, left by an interrupted write", flush=True)
            save_config(self.cfg, self.out / "config.yaml")

    # -- the run ------------------------------------------------------------------------------------

    def fit(self) -> dict:
        state = self.find_resume_state()
        self.build_optimization()
        if state is not None:
            self.load_state(state)
        self.open_teacher_cache()
        self.start_writing()
        if self.teacher is not None and self.teacher_top1 is None:
            self.teacher_top1 = evaluate(self.teacher, self.val_loader, self.device, self.cfg.amp)["top1"]
        if state is None and (self.cfg.model.pretrained or self.cfg.model.checkpoint):
            self.start_top1 = evaluate(self.model, self.val_loader, self.device, self.cfg.amp)["top1"]
            if self.procs.is_main:
                print(f"before training: val_top1 {self.start_top1:.2f}", flush=True)
        if state is not None:  # last, so that nothing above changes where the generators continue from
            self.restore_rank_rng(state["rng_epoch_start"] if self.step else state["rng"])

        if self.procs.is_main:
            self.tensorboard = open_tensorboard(self.out / "tensorboard")
        try:
            with sigterm_sets_flag() as sigterm:
                while self.epoch < self.cfg.optim.epochs:
                    resume_rng = state["rng"] if state is not None and self.step else None
                    partial = state["partial"] if resume_rng is not None else None
                    finished = self.train_epoch(sigterm, resume_rng, partial)
                    state = None
                    if not finished or self.procs.any([sigterm.is_set()])[0]:
                        return self.interrupted()
        finally:
            if self.tensorboard is not None:
                self.tensorboard.close()
        return self.finish()

    def train_epoch(self, sigterm: threading.Event, resume_rng: list | None, partial: dict | None) -> bool:
        """Train epoch ``self.epoch`` from batch ``self.step``; False when stopped early by SIGTERM."""
        progress = partial or {"loss_sum": 0.0, "train_seconds": 0.0}
        batches, rng_epoch_start = self.start_epoch(resume_rng)
        bar = tqdm(total=len(self.train_loader), initial=self.step,
                   desc=f"epoch {self.epoch + 1}/{self.cfg.optim.epochs}", leave=False,
                   disable=not (self.procs.is_main and sys.stderr.isatty()))
        start = time.perf_counter()
        try:
            for i in range(self.step, len(self.train_loader)):
                images, targets = next(batches)
                loss_value, update, stop = self.train_step(i, images, targets, sigterm)
                progress["loss_sum"] += loss_value
                bar.update()
                bar.set_postfix(loss=f"{loss_value:.4f}")
                if update and stop and i + 1 < len(self.train_loader):
                    self.step = i + 1
                    progress["train_seconds"] += time.perf_counter() - start
                    self.save_state(rng_epoch_start, progress)
                    return False
        finally:
            bar.close()
        progress["train_seconds"] += time.perf_counter() - start
        self.end_epoch(progress)
        return True

    def start_epoch(self, resume_rng: list | None) -> tuple[Iterator, dict]:
        """Set the schedule and sampler for epoch ``self.epoch``; return its batches from ``self.step`` on
        and the RNG state at the epoch's start (saved in a mid-epoch ``last.pt``).

        A mid-epoch resume re-draws the batches already trained on (same order, same worker seeds), then
        restores the generators to where the stopped run was.
        """
        self.train_model.train()
        self.scheduler.step(self.epoch)
        self.scheduler.step_update(self.num_updates)
        self.train_loader.sampler.set_epoch(self.epoch)
        rng_epoch_start = capture_rng()
        batches = iter(self.train_loader)
        for _ in range(self.step):
            next(batches)
        if resume_rng is not None:
            self.restore_rank_rng(resume_rng)
        return batches, rng_epoch_start

    def train_step(self, i: int, images: torch.Tensor, targets: torch.Tensor,
                   sigterm: threading.Event) -> tuple[float, bool, bool]:
        """Forward and backward batch ``i`` (and the optimizer update closing its accumulation group).

        Returns ``(loss, whether this batch updated the weights, whether any rank was asked to stop)``.
        """
        cfg, num_batches, accum = self.cfg, len(self.train_loader), self.cfg.optim.accum_steps
        images = images.to(self.device, non_blocking=True)
        targets = targets.to(self.device, non_blocking=True)
        if cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if self.mixup is not None:
            # Mixup/CutMix draws are a function of the batch alone, never of what the student drew before
            # (a teacher cache replays them), and leave the global generators where they were.
            with seeded_rng(cfg.seed, self.epoch, i, self.procs.rank):
                images, targets = self.mixup(images, targets)
        update = (i + 1) % accum == 0 or i + 1 == num_batches
        group_size = min(accum, num_batches - (i - i % accum))  # the last group may be short

        sync = contextlib.nullcontext() if update or not self.procs.distributed else self.train_model.no_sync()
        with sync:
            with autocast(self.device, cfg.amp):
                logits = self.train_model(images)
                if self.elastic is not None:  # the sandwich rule's other widths, on the same parameters
                    logits = [logits, *self.elastic.extra_logits(images, self.epoch, i)]
                loss = self.loss(images, logits, targets, i)
            loss_value = loss.item()
            nonfinite, stop = self.procs.any([not math.isfinite(loss_value), sigterm.is_set()])
            if nonfinite:
                raise LearngeneError(f"training diverged: loss is {loss_value} at epoch {self.epoch + 1} batch "
                                     f"{i + 1}; {self.diverged_advice()}")
            self.scaler.scale(loss / group_size).backward()
        if update:
            self.optimizer_step()
        return loss_value, update, stop

    def diverged_advice(self) -> str:
        if self.last_path.exists():
            return (f"{self.last_path} keeps the last good state: lower optim.lr or set optim.clip_grad, "
                    "then resume=auto")
        return "no epoch had finished, so nothing was saved: lower optim.lr or set optim.clip_grad and start again"

    def end_epoch(self, progress: dict) -> None:
        """Close epoch ``self.epoch``: write its cache shard, evaluate, log, save ``last.pt``."""
        cfg, num_batches = self.cfg, len(self.train_loader)
        if self.teacher_cache is not None:
            self.teacher_cache.finish_epoch(self.epoch)
        self.teacher_clock.read()  # once per epoch: CUDA timings are read without making any step wait
        eval_start = time.perf_counter()
        metrics = evaluate(self.model, self.val_loader, self.device, cfg.amp)
        row = {
            "epoch": self.epoch + 1,
            "train_loss": progress["loss_sum"] / num_batches,
            "val_loss": metrics["loss"],
            "val_top1": metrics["top1"],
            "val_top5": metrics["top5"],
            "lr": self.optimizer.param_groups[0]["lr"],
            "images_per_s": num_batches * cfg.data.batch_size * self.procs.world_size / progress["train_seconds"],
            "seconds": progress["train_seconds"] + time.perf_counter() - eval_start,
        }
        if self.ema is not None:
            row["ema_val_top1"] = evaluate(self.ema.module, self.val_loader, self.device, cfg.amp)["top1"]
        if self.elastic is not None:  # every other width it is trained at (val_top1 is the full width's)
            for width in self.elastic.widths[:-1]:
                row[f"val_top1_w{width}"] = evaluate(self.elastic.at_width(width), self.val_loader, self.device,
                                                     cfg.amp)["top1"]
        self.history.append(row)
        if self.test_loader is not None:
            with torch.random.fork_rng(devices=[]):  # a loader draws its base seed: keep training's draws as they are
                test = test_split_metrics(self.model, self.test_loader, self.procs, cfg.amp)
            trained = sum(r["seconds"] for r in self.history)
            self.test_curve.append(dict(epoch=self.epoch + 1, seconds=trained, **test))
        self.epoch, self.step = self.epoch + 1, 0
        if self.epoch in cfg.snapshot_epochs and self.procs.is_main:  # before last.pt: a resume redoes a lost one
            self.save_artifact(dict(teacher=cfg.teacher.name, epochs=self.epoch, val_top1=row["val_top1"],
                                    teacher_top1=self.teacher_top1), self.out / f"epoch{self.epoch}")
        self.save_state()
        if self.procs.is_main:
            print(format_row(row, cfg.optim.epochs), flush=True)
        if self.tensorboard is not None:
            for key, value in row.items():
                self.tensorboard.add_scalar(key, value, row["epoch"])

    def loss(self, images: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor, step: int) -> torch.Tensor:
        if self.teacher is None:
            return mean_over_passes(lambda out: classification_loss(out, targets, self.cfg.data.smoothing), logits)
        cache = self.teacher_cache
        teacher_logits = cache.lookup(self.epoch, step, images) if cache is not None else None
        if teacher_logits is None:
            with torch.no_grad(), self.teacher_clock(images.device):  # the same (mixed) batch, in eval mode
                teacher_logits = self.teacher(images)
            if cache is not None:
                cache.record(self.epoch, step, images, teacher_logits)
        return mean_over_passes(lambda out: distillation_loss(out, targets, teacher_logits, self.cfg.distill.alpha,
                                                              self.cfg.distill.tau, self.cfg.data.smoothing), logits)

    def optimizer_step(self) -> None:
        if self.cfg.optim.clip_grad:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.num_updates += 1
        if self.ema is not None:
            self.ema.update(self.model, step=self.num_updates)
        self.scheduler.step_update(self.num_updates)

    # -- checkpoints ----------------------------------------------------------------------------------

    def find_resume_state(self) -> dict | None:
        """The training state to continue, checked against this config; None for a fresh run."""
        resume = self.cfg.resume
        if not resume or (resume == "auto" and not self.last_path.exists()):
            self.check_fresh_output()
            return None
        path = self.last_path if resume == "auto" else Path(resume)
        if path.resolve() != self.last_path.resolve():  # continued in another folder, which must not hold a run
            self.check_fresh_output()
        state = load_torch_file(path, "training state")
        if not isinstance(state, dict) or "optimizer" not in state or "rng" not in state:
            raise LearngeneError(f"{path} is not a training state (last.pt) written by this toolkit: "
                                 "pass resume=auto or a run's last.pt")
        self.check_resumable(state, path)
        return state

    def check_fresh_output(self) -> None:
        check_fresh_output(self.out, self.cfg.resume)

    def check_resumable(self, state: dict, path: Path) -> None:
        """Refuse a training state written with settings this run cannot continue correctly."""
        conflicts = resume_conflicts(state["config"], self.cfg)
        if conflicts:
            raise LearngeneError(f"{path} was trained with other settings: {', '.join(conflicts)}; resume with "
                                 "its settings (its config.yaml) or start a new run with another output=")
        done, epochs = state["epoch"] + (state["step"] > 0), self.cfg.optim.epochs
        if epochs < done:
            trained = f"{state['epoch']} epochs and {state['step']} batches" if state["step"] else f"{done} epochs"
            raise LearngeneError(f"{path} has already trained {trained}, more than optim.epochs={epochs}: "
                                 f"set optim.epochs >= {done}")

    def save_state(self, rng_epoch_start: dict | None = None, partial: dict | None = None) -> None:
        """Write ``last.pt`` (and ``log.csv``); a collective call: every rank contributes its RNG state."""
        rng = self.procs.all_gather(capture_rng())
        rng_epoch_start = self.procs.all_gather(rng_epoch_start) if rng_epoch_start is not None else None
        if not self.procs.is_main:
            return
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "model_ema": self.ema.state_dict() if self.ema is not None else None,
            "epoch": self.epoch,
            "step": self.step,
            "num_updates": self.num_updates,
            "partial": partial,
            "rng": rng,
            "rng_epoch_start": rng_epoch_start,
            "history": self.history,
            "test_curve": self.test_curve,
            "teacher_top1": self.teacher_top1,
            "start_top1": self.start_top1,
            "config": self.saved_config,
        }
        atomic_torch_save(state, self.last_path)
        write_log_csv(self.history, self.out / "log.csv")
        if self.test_loader is not None:
            atomic_write_text(json.dumps(self.test_curve) + "\n", self.out / "test_curve.json")

    def load_state(self, state: dict) -> None:
        """Continue from ``state``. The schedule is not restored but rebuilt from the config: timm's
        schedulers are functions of the epoch and update count, and a grown ``optim.epochs`` re-plans it."""
        does_not_fit = f"the training state to resume does not fit model {self.cfg.model.name!r}"
        load_fitting_state_dict(self.model, state["model"], does_not_fit)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError) as e:
            raise LearngeneError(f"{does_not_fit}: its optimizer state {first_line(e)}") from None
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            if state["model_ema"] is not None:
                self.ema.load_state_dict(state["model_ema"])
            else:  # EMA switched on while resuming: start it from the current weights
                self.ema.set(self.model)
        self.epoch, self.step, self.num_updates = state["epoch"], state["step"], state["num_updates"]
        self.history = list(state["history"])
        self.test_curve = list(state["test_curve"])
        self.teacher_top1 = state["teacher_top1"]
        self.start_top1 = state["start_top1"]

    def restore_rank_rng(self, rng_per_rank: list[dict]) -> None:
        if len(rng_per_rank) == self.procs.world_size:
            restore_rng(rng_per_rank[self.procs.rank])
        else:  # resumed on another number of processes: continue reproducibly, though not bitwise
            random_seed(self.cfg.seed + 1000 * self.epoch, self.procs.rank)

    # -- endings --------------------------------------------------------------------------------------

    def finish(self) -> dict:
        final = self.history[-1]
        summary = {
            "model": self.cfg.model.name,
            "teacher": self.cfg.teacher.name,
            "epochs": self.epoch,
            "val_top1": final["val_top1"],
            "val_top5": final["val_top5"],
            "val_loss": final["val_loss"],
            "seconds": sum(row["seconds"] for row in self.history),
            "images_per_s": sum(row["images_per_s"] for row in self.history) / len(self.history),
        }
        if self.start_top1 is not None:
            summary["start_val_top1"] = self.start_top1
        if self.teacher is not None:
            summary["teacher_top1"] = self.teacher_top1
            summary["teacher_seconds"] = self.teacher_clock.read()  # of this process since it (re)started
        if self.ema is not None:
            summary["ema_val_top1"] = final["ema_val_top1"]
        summary.update({k: v for k, v in final.items() if k.startswith("val_top1_w")})
        if self.procs.is_main:
            summary.update(self.paths(artifact=self.save_artifact(summary)))
            atomic_write_text(json.dumps(summary, indent=2) + "\n", self.out / "summary.json")
            print(format_summary(summary), flush=True)
        return summary

    def evaluate_only(self) -> dict:
        if self.cfg.resume:
            raise LearngeneError("optim.epochs=0 only evaluates a model and cannot resume a run: drop resume= or "
                                 "set optim.epochs")
        self.check_fresh_output()
        self.start_writing()
        metrics = evaluate(self.model, self.val_loader, self.device, self.cfg.amp)
        summary = {"model": self.cfg.model.name, "teacher": self.cfg.teacher.name, "epochs": 0, "seconds": 0.0,
                   "val_top1": metrics["top1"], "val_top5": metrics["top5"], "val_loss": metrics["loss"]}
        if self.teacher is not None:
            summary["teacher_top1"] = evaluate(self.teacher, self.val_loader, self.device, self.cfg.amp)["top1"]
        if self.procs.is_main:
            summary["artifact"] = str(self.save_artifact(summary))  # e.g. a pretrained ancestry as a model folder
            atomic_write_text(json.dumps(summary, indent=2) + "\n", self.out / "summary.json")
            print(format_summary(summary), flush=True)
        return summary

    def interrupted(self) -> dict:
        if self.procs.is_main:
            print(f"stopped by SIGTERM at epoch {self.epoch + 1} batch {self.step}: saved {self.last_path}; "
                  "continue with resume=auto", flush=True)
        return {"interrupted": True, "epoch": self.epoch, "step": self.step, "last": str(self.last_path)}

    def save_artifact(self, summary: dict, folder: Path | None = None) -> Path:
        """The Aux-Net's learngene file, or a timm model folder for any other model, in ``folder`` (a snapshot's,
        which leaves the model training where it is) or the run folder (the end: the model moves to the CPU)."""
        model = self.model.cpu() if folder is None else copy.deepcopy(self.model).cpu()
        folder = self.out if folder is None else folder
        folder.mkdir(parents=True, exist_ok=True)
        preprocessing = preprocessing_of(self.cfg.data, self.info)
        if isinstance(model, PooledViT):
            path = folder / "learngene.safetensors"
            extra = {k: summary[k] for k in ("teacher", "epochs", "val_top1", "teacher_top1") if k in summary}
            if self.elastic is not None:  # which widths the expander may narrow to
                extra["elastic"] = self.elastic.metadata()
            save_learngene(model, path, kind=model.learngene_kind, extra=extra, preprocessing=preprocessing)
        else:
            path = folder / "model"
            if path.exists():  # written by an earlier finish of this run (resumed after it ended)
                shutil.rmtree(path)
            save_model_folder(model, path, preprocessing=preprocessing, model_args=get_model_args(model))
        return path

    def paths(self, artifact: Path) -> dict:
        return {"artifact": str(artifact), "last": str(self.last_path), "log": str(self.out / "log.csv"),
                "summary": str(self.out / "summary.json")}


class ForwardClock:
    """Seconds spent in the blocks it times, summed. On CUDA each block is timed with a pair of events that are
    read later (``read``), so timing never makes a training step wait for the GPU."""

    def __init__(self):
        self.seconds = 0.0
        self.pending: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []

    @contextlib.contextmanager
    def __call__(self, device: torch.device) -> Iterator[None]:
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self.pending.append((start, end))
        else:
            start = time.perf_counter()
            yield
            self.seconds += time.perf_counter() - start

    def read(self) -> float:
        """The seconds so far (waits for the last timed CUDA block to finish)."""
        if self.pending:
            self.pending[-1][1].synchronize()
            self.seconds += sum(start.elapsed_time(end) for start, end in self.pending) / 1000
            self.pending.clear()
        return self.seconds


def open_tensorboard(folder: Path):
    """A TensorBoard writer when the tensorboard package is installed, else None (log.csv has the same numbers)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder))


def write_log_csv(history: list[dict], path: Path) -> None:
    columns = list(LOG_COLUMNS) + [k for k in (history[0] if history else {}) if k not in LOG_COLUMNS]
    atomic_write_csv(history, columns, path)


def format_row(row: dict, epochs: int) -> str:
    ema = f" ema_top1 {row['ema_val_top1']:.2f}" if "ema_val_top1" in row else ""
    widths = "".join(f" {k[4:]} {v:.2f}" for k, v in row.items() if k.startswith("val_top1_w"))  # top1_w16 ...
    return (f"epoch {row['epoch']}/{epochs}: train_loss {row['train_loss']:.4f} val_loss {row['val_loss']:.4f} "
            f"val_top1 {row['val_top1']:.2f} val_top5 {row['val_top5']:.2f}{widths}{ema} lr {row['lr']:.3g} "
            f"{row['images_per_s']:.0f} img/s {row['seconds']:.1f} s")


def format_summary(summary: dict) -> str:
    teacher = f" (teacher top1 {summary['teacher_top1']:.2f})" if "teacher_top1" in summary else ""
    before = f" (from {summary['start_val_top1']:.2f} before training)" if "start_val_top1" in summary else ""
    timing = (f" in {summary['seconds']:.1f} s, {summary['images_per_s']:.0f} img/s"
              if summary["epochs"] else "")
    written = f"; wrote {summary['artifact']}" if "artifact" in summary else ""
    return (f"done: {summary['model']} {summary['epochs']} epochs{timing}: val top1 {summary['val_top1']:.2f} "
            f"top5 {summary['val_top5']:.2f} loss {summary['val_loss']:.4f}{before}{teacher}{written}")
