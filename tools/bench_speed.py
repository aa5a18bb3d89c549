"""Measure what learngene training costs, as ratios of runs timed side by side in one process.

    python tools/bench_speed.py --quick --csv runs/bench/cpu-quick.csv            # CPU, under a minute
    python tools/bench_speed.py --csv runs/bench/cpu.csv                          # CPU, adds torch.compile
    python tools/bench_speed.py --device cuda --model base --csv runs/bench/gpu.csv   # 224 px, batch 256, bf16

The sections and how they are timed: learngene/perf/speed.py; numbers and formulas: docs/performance.md.
"""
from learngene.perf.speed import main

if __name__ == "__main__":
    raise SystemExit(main())
