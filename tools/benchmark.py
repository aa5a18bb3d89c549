"""Compare SWS with IMwLM, TLEG and the other baselines across Des-Net depths.

    python tools/benchmark.py                                   # embedded digits benchmark, CPU
    python tools/benchmark.py --preset quick                    # depths 6 and 12, fewer epochs
    python tools/benchmark.py --preset grid                     # depth x width grid, elastic learngene
    python tools/benchmark.py --preset transfer                 # new downstream task, curves over epochs
    python tools/benchmark.py --depths 6,9,12 --methods sws,tleg,weight-selection --finetune-epochs 2
    torchrun --nproc-per-node 8 tools/benchmark.py --config configs/benchmark/imagenet_des_b.yaml data.root=...
    python tools/benchmark.py --config configs/benchmark/imagenet_des_b.yaml executor=slurm slurm.partition=gpu
    python tools/benchmark.py --config configs/benchmark/imagenet_des_b.yaml --plan  # jobs, GPU-hours; no submit

Writes results.csv (one row per measurement on the test split), summary.csv, verdicts.csv, learngenes.csv,
results.md (tables, paired verdicts, the paper's claims checked) and PNG plots into the config's output
folder, and ends with the tables on the console. Every finished part is cached there: run the same command
again to continue an interrupted benchmark. See docs/benchmark.md, and docs/cluster.md for executor=slurm.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from learngene.benchmark import Benchmark, BenchmarkConfig, TransferBenchmark
from learngene.benchmark.plan import plan
from learngene.cli import entry_point, tool_parser
from learngene.config import load_config
from learngene.errors import LearngeneError
from learngene.slurm import refuse_slurm_settings_without_slurm

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "benchmark"
PRESETS = {"default": CONFIGS / "digits.yaml", "quick": CONFIGS / "digits_quick.yaml",
           "grid": CONFIGS / "digits_grid.yaml", "transfer": CONFIGS / "digits_transfer.yaml",
           **{name: CONFIGS / f"{name}.yaml" for name in ("mnist", "fashion_mnist", "cifar10", "cifar100")}}


def int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x]
    except ValueError:
        raise LearngeneError(f"--depths {text!r} must be comma-separated integers, e.g. 6,9,12") from None


def parse_args(argv):
    parser = tool_parser(__doc__, "benchmark.py")
    parser.add_argument("--config", default=None, help="benchmark YAML (default: the preset's)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="default: digits, depths 6-15; quick: digits, depths 6 and 12, fewer epochs; grid: "
                             "digits, depths x widths with the elastic learngene (docs/width.md); transfer: upstream digits 0-4, "
                             "downstream 5-9, curves over epochs (docs/transfer.md); mnist, "
                             "fashion_mnist, cifar10, cifar100: torchvision data under ./data (docs/datasets.md)")
    parser.add_argument("--depths", default=None, help="comma-separated Des-Net depths, e.g. 6,9,12")
    parser.add_argument("--methods", default=None, help="comma-separated methods, e.g. sws,tleg,weight-selection")
    parser.add_argument("--finetune-epochs", type=int, default=None, help="epochs of the short fine-tune")
    parser.add_argument("--plan", action="store_true",
                        help="print the Slurm jobs, what each waits for and the GPU-hours the config implies; "
                             "submit and train nothing (docs/cluster.md)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="benchmark config overrides, e.g. output=runs/bench seeds=[0,1,2]; data.* keys go to "
                             "every training part, e.g. data.root=/my/data data.download=true. Keys (see "
                             "learngene/benchmark/config.py): "
                             + ", ".join(f.name for f in dataclasses.fields(BenchmarkConfig)))
    return parser.parse_intermixed_args(argv)  # key=value before, between or after the options


@entry_point
def main(argv=None) -> int:
    args = parse_args(argv)
    overrides = [o for o in args.overrides if not o.startswith("data.")]
    if args.depths:
        overrides.append(f"depths=[{','.join(map(str, int_list(args.depths)))}]")
    if args.methods:
        overrides.append(f"methods=[{args.methods}]")
    if args.finetune_epochs is not None:
        overrides.append(f"finetune_epochs={args.finetune_epochs}")
    if args.config and args.preset:
        raise LearngeneError(f"--preset {args.preset} and --config {args.config} both name the benchmark config: "
                             "give one of them")
    cfg = load_config(args.config or PRESETS[args.preset or "default"], overrides, BenchmarkConfig)
    if args.depths and not any(o.startswith("trained_depths=") for o in overrides):
        # the config's Trained references follow --depths (the ones among them, or all of them)
        cfg.trained_depths = [d for d in cfg.trained_depths if d in cfg.depths]
    cfg.part_overrides += [o for o in args.overrides if o.startswith("data.")]
    if args.plan:
        print(plan(cfg))
        return 0
    refuse_slurm_settings_without_slurm(overrides, cfg.executor)  # --plan reads them whatever the executor
    result = (TransferBenchmark if cfg.downstream else Benchmark)(cfg).run()
    if "console" in result:  # rank 0
        stages = ", ".join(f"{k} {v:.0f}s" for k, v in result["wall_seconds"].items())
        print(f"\n{result['console']}\n\nbenchmark done: {result['results_md']} ({stages})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
