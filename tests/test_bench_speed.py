"""tools/bench_speed.py --preset: the GPU check refuses cleanly without CUDA, and its code (learngene.perf.check) runs
at CPU scale."""
import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import timm

import learngene  # noqa: F401  (registers the Aux-Nets)
from learngene.perf.measure import aux_train_flops
from learngene.tools import bench_speed as speed

ROOT = Path(__file__).resolve().parents[1]

LOOPS = ["Aux-B online KD", "Aux-B cached KD", "Des-B fine-tune", "timm vit_tiny 16 layers (reference)"]


def test_gpu_check_without_cuda_is_one_error_line():
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "tools/bench_speed.py", "--device", "cuda", "--preset", "check"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == ("error: --device cuda but no CUDA device is visible: run with --device cpu or on a GPU "
                           "machine\n")


def test_tiny_check_runs_the_recipes_step_loops(tmp_path):
    """--preset check's code path (the shipped recipes through Run.train_step, the loader, FLOP counting) at CPU
    scale; --peak-tflops gives the CPU an MFU row."""
    table = tmp_path / "check.csv"
    assert speed.main(["--preset", "check-tiny", "--workers", "1", "--peak-tflops", "1", "--csv", str(table)]) == 0
    rows = {r["measurement"]: r for r in csv.DictReader(table.open())}
    expected = ["loader, 1 workers: images/s", "loader, 1 workers: images/s per worker", "loader, main process: images/s"]
    for loop in LOOPS:
        expected += [f"{loop}, eager: images/s", f"{loop}, eager: peak memory"]
        expected += [f"{loop}, eager: teacher forward share"] if loop == LOOPS[0] else []
        expected += [f"{loop}, eager: MFU"]
    assert list(rows) == expected
    value = {name: float(r["value"]) for name, r in rows.items()}
    assert all(value[name] > 0 for name in expected if name.endswith("images/s"))
    assert all(math.isnan(value[f"{loop}, eager: peak memory"]) for loop in LOOPS)  # CUDA only
    assert 0 < value["Aux-B online KD, eager: teacher forward share"] < 100

    # MFU = images/s x counted FLOPs per image / 1 TFLOP/s: the Aux-Net's count is the FLOP formula's (3 x forward),
    # online distillation adds the teacher's forward, and the 12-layer Des-Net counts 12 of the 16 layers.
    flops = {loop: value[f"{loop}, eager: MFU"] / 100 * 1e12 / value[f"{loop}, eager: images/s"] for loop in LOOPS}
    aux = timm.create_model("sws_aux_vit_tiny_patch16_224", img_size=64, num_classes=4)
    formula = aux_train_flops(aux, 64)
    assert abs(flops["Aux-B cached KD"] / formula - 1) < 0.01
    assert flops["Aux-B online KD"] > 1.02 * flops["Aux-B cached KD"]
    assert abs(flops["Des-B fine-tune"] / (formula * 12 / 16) - 1) < 0.01
