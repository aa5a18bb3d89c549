"""``tools/bench_speed.py --preset check``: one GPU's health through the shipped ImageNet recipes' own step loops
(``Run.train_step`` of the training engine) on synthetic 224 px JPEGs through the project's data loader: the
loader alone, Aux-B with online and with cached teacher logits, a Des-B fine-tune and timm's ViT with 16 layers as
the reference, each eager and compiled: images/s, peak memory and MFU. ``check-tiny`` is the same code at CPU scale."""
from __future__ import annotations

import dataclasses
import gc
import itertools
import json
import math
import multiprocessing
import os
import threading
import time
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image
from timm.utils import random_seed

from learngene.config import TrainConfig, load_config
from learngene.data import build_loaders
from learngene.engine.distributed import init_processes
from learngene.engine.trainer import Run
from learngene.errors import LearngeneError
from learngene.models import DEFAULT_STAGE_SIZES, des_architecture
from learngene.perf.measure import Row, peak_tflops, synchronize

IMAGENET_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "imagenet"


@dataclasses.dataclass(frozen=True)
class CheckPreset:
    """One ``--preset``: the shipped recipes' step loops at this scale (``bench_check``)."""

    model: str  # Aux-Net width: sws_aux_vit_<model>_patch16_224, its Des-Net and the timm ViT reference
    img_size: int
    batch: int
    teacher: str
    classes: int  # of the synthetic image folder: images_per_class training images each (and one val image)
    images_per_class: int
    held_batches: int  # loader batches held in memory and cycled by the timed step loops
    warmup: int  # untimed steps (compilation happens here)
    steps: int  # timed steps
    modes: tuple[str, ...]  # eager, compiled


PRESETS = {
    # One GPU with the recipes' settings at batch 256 (the reference's), 2,048 training images (8 batches), the
    # configs' 10 loader workers; sized for 8 minutes, most of them compiling (an estimate: not yet run on a GPU).
    "check": CheckPreset("base", 224, 256, "levit_384", 256, 8, 4, 4, 12, ("eager", "compiled")),
    # The same code path at CPU scale for the tests (no torch.compile: minutes of inductor on a small CPU).
    "check-tiny": CheckPreset("tiny", 64, 4, "levit_128s", 4, 4, 2, 1, 1, ("eager",)),
}


def write_jpeg(job: tuple[Path, int, int]) -> None:
    path, seed, img_size = job
    rng = np.random.default_rng(seed)
    width, height = (int(img_size * f) for f in rng.uniform(1.1, 1.5, 2))  # larger than the crop, unequal
    ramp = np.linspace(0, 255, width)[None, :, None] * rng.uniform(0.2, 1.0, 3)
    pixels = np.clip(ramp + rng.normal(0, 30, (height, width, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def write_image_folder(root: Path, preset: CheckPreset, processes: int) -> Path:
    """A synthetic ImageNet-like folder: ``train/`` (``images_per_class`` per class after the configs' 1% val
    holdout, which keeps one image of each class out) and ``val/`` (one per class)."""
    jobs = []
    for c in range(preset.classes):
        for split, count in (("train", preset.images_per_class + 1), ("val", 1)):
            folder = root / split / f"class{c:04d}"
            folder.mkdir(parents=True)
            jobs += [(folder / f"{i}.JPEG", len(jobs), preset.img_size) for i in range(count)]
    with multiprocessing.get_context("fork").Pool(max(processes, 1)) as pool:
        pool.map(write_jpeg, jobs, chunksize=16)
    return root


def check_configs(preset: CheckPreset, args, root: Path, workers: int, tmp_dir: Path) -> dict[str, TrainConfig]:
    """The shipped recipes (``configs/imagenet``) on the synthetic folder at the preset's width, image size and batch;
    the teacher from timm's init (no download). ``cached`` replays the teacher cache ``online`` would record."""
    aux_name = f"sws_aux_vit_{preset.model}_patch16_224"
    size = preset.img_size
    data = [f"data.root={root}", f"data.img_size={size}", f"data.batch_size={preset.batch}",
            f"data.num_workers={workers}", f"device={args.device}"]
    kd = [f"model.name={aux_name}", f"model.kwargs.img_size={size}", f"teacher.name={preset.teacher}",
          "teacher.pretrained=false", f"teacher.kwargs.img_size={size}", f"teacher.kwargs.num_classes={preset.classes}"]
    with torch.device("meta"):
        des_args = timm.create_model(aux_name, img_size=size).des_model_args(12)
    des_args.pop("num_classes")  # the data's
    reference = {"depth": sum(DEFAULT_STAGE_SIZES), "img_size": size}  # the Aux-B's 16 applied layers
    runs = {
        "online": ("aux_b", [*kd, f"output={tmp_dir / 'online'}"]),
        "cached": ("aux_b", [*kd, f"distill.teacher_cache={tmp_dir / 'teacher-cache'}", f"output={tmp_dir / 'cached'}"]),
        "des": ("des_finetune", [f"model.name={des_architecture(aux_name)}", "model.pretrained=false",
                                 f"model.kwargs={json.dumps(des_args)}", f"output={tmp_dir / 'des'}"]),
        "vit": ("des_finetune", [f"model.name=vit_{preset.model}_patch16_224", "model.pretrained=false",
                                 f"model.kwargs={json.dumps(reference)}", f"output={tmp_dir / 'vit'}"]),
    }
    return {name: load_config(IMAGENET_CONFIGS / f"{recipe}.yaml", [*data, *overrides], TrainConfig)
            for name, (recipe, overrides) in runs.items()}


def check_run(cfg: TrainConfig) -> Run:
    """A training run ready for ``train_step``, set up as ``learngene.engine.trainer.train`` sets it up."""
    random_seed(cfg.seed, 0)  # as train(): every run of a recipe builds the same teacher (one teacher cache fits all)
    run = Run(cfg, init_processes(cfg.device))
    run.build_optimization()
    run.open_teacher_cache()
    run.train_model.train()
    run.train_loader.sampler.set_epoch(0)
    return run


def run_steps(run: Run, batches: list, steps: range) -> None:
    """``Run.train_step`` on the held loader batches in turn; step ``i`` replays cached step ``i % len(batches)``."""
    never = threading.Event()  # no SIGTERM
    for i in steps:
        images, targets = batches[i % len(batches)]
        # A copy, as train_step's .to(device) makes for a GPU: Mixup/CutMix mix a batch in place.
        run.train_step(i % len(batches), images.to(run.device, non_blocking=True, copy=True), targets, never)


def counted_train_flops(run: Run, img_size: int) -> float:
    """FLOPs per image of a training step as FlopCounterMode counts them on one image: the student's forward and
    backward (math attention, so every matmul is visible) and, without a teacher cache, the teacher's forward."""
    from torch.utils.flop_counter import FlopCounterMode

    attention = {m: m.fused_attn for m in run.model.modules() if hasattr(m, "fused_attn")}
    for m in attention:
        m.fused_attn = False
    images = torch.randn(1, 3, img_size, img_size, device=run.device)
    with FlopCounterMode(display=False) as counter:
        run.model(images).float().sum().backward()
        if run.teacher is not None and run.teacher_cache is None:
            with torch.no_grad():
                run.teacher(images)
    run.model.zero_grad(set_to_none=True)
    for m, fused in attention.items():
        m.fused_attn = fused
    return counter.get_total_flops()


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def bench_check(preset: CheckPreset, args, device: torch.device, tmp_dir: Path) -> list[Row]:
    """Images/s, peak memory and MFU of the recipes' step loops, and the loader's rate (``--preset``)."""
    workers = min(10, os.cpu_count() or 1) if args.workers is None else args.workers
    start = time.perf_counter()
    root = write_image_folder(tmp_dir / "images", preset, min(16, os.cpu_count() or 1))
    print(f"[check] wrote {preset.classes * (preset.images_per_class + 2)} JPEGs in "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    configs = check_configs(preset, args, root, workers, tmp_dir)
    peak = peak_tflops(device, args.peak_tflops)
    rows = loader_rows(configs["online"], workers)

    recording = check_run(configs["cached"])  # the first run of a cache folder records the teacher's outputs
    held = list(itertools.islice(iter(recording.train_loader), preset.held_batches))
    run_steps(recording, held, range(len(held)))
    recording.teacher_cache.finish_epoch(0)
    del recording
    labels = {"online": "Aux-B online KD", "cached": "Aux-B cached KD", "des": "Des-B fine-tune",
              "vit": f"timm vit_{preset.model} 16 layers (reference)"}
    for mode in preset.modes:
        for name, cfg in configs.items():
            cfg = dataclasses.replace(cfg, compile=mode == "compiled")
            loop_start = time.perf_counter()
            run = check_run(cfg)
            flops = counted_train_flops(run, preset.img_size)
            batches = list(itertools.islice(iter(run.train_loader), preset.held_batches))
            run_steps(run, batches, range(preset.warmup))
            synchronize(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            teacher_before, timed = run.teacher_clock.read(), time.perf_counter()
            run_steps(run, batches, range(preset.warmup, preset.warmup + preset.steps))
            synchronize(device)
            seconds = time.perf_counter() - timed
            images_per_s = preset.steps * preset.batch / seconds
            teacher_seconds = run.teacher_clock.read() - teacher_before  # CUDA events on a GPU, as in training
            if name == "cached" and run.teacher_clock.read() > 0:
                raise LearngeneError("the cached KD loop ran its teacher: the teacher cache was not replayed")
            memory = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else math.nan
            label = f"{labels[name]}, {mode}"
            shape = (f"{cfg.model.name}, batch {preset.batch}, {preset.img_size}px, amp {cfg.amp}, {preset.steps} "
                     f"steps after {preset.warmup}")
            rows += [Row("check", f"{label}: images/s", images_per_s, "img/s", note=shape),
                     Row("check", f"{label}: peak memory", memory, "GiB",
                         note="torch.cuda.max_memory_allocated" if device.type == "cuda" else "CUDA only")]
            if name == "online":
                rows.append(Row("check", f"{label}: teacher forward share", 100 * teacher_seconds / seconds, "%",
                                note="of the step time, timed by the training engine's ForwardClock"))
            if peak:
                rows.append(Row("check", f"{label}: MFU", 100 * images_per_s * flops / (peak * 1e12), "%",
                                note=f"{flops / 1e9:.1f} GFLOP/image counted, of {peak:g} TFLOP/s bf16"))
            print(f"[check] {label}: {images_per_s:.0f} img/s in {time.perf_counter() - loop_start:.0f} s", flush=True)
            del run
            free_memory(device)
    return rows


def loader_rows(cfg: TrainConfig, workers: int) -> list[Row]:
    """The training loader alone: every batch of an epoch with ``workers`` worker processes (worker start included),
    and two batches in the main process (one process's rate)."""
    rows = []
    for count in sorted({workers, 0}, reverse=True):
        data = dataclasses.replace(cfg.data, num_workers=count)
        loader = build_loaders(data, seed=cfg.seed)[0]
        loader.sampler.set_epoch(0)
        start, images = time.perf_counter(), 0
        for batch, _ in itertools.islice(loader, None if count else 2):
            images += len(batch)
        rate = images / (time.perf_counter() - start)
        if count:
            rows += [Row("check", f"loader, {count} workers: images/s", rate, "img/s",
                         note=f"one epoch of {images} images, worker start included"),
                     Row("check", f"loader, {count} workers: images/s per worker", rate / count, "img/s")]
        else:
            rows.append(Row("check", "loader, main process: images/s", rate, "img/s",
                            note="one process decoding and augmenting: the most a worker can do"))
    return rows
