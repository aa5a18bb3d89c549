"""The run folder (``cfg.output``): one live run at a time, nothing written before a run is accepted.

A run takes an exclusive ``flock`` on ``OUTPUT/.lock`` (which holds its pid, for the message a second run
gets). The kernel drops the lock when the process ends however it ends, so the lock file a killed run
leaves behind is simply taken over. While holding the lock a run may remove what an earlier run of this
folder left half-written: the temporary files and folders of the atomic writers (``.last.pt.*.tmp``,
``.model.*.tmp/``, ...), which only a live writer can still be using.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from pathlib import Path
from typing import Iterator

from learngene.engine.distributed import Processes
from learngene.checkpoint import file_on_path
from learngene.errors import LearngeneError

LOCK_NAME = ".lock"
# What a run writes; a folder holding any of them belongs to a run.
RUN_FILES = ("config.yaml", "last.pt", "log.csv", "summary.json", "model", "learngene.safetensors", "tensorboard",
             "test_curve.json")


def check_output_path(out: Path) -> None:
    """Refuse an output that is a file or lies below one, before anything is created."""
    blocker = file_on_path(out)
    if blocker is not None:
        below = "is" if blocker == out.absolute() else f"lies below {blocker}, which is"
        raise LearngeneError(f"output {out} {below} a file, not a folder: choose another output=")


def check_fresh_output(out: Path, resume: str) -> None:
    """A fresh run starts in a folder without run files, or (with ``resume=auto``) in one whose run
    stopped before its first checkpoint, i.e. holding only ``config.yaml``."""
    existing = existing_run_files(out)
    if not existing or (resume == "auto" and existing == ["config.yaml"]):
        return
    if "last.pt" in existing:
        advice = "pass resume=auto to continue it, or choose another output="
    elif existing == ["config.yaml"]:
        advice = ("it stopped before its first epoch ended: pass resume=auto to start it again, or choose "
                  "another output=")
    else:
        advice = "it has no last.pt to resume: choose another output="
    raise LearngeneError(f"{out} already holds a run ({', '.join(existing)}): {advice}")


@contextlib.contextmanager
def locked_run_folder(out: Path, procs: Processes) -> Iterator[None]:
    """Hold ``out`` for this run (rank 0 takes the lock, every rank agrees on the outcome).

    Folders this call created are removed again on exit if the run wrote nothing into them, so a refused
    run leaves no trace.
    """
    check_output_path(out)
    created = [p for p in (out, *out.parents) if not p.exists()]
    error, lock_fd = None, None
    if procs.is_main:
        out.mkdir(parents=True, exist_ok=True)
        try:
            lock_fd = take_lock(out / LOCK_NAME)
        except LearngeneError as e:
            error = e
    try:
        if procs.any([error is not None])[0]:
            raise error or LearngeneError(f"output {out} is in use by another run: see rank 0's error")
        yield
    finally:
        if lock_fd is not None:
            os.remove(out / LOCK_NAME)  # while still locked: a run waiting on this file will see it is gone
            os.close(lock_fd)
        if procs.is_main:
            for folder in created:  # innermost first
                with contextlib.suppress(OSError):  # not empty: the run wrote something
                    folder.rmdir()


def take_lock(path: Path) -> int:
    """An exclusive ``flock`` on ``path`` (created if needed), holding this process's pid; its descriptor."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LearngeneError(f"output {path.parent} is in use by another run (pid {holder}): wait for it to "
                                 "end or choose another output=") from None
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        os.close(fd)  # the previous holder removed the file between our open and our lock: open it again
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def existing_run_files(out: Path) -> list[str]:
    return [name for name in RUN_FILES if (out / name).exists()]


def remove_orphans(out: Path) -> list[Path]:
    """Remove the temporaries of atomic writes that a killed run of ``out`` left behind; return them."""
    orphans = sorted(p for name in RUN_FILES for p in out.glob(f".{name}.*.tmp"))
    for path in orphans:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    return orphans
