"""Stopping a benchmark that runs on worker processes: SIGTERM, Ctrl-C (SIGINT) and SIGKILL to its driver leave no
process of it behind, and the same command then finishes with the results of a run that never stopped."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from learngene.tools import benchmark
from test_benchmark import ACCURACY, ROOT, read_csv, write_configs

ANCESTRY_EPOCHS = "ancestry.overrides=[optim.epochs=30]"  # long enough to be stopped while it trains


def children(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie that only waits for its parent to read its exit status."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def workers(pids: set[int]) -> set[int]:
    """The worker processes among ``pids`` (not multiprocessing's resource tracker, which ends once they have)."""
    return {pid for pid in pids if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()}


def wait_until(condition, limit: float = 120.0) -> bool:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def start_and_stop(args: list[str], log: Path, signum: int) -> tuple[subprocess.CompletedProcess, set[int], set[int]]:
    """Start the benchmark in a process of its own, send ``signum`` to it once the ancestry has trained an epoch
    more than before, and return how it ended, the processes it had started and which of them were workers."""
    before = log.stat().st_mtime_ns if log.exists() else None
    driver = subprocess.Popen([sys.executable, str(ROOT / "tools" / "benchmark.py"), *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert wait_until(lambda: log.exists() and log.stat().st_mtime_ns != before)
    started = children(driver.pid)
    pool = workers(started)
    assert len(pool) == 2
    driver.send_signal(signum)
    out, err = driver.communicate(timeout=300)
    return subprocess.CompletedProcess(driver.args, driver.returncode, out, err), started, pool


@pytest.mark.slow
def test_stopped_benchmark_leaves_no_process_and_continues(tmp_path):
    reference = write_configs(tmp_path / "reference", tmp_path / "reference" / "bench", "[sws]", "[0]", "[2]")
    assert benchmark.main([*reference, ANCESTRY_EPOCHS]) == 0

    args = [*write_configs(tmp_path / "stopped", tmp_path / "stopped" / "bench", "[sws]", "[0]", "[2]"),
            ANCESTRY_EPOCHS, "workers=2"]
    out = tmp_path / "stopped" / "bench"
    log = out / "ancestry" / "run" / "log.csv"
    for signum, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        ended, started, pool = start_and_stop(args, log, signum)
        assert ended.returncode == code, ended.stderr
        assert ended.stderr.strip().splitlines() == [
            f"interrupted: the parts that finished are kept in {out} and a stopped training continues from its "
            "last.pt: run the same command again to continue"]
        assert not [pid for pid in pool if alive(pid)]  # the driver waited for its workers
        assert wait_until(lambda: not [pid for pid in started if alive(pid)])
        assert (log.parent / "last.pt").is_file() and not (out / "ancestry" / "done.json").exists()

    ended, started, pool = start_and_stop(args, log, signal.SIGKILL)
    assert ended.returncode == -signal.SIGKILL
    assert wait_until(lambda: not [pid for pid in started if alive(pid)])  # orphaned workers stop by themselves

    assert benchmark.main([*args, "workers=1"]) == 0  # the worker count is not part of any result
    accuracy = [[{k: r[k] for k in ACCURACY} for r in read_csv(folder / "results.csv")]
                for folder in (tmp_path / "reference" / "bench", out)]
    assert accuracy[0] == accuracy[1]
    assert len(read_csv(log)) == 30  # one row per epoch: the stopped trainings continued where they stopped
