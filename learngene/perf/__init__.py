"""Speed and memory measurements (tools/bench_speed.py, docs/performance.md)."""
