"""Timing, FLOP and memory primitives of the speed measurements: compared steps timed in interleaved rounds with
paired ratios, pooled-ViT FLOPs by formula and by FlopCounterMode, peak resident memory, and the result rows."""
from __future__ import annotations

import dataclasses
import itertools
import math
import os
import platform
import statistics
import threading
import time
from pathlib import Path
from typing import Callable

import timm
import torch
from timm.optim import create_optimizer_v2

from learngene.checkpoint import atomic_write_csv
from learngene.distill import classification_loss

# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets; the first name found in the device name wins.
BF16_PEAK_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.4, "H200": 989.4, "GH200": 989.4, "A100": 312.0,
                    "L40S": 362.0, "A10G": 70.0, "L4": 121.0}
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


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                  if line.startswith("model name")), None) if cpuinfo.exists() else None
    return f"{model or platform.processor() or 'CPU'}, {torch.get_num_threads()} threads"


def peak_tflops(device: torch.device, given: float | None) -> float | None:
    """The bf16 dense peak MFU is taken against: ``given``, else the data sheet's for the device's name, else None."""
    return given or next((v for k, v in BF16_PEAK_TFLOPS.items() if k in device_name(device)), None)


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
