"""The speed sections of ``tools/bench_speed.py``: ``aux`` (Aux-Net step against timm's ViT), ``kd`` (online and
cached distillation), ``toggles`` (SDPA, bf16, fused AdamW, channels-last, torch.compile) and ``expand`` (state-dict
expansion and weight selection against ``torch.save``). Each takes the tool's parsed arguments and returns rows."""
from __future__ import annotations

import multiprocessing
import re
import time
from pathlib import Path

import timm
import torch

from learngene.baselines.weight_selection import select_weights
from learngene.distill import distillation_loss
from learngene.distill.teacher_cache import TeacherLogitCache
from learngene.errors import LearngeneError
from learngene.expand import expand_sws, make_plan
from learngene.methods import count_parameters
from learngene.models import DEFAULT_STAGE_SIZES
from learngene.perf.measure import (PeakRSS, Row, aux_train_flops, ce_loss, counted_forward_flops, create_aux,
                                    interleaved_timings, make_batches, peak_tflops, train_step)

SIZES = ("tiny", "small", "base")
TOGGLES = ("sdpa", "bf16", "fused_adamw", "channels_last", "compile")


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

    peak = peak_tflops(device, args.peak_tflops)
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
