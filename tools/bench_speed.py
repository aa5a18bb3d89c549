"""Measure what learngene training costs, as ratios of runs timed side by side in one process.

    python tools/bench_speed.py --quick --csv runs/bench/cpu-quick.csv            # CPU, under a minute
    python tools/bench_speed.py --csv runs/bench/cpu.csv                          # CPU, adds torch.compile
    python tools/bench_speed.py --device cuda --model base --csv runs/bench/gpu.csv   # 224 px, batch 256, bf16
    python tools/bench_speed.py --device cuda --preset check                    # one GPU's health (README)

Sections (``--sections``, default all):

* ``aux``: SWS Aux-Net training step (forward, backward, AdamW) vs a timm ``VisionTransformer`` of the same
  applied depth (16), width and batch. Target ratio <= 1.03.
* ``kd``: student-only step vs online distillation (teacher forward under no_grad + student step) vs
  distillation from the teacher-logit cache (``learngene.distill.teacher_cache``). Target cached <= 1.1x.
* ``toggles``: SDPA attention, bf16 autocast, fused AdamW, channels-last input, torch.compile, each alone and
  all together, vs a plain fp32 eager baseline; images/s and, on CUDA, MFU of the bf16 dense peak.
* ``expand``: SWS expansion of an Aux-B learngene to a 12-layer Des-B and weight selection ViT-B -> ViT-S,
  time vs ``torch.save`` of the result (target <= 3x) and peak extra memory vs the result's size (target <= 2).

``--preset check`` (``--device cuda``) replaces the sections with one check of a GPU, sized for 8 minutes (not
yet run on a GPU): the shipped ImageNet recipes' training steps (``Run.train_step`` of the training engine, bf16,
the DeiT augmentation) on synthetic 224 px JPEGs through the project's data loader: the loader alone (images/s
per worker), an Aux-B step loop with online and with cached teacher logits, a Des-B fine-tune and plain timm
ViT-B with 16 layers (the reference), each eager and compiled: images/s, peak memory, MFU from FlopCounterMode's
count. ``--preset check-tiny`` runs the same code at CPU scale (tiny width, 64 px, eager) for the tests. README:
what a healthy GPU shows.

Timing rounds of the compared steps are interleaved (in alternating order) after a warm-up, so load from other
processes slows all of them alike; times are medians over rounds, ratios the median of the per-round ratios (with
their interquartile range). On a shared CPU, ``--threads 1`` keeps other processes from stalling torch's threads.
Formulas and measured numbers: docs/performance.md.
"""
from __future__ import annotations

import dataclasses
import gc
import itertools
import json
import math
import multiprocessing
import os
import platform
import re
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import timm
import torch
from PIL import Image
from timm.optim import create_optimizer_v2
from timm.utils import random_seed

from learngene.baselines.weight_selection import select_weights
from learngene.checkpoint import atomic_write_csv
from learngene.cli import entry_point, tool_parser
from learngene.config import TrainConfig, load_config
from learngene.data import build_loaders
from learngene.distill import classification_loss, distillation_loss
from learngene.distill.teacher_cache import TeacherLogitCache
from learngene.engine.distributed import init_processes
from learngene.engine.trainer import Run
from learngene.errors import LearngeneError
from learngene.expand import expand_sws, make_plan
from learngene.methods import count_parameters
from learngene.models import DEFAULT_STAGE_SIZES, des_architecture

SIZES = ("tiny", "small", "base")
# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets; the first name found in the device name wins.
BF16_PEAK_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.4, "H200": 989.4, "GH200": 989.4, "A100": 312.0,
                    "L40S": 362.0, "A10G": 70.0, "L4": 121.0}
TOGGLES = ("sdpa", "bf16", "fused_adamw", "channels_last", "compile")
CSV_COLUMNS = ("device", "section", "measurement", "value", "unit", "target", "status", "note")
IMAGENET_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "imagenet"


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


@dataclasses.dataclass
class Row:
    section: str
    name: str
    value: float
    unit: str
    target: float | None = None  # an upper bound the value should meet
    note: str = ""

    @property
    def status(self) -> str:
        if self.target is None or math.isnan(self.value):
            return ""
        return "ok" if self.value <= self.target else "MISSED"


def parse_args(argv):
    parser = tool_parser(__doc__, "bench_speed.py")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="check: one GPU's health instead of the sections (with --device cuda; described "
                             "above); check-tiny: the same at CPU scale")
    parser.add_argument("--workers", type=int, default=None,
                        help="--preset: data loader workers (default: the configs' 10, at most the CPU count)")
    parser.add_argument("--quick", action="store_true", help="small images and few rounds; no torch.compile on CPU")
    parser.add_argument("--csv", default=None, help="write every row to this CSV file")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {', '.join(SECTIONS)} (default all; described below)")
    parser.add_argument("--model", choices=SIZES, default=None, help="Aux-Net width (default: base on cuda, tiny on cpu)")
    parser.add_argument("--batch", type=int, default=None, help="images per step (default: 256 cuda, 16 cpu)")
    parser.add_argument("--img-size", type=int, default=None, help="default 224 (64 with --quick)")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--amp", choices=("none", "bf16"), default=None,
                        help="autocast of the aux and kd sections (default: bf16 on cuda, none on cpu)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per step kind (default 10, quick 5)")
    parser.add_argument("--steps-per-round", type=int, default=None, help="default 10 on cuda, 1 on cpu")
    parser.add_argument("--teacher", default=None, help="timm teacher (default levit_384; levit_128s with --quick)")
    parser.add_argument("--topk", type=int, default=10, help="logits kept per image by the teacher cache")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="bf16 dense peak for MFU (default: looked up from the CUDA device name)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    parser.add_argument("--tmp-dir", default=None, help="folder for the cache shard and torch.save files")
    args = parser.parse_args(argv)
    cuda = args.device == "cuda"
    defaults = dict(model="base" if cuda else "tiny", batch=256 if cuda else 16,
                    img_size=64 if args.quick else 224, amp="bf16" if cuda else "none", rounds=5 if args.quick else 10,
                    steps_per_round=10 if cuda else 1, teacher="levit_128s" if args.quick else "levit_384")
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.sections = [s for s in args.sections.split(",") if s]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        raise LearngeneError(f"unknown --sections {sorted(unknown)}: choose from {', '.join(SECTIONS)}")
    if cuda and not torch.cuda.is_available():
        raise LearngeneError("--device cuda but no CUDA device is visible: run with --device cpu or on a GPU machine")
    too_small = [f"--{name.replace('_', '-')} {getattr(args, name)}" for name in
                 ("batch", "rounds", "steps_per_round", "topk", "num_classes") if getattr(args, name) < 1]
    if too_small:
        raise LearngeneError(f"{', '.join(too_small)} must be at least 1")
    if args.workers is not None and args.workers < 0:
        raise LearngeneError(f"--workers {args.workers} must be 0 (load in the main process) or more")
    if args.img_size % 16:
        raise LearngeneError(f"--img-size {args.img_size} must be a multiple of the patch size 16")
    return args


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                  if line.startswith("model name")), None) if cpuinfo.exists() else None
    return f"{model or platform.processor() or 'CPU'}, {torch.get_num_threads()} threads"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timings:
    """Seconds per call of every step in every round; each round ran all the steps back to back."""

    def __init__(self, rounds: dict[str, list[float]]):
        self.rounds = rounds

    def median(self, name: str) -> float:
        return statistics.median(self.rounds[name])

    def ratio_row(self, section: str, label: str, numerator: str, denominator: str, target: float | None = None,
                  invert: bool = False) -> Row:
        """The median of the per-round ratios (paired, so load that changes between rounds cancels) and their IQR."""
        ratios = [a / b for a, b in zip(self.rounds[numerator], self.rounds[denominator])]
        if invert:
            ratios = [1 / r for r in ratios]
        q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
        return Row(section, label, statistics.median(ratios), "x", target,
                   note=f"IQR {q1:.3f}-{q3:.3f} over {len(ratios)} rounds")


def interleaved_timings(steps: dict[str, Callable[[], None]], device: torch.device, rounds: int,
                        steps_per_round: int, warmup: int = 2) -> Timings:
    """Time every step in each round, alternating the order, after ``warmup`` untimed calls of each."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    synchronize(device)
    times = {name: [] for name in steps}
    for r in range(rounds):
        for name in (list(steps) if r % 2 == 0 else list(reversed(steps))):
            start = time.perf_counter()
            for _ in range(steps_per_round):
                steps[name]()
            synchronize(device)
            times[name].append((time.perf_counter() - start) / steps_per_round)
    return Timings(times)


def make_batches(args, device: torch.device, count: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A few distinct random batches, cycled by the steps (the cache replays each by its index)."""
    generator = torch.Generator().manual_seed(0)
    shape = (args.batch, 3, args.img_size, args.img_size)
    return [(torch.randn(shape, generator=generator).to(device),
             torch.randint(args.num_classes, (args.batch,), generator=generator).to(device)) for _ in range(count)]


def train_step(model: torch.nn.Module, batches, loss_fn, amp: str, fused: bool = False) -> Callable[[], None]:
    """One optimizer step per call on the next batch; ``loss_fn(index, images, targets)`` runs the model."""
    optimizer = create_optimizer_v2(model, "adamw", lr=5e-4, weight_decay=0.05, **({"fused": True} if fused else {}))
    device_type = batches[0][0].device.type
    counter = itertools.count()

    def step() -> None:
        index = next(counter) % len(batches)
        images, targets = batches[index]
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            loss = loss_fn(index, images, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def create_aux(args, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)  # SWS trains its Aux-Nets with drop-path 0.1; every compared model uses it too
    return timm.create_model(f"sws_aux_vit_{args.model}_patch16_224", img_size=args.img_size,
                             num_classes=args.num_classes, drop_path_rate=0.1).to(device).train()


def vit_forward_flops(depth: int, dim: int, tokens: int, patch_pixels: int, num_classes: int,
                      mlp_ratio: float = 4.0) -> float:
    """Forward FLOPs per image of a pooled ViT (2 per multiply-add; matmuls and the patch conv only).

    Per layer: qkv 6ND^2, q@k^T and attn@v 4N^2D, proj 2ND^2, MLP 4*mlp_ratio*ND^2 (24ND^2 + 4N^2D at ratio 4);
    patch embed 2*N*patch_pixels*D; head 2*D*C. Norms, softmax, GELU and adds are left out (under 1%).
    """
    per_layer = (8 + 4 * mlp_ratio) * tokens * dim ** 2 + 4 * tokens ** 2 * dim
    return depth * per_layer + 2 * tokens * patch_pixels * dim + 2 * dim * num_classes


def aux_train_flops(model, img_size: int) -> float:
    """Training FLOPs per image: forward + backward, the backward costing twice the forward."""
    patch = model.patch_embed.patch_size[0]
    flops = vit_forward_flops(len(model.layer_stages), model.embed_dim, (img_size // patch) ** 2,
                              model.in_chans * patch * patch, model.num_classes, model.mlp_ratio)
    return 3 * flops


def counted_forward_flops(model, img_size: int) -> float:
    """The same count by torch's FlopCounterMode on one image (math attention, so every matmul is visible)."""
    from torch.utils.flop_counter import FlopCounterMode

    attention = {m: m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")}
    for m in attention:
        m.fused_attn = False
    images = torch.randn(1, model.in_chans, img_size, img_size, device=next(model.parameters()).device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(images)
    for m, fused in attention.items():
        m.fused_attn = fused
    return counter.get_total_flops()


def ce_loss(model) -> Callable:
    return lambda index, images, targets: classification_loss(model(images), targets)


def bench_aux(args, device, tmp_dir: Path) -> list[Row]:
    aux = create_aux(args, device)
    depth = len(aux.layer_stages)
    vit_name = f"vit_{args.model}_patch16_224"
    torch.manual_seed(0)
    vit = timm.create_model(vit_name, drop_path_rate=0.1, **aux.des_model_args(depth)).to(device).train()
    batches = make_batches(args, device)
    times = interleaved_timings({"aux": train_step(aux, batches, ce_loss(aux), args.amp),
                                 "vit": train_step(vit, batches, ce_loss(vit), args.amp)},
                                device, args.rounds, args.steps_per_round)
    shape = f"{args.model} width, {depth} applied layers, batch {args.batch}, {args.img_size}px, amp {args.amp}"
    return [Row("aux", f"Aux-Net step ({count_parameters(aux.parameters()) / 1e6:.1f}M params)",
                1e3 * times.median("aux"), "ms", note=shape),
            Row("aux", f"timm {vit_name} depth {depth} step ({count_parameters(vit.parameters()) / 1e6:.1f}M)",
                1e3 * times.median("vit"), "ms"),
            times.ratio_row("aux", "Aux-Net / ViT step time", "aux", "vit", 1.03)]


def bench_kd(args, device, tmp_dir: Path) -> list[Row]:
    student = create_aux(args, device)
    teacher = timm.create_model(args.teacher, img_size=args.img_size, num_classes=args.num_classes).to(device).eval()
    batches = make_batches(args, device)
    cache = TeacherLogitCache(tmp_dir / "teacher-cache", teacher=args.teacher, seed=0, num_classes=args.num_classes,
                              topk=args.topk, data_cfg=dict(img_size=args.img_size, batch=args.batch))

    def teacher_logits(images):
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp == "bf16"):
            return teacher(images)

    record_start = time.perf_counter()
    for index, (images, _) in enumerate(batches):  # what a first, recording run adds per batch
        cache.record(0, index, images, teacher_logits(images))
    shard = cache.finish_epoch(0)
    record_seconds = time.perf_counter() - record_start

    def online_kd(index, images, targets):
        return distillation_loss(student(images), targets, teacher_logits(images), alpha=1.0, tau=1.0)

    def cached_kd(index, images, targets):
        return distillation_loss(student(images), targets, cache.lookup(0, index, images), alpha=1.0, tau=1.0)

    # One student, one AdamW per step kind (each keeps its own state, as separate runs would).
    losses = {"student": ce_loss(student), "online": online_kd, "cached": cached_kd}
    times = interleaved_timings({name: train_step(student, batches, loss, args.amp) for name, loss in losses.items()},
                                device, args.rounds, args.steps_per_round)
    return [Row("kd", "student-only step", 1e3 * times.median("student"), "ms", note=f"teacher {args.teacher}"),
            Row("kd", "online KD step", 1e3 * times.median("online"), "ms"),
            Row("kd", f"cached KD step (top-{args.topk})", 1e3 * times.median("cached"), "ms"),
            times.ratio_row("kd", "online KD / student-only", "online", "student"),
            times.ratio_row("kd", "cached KD / student-only", "cached", "student", 1.1),
            Row("kd", "cache shard size per image", shard.stat().st_size / (len(batches) * args.batch), "bytes",
                note=f"recording {len(batches)} batches (teacher, top-k, write) took {record_seconds:.2f} s")]


def cpu_has_bf16_units() -> bool:
    """AVX512-BF16 or AMX among the CPU flags (Linux); without them CPU bf16 matmuls are emulated, slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return re.search(r"\b(avx512_bf16|amx_tile)\b", flags) is not None


def available_toggles(args, device) -> list[str]:
    skip = set()
    if device.type == "cpu" and not cpu_has_bf16_units():
        skip.add("bf16")
    if device.type == "cpu" and args.quick:
        skip.add("compile")  # minutes of inductor compilation on a small CPU
    return [t for t in TOGGLES if t not in skip]


def bench_toggles(args, device, tmp_dir: Path) -> list[Row]:
    available = available_toggles(args, device)
    variants = {"baseline": set(), **{t: {t} for t in available}, "all": set(available)}
    batches = make_batches(args, device)
    channels_last_batches = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in batches]
    steps = {}
    for name, on in variants.items():
        model = create_aux(args, device)
        if name == "baseline":
            flops = aux_train_flops(model, args.img_size)
            counted = 3 * counted_forward_flops(model, args.img_size)
        for module in model.modules():
            if hasattr(module, "fused_attn"):
                module.fused_attn = "sdpa" in on
        if "channels_last" in on:
            model = model.to(memory_format=torch.channels_last)
        forward = torch.compile(model) if "compile" in on else model
        steps[name] = train_step(model, channels_last_batches if "channels_last" in on else batches, ce_loss(forward),
                                 "bf16" if "bf16" in on else "none", fused="fused_adamw" in on)
    try:
        times = interleaved_timings(steps, device, args.rounds, args.steps_per_round)
    except torch.cuda.OutOfMemoryError:
        raise LearngeneError(f"out of GPU memory at batch {args.batch} (the fp32 baseline without SDPA needs the "
                             "most): run --sections toggles with a smaller --batch") from None

    peak = args.peak_tflops or next((v for k, v in BF16_PEAK_TFLOPS.items() if k in device_name(device)), None)
    skipped = sorted(set(TOGGLES) - set(available))
    rows = [Row("toggles", "train FLOPs per image (formula)", flops / 1e9, "GFLOP",
                note=f"FlopCounterMode: {counted / 1e9:.3f}")]
    for name in variants:
        images_per_s = args.batch / times.median(name)
        note = {"baseline": f"fp32 eager, math attention, AdamW; Aux-{args.model} {args.img_size}px batch {args.batch}",
                "all": "+".join(available) + (f" (skipped here: {', '.join(skipped)})" if skipped else "")}.get(name, "")
        rows.append(Row("toggles", f"{name}: images/s", images_per_s, "img/s", note=note))
        if name != "baseline":
            rows.append(times.ratio_row("toggles", f"{name}: speedup vs baseline", name, "baseline", invert=True))
        if peak:
            rows.append(Row("toggles", f"{name}: MFU", 100 * images_per_s * flops / (peak * 1e12), "%",
                            note=f"of {peak:g} TFLOP/s bf16 dense"))
    return rows


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every millisecond from /proc/self/statm."""

    def __enter__(self) -> "PeakRSS":
        self.base = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def extra(self) -> int:
        return self.peak - self.base


def aux_b_learngene() -> tuple[dict]:
    torch.manual_seed(0)
    return (timm.create_model("sws_aux_vit_base_patch16_224").state_dict(),)


def expand_to_des_b(aux_state: dict) -> dict:
    return expand_sws(aux_state, make_plan(12, DEFAULT_STAGE_SIZES).layer_sources)


def vit_b_and_s() -> tuple[dict, dict]:
    torch.manual_seed(0)
    return (timm.create_model("vit_base_patch16_224").state_dict(),
            timm.create_model("vit_small_patch16_224").state_dict())


# short name: (title, inputs, operation, what it produces)
STATE_OPERATIONS = {"expand": ("SWS expansion Aux-B -> 12-layer Des-B", aux_b_learngene, expand_to_des_b, "Des-B"),
                    "select": ("weight selection ViT-B -> ViT-S", vit_b_and_s, select_weights, "ViT-S")}


def state_bytes(state: dict) -> int:
    return sum(t.numel() * t.element_size() for t in state.values())


def peak_memory_of(short: str) -> tuple[int, int]:
    """(peak extra RSS, result bytes) of one operation. Run in a fresh process: freed memory that the allocator
    kept from earlier work would hide new allocations from RSS."""
    _, make_inputs, operation, _ = STATE_OPERATIONS[short]
    inputs = make_inputs()
    with PeakRSS() as rss:
        result = operation(*inputs)
    return rss.extra, state_bytes(result)


def bench_expand(args, device, tmp_dir: Path) -> list[Row]:
    rows = []
    for short, (title, make_inputs, operation, product) in STATE_OPERATIONS.items():
        inputs = make_inputs()
        result = operation(*inputs)
        path = tmp_dir / "state.pt"
        times = interleaved_timings({"op": lambda: operation(*inputs), "save": lambda: torch.save(result, path)},
                                    torch.device("cpu"), rounds=3 if args.quick else 5, steps_per_round=1, warmup=1)
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            extra, size = pool.apply(peak_memory_of, (short,))
        rows += [Row("expand", f"{short}: {title}", 1e3 * times.median("op"), "ms", note="CPU state dicts"),
                 Row("expand", f"{short}: torch.save of the {product} state ({size / 2 ** 20:.0f} MiB)",
                     1e3 * times.median("save"), "ms", note=f"to {tmp_dir}"),
                 times.ratio_row("expand", f"{short} / torch.save", "op", "save", 3.0),
                 Row("expand", f"{short}: peak extra memory", extra / 2 ** 20, "MiB",
                     note="RSS sampled every ms in a fresh process"),
                 Row("expand", f"{short}: peak extra memory / {product} size", extra / size, "x", 2.0)]
    return rows


SECTIONS = {"aux": bench_aux, "kd": bench_kd, "toggles": bench_toggles, "expand": bench_expand}


# -- --preset check: the shipped ImageNet recipes' own step loops -------------------------------------------------


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
    peak_tflops = args.peak_tflops or next((v for k, v in BF16_PEAK_TFLOPS.items() if k in device_name(device)), None)
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
            peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else math.nan
            label = f"{labels[name]}, {mode}"
            shape = (f"{cfg.model.name}, batch {preset.batch}, {preset.img_size}px, amp {cfg.amp}, {preset.steps} "
                     f"steps after {preset.warmup}")
            rows += [Row("check", f"{label}: images/s", images_per_s, "img/s", note=shape),
                     Row("check", f"{label}: peak memory", peak, "GiB",
                         note="torch.cuda.max_memory_allocated" if device.type == "cuda" else "CUDA only")]
            if name == "online":
                rows.append(Row("check", f"{label}: teacher forward share", 100 * teacher_seconds / seconds, "%",
                                note="of the step time, timed by the training engine's ForwardClock"))
            if peak_tflops:
                rows.append(Row("check", f"{label}: MFU", 100 * images_per_s * flops / (peak_tflops * 1e12), "%",
                                note=f"{flops / 1e9:.1f} GFLOP/image counted, of {peak_tflops:g} TFLOP/s bf16"))
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


def format_value(value: float) -> str:
    return f"{value:.3f}" if abs(value) < 100 else f"{value:,.0f}"


def print_table(rows: list[Row]) -> None:
    table = [("section", "measurement", "value", "unit", "target", "status", "note")]
    table += [(r.section, r.name, format_value(r.value), r.unit, "" if r.target is None else f"<= {r.target:g}",
               r.status, r.note) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(6)]
    for line in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)) + "  " + line[6])


def write_csv(rows: list[Row], path: str, device: str) -> None:
    atomic_write_csv([dict(device=device, section=r.section, measurement=r.name, value=f"{r.value:.6g}", unit=r.unit,
                           target="" if r.target is None else r.target, status=r.status, note=r.note) for r in rows],
                     CSV_COLUMNS, path)


@entry_point
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = device_name(device)
    print(f"device: {name}; torch {torch.__version__}, timm {timm.__version__}; load average {os.getloadavg()[0]:.2f}")
    rows = []
    with tempfile.TemporaryDirectory(dir=args.tmp_dir) as tmp:
        if args.preset:
            rows = bench_check(PRESETS[args.preset], args, device, Path(tmp))
        for section in [] if args.preset else args.sections:
            start = time.perf_counter()
            rows += SECTIONS[section](args, device, Path(tmp))
            print(f"[{section}] done in {time.perf_counter() - start:.0f} s", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}\n")
    print_table(rows)
    if args.csv:
        write_csv(rows, args.csv, name)
        print(f"\nwrote {args.csv}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
