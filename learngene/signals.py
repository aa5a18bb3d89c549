"""Every signal handler of the package, in one place: SIGTERM (preemption, ``kill``, ``scancel``) either raises where
Ctrl-C raises, so that the same cleanup runs (``sigterm_raises``: the tools, a benchmark job, the Slurm driver), or
sets a flag that a loop polls (``sigterm_sets_flag``: training, which saves ``last.pt`` first). The two process
set-ups below route the other signals: Slurm's time-limit warning, and a benchmark worker's Ctrl-C and SIGTERM."""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Callable, Iterator

SIGTERM_EXIT_CODE = 128 + signal.SIGTERM  # what a shell reports for a command stopped by SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises ``KeyboardInterrupt`` so that the same cleanup runs (a training
    replaces it with its own handler, which saves ``last.pt`` first)."""


@contextlib.contextmanager
def _sigterm_handler(handler: Callable) -> Iterator[None]:
    """``handler`` for SIGTERM while the block runs, in the main thread (where signal handlers live); elsewhere the
    block runs with the handler the process has."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def sigterm_raises(exception: Callable[[], BaseException] = Terminated) -> Iterator[None]:
    """While the block runs, SIGTERM raises ``exception()`` in the main thread instead of killing the process."""
    def terminate(signum, frame):
        raise exception()

    with _sigterm_handler(terminate):
        yield


@contextlib.contextmanager
def sigterm_sets_flag() -> Iterator[threading.Event]:
    """Yield an event that SIGTERM sets (instead of killing the process) while the block runs."""
    event = threading.Event()
    with _sigterm_handler(lambda signum, frame: event.set()):
        yield event


def sigusr2_as_sigterm() -> None:
    """In a Slurm job: the time limit's warning (SIGUSR2) stops the work as a preemption (SIGTERM) does."""
    signal.signal(signal.SIGUSR2, lambda signum, frame: os.kill(os.getpid(), signal.SIGTERM))


def worker_signals(parent: int) -> None:
    """In a worker process of ``parent``: Ctrl-C reaches ``parent`` alone, which stops its workers; between jobs
    SIGTERM ends the worker only once ``parent`` is gone (nobody reads its results), while its jobs'
    ``sigterm_raises`` stop them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(SIGTERM_EXIT_CODE) if os.getppid() != parent
                  else None)
