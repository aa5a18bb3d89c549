"""Measure what learngene training costs, as ratios of runs timed side by side in one process.

    python tools/bench_speed.py --quick --csv runs/bench/cpu-quick.csv            # CPU, under a minute
    python tools/bench_speed.py --csv runs/bench/cpu.csv                          # CPU, adds torch.compile
    python tools/bench_speed.py --device cuda --model base --csv runs/bench/gpu.csv   # 224 px, batch 256, bf16

Sections (``--sections``, default all):

* ``aux``: SWS Aux-Net training step (forward, backward, AdamW) vs a timm ``VisionTransformer`` of the same
  applied depth (16), width and batch. Target ratio <= 1.03.
* ``kd``: student-only step vs online distillation (teacher forward under no_grad + student step) vs
  distillation from the teacher-logit cache (``learngene.distill.teacher_cache``). Target cached <= 1.1x.
* ``toggles``: SDPA attention, bf16 autocast, fused AdamW, channels-last input, torch.compile, each alone and
  all together, vs a plain fp32 eager baseline; images/s and, on CUDA, MFU of the bf16 dense peak.
* ``expand``: SWS expansion of an Aux-B learngene to a 12-layer Des-B and weight selection ViT-B -> ViT-S,
  time vs ``torch.save`` of the result (target <= 3x) and peak extra memory vs the result's size (target <= 2).

Timing rounds of the compared steps are interleaved (in alternating order) after a warm-up, so load from other
processes slows all of them alike; times are medians over rounds, ratios the median of the per-round ratios (with
their interquartile range). On a shared CPU, ``--threads 1`` keeps other processes from stalling torch's threads.
Formulas and measured numbers: docs/performance.md.
"""
from __future__ import annotations

import dataclasses
import itertools
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

import timm
import torch
from timm.optim import create_optimizer_v2

from learngene.baselines.weight_selection import select_weights
from learngene.checkpoint import atomic_write_csv
from learngene.cli import entry_point, tool_parser
from learngene.distill import classification_loss, distillation_loss
from learngene.distill.teacher_cache import TeacherLogitCache
from learngene.errors import LearngeneError
from learngene.expand import expand_sws, make_plan
from learngene.methods import count_parameters
from learngene.models import DEFAULT_STAGE_SIZES

SIZES = ("tiny", "small", "base")
# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets; the first name found in the device name wins.
BF16_PEAK_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.4, "H200": 989.4, "GH200": 989.4, "A100": 312.0,
                    "L40S": 362.0, "A10G": 70.0, "L4": 121.0}
TOGGLES = ("sdpa", "bf16", "fused_adamw", "channels_last", "compile")
CSV_COLUMNS = ("device", "section", "measurement", "value", "unit", "target", "status", "note")


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
        for section in args.sections:
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
