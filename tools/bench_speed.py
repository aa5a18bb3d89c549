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
The measuring code is ``learngene.perf``. Formulas and measured numbers: docs/performance.md.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import timm
import torch

from learngene.cli import entry_point, tool_parser
from learngene.errors import LearngeneError
from learngene.perf.check import PRESETS, bench_check
from learngene.perf.measure import device_name, print_table, write_csv
from learngene.perf.sections import SECTIONS, SIZES


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
