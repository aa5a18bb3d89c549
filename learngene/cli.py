"""Shared plumbing for the thin ``tools/*.py`` scripts."""
from __future__ import annotations

import argparse
import functools
import importlib
import os
import signal
import sys
from typing import Callable, Sequence

from learngene.errors import LearngeneError, first_line
from learngene.signals import SIGTERM_EXIT_CODE, Terminated, sigterm_raises

Main = Callable[[Sequence[str] | None], int]
INTERRUPTED_EXIT_CODE = 128 + signal.SIGINT  # what a shell reports for a command stopped by Ctrl-C
BROKEN_PIPE_EXIT_CODE = 128 + signal.SIGPIPE  # what a shell reports for a command whose reader went away (`| head`)


def entry_point(main: Main | None = None, *, on_interrupt: str = "stopped by Ctrl-C; run the same command again"):
    """Wrap a tool's ``main(argv) -> int`` so bad input becomes one stderr line and exit code 2.

    Ctrl-C becomes one ``interrupted: ...`` line and exit code 130, not a traceback, and SIGTERM the same line
    and exit code 143: the line says how to continue, with the ``KeyboardInterrupt``'s own message if it has
    one, else ``on_interrupt``. Output piped into a reader that stops early (``| head``) ends it with exit code 141.
    Use as ``@entry_point`` or ``@entry_point(on_interrupt="...")``.
    """
    if main is None:
        return functools.partial(entry_point, on_interrupt=on_interrupt)

    @functools.wraps(main)
    def wrapped(argv: Sequence[str] | None = None) -> int:
        try:
            with sigterm_raises():
                return main(argv)
        except LearngeneError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as e:
            print(f"interrupted: {first_line(e) if str(e).strip() else on_interrupt}", file=sys.stderr)
            return SIGTERM_EXIT_CODE if isinstance(e, Terminated) else INTERRUPTED_EXIT_CODE
        except BrokenPipeError:  # stdout's reader closed it: stop quietly, and let exit's flush write nowhere
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return BROKEN_PIPE_EXIT_CODE

    return wrapped


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one ``error: ...`` line and exit code 2 like every other bad input."""

    def error(self, message: str):
        raise LearngeneError(f"{message} (see {self.prog} --help)")


def tool_parser(doc: str, prog: str) -> ArgumentParser:
    """A tool's parser: its docstring's first line describes it, the rest (examples) follows the options verbatim."""
    summary, details = doc.split("\n", 1)
    return ArgumentParser(prog=prog, description=summary, epilog=f"examples:{details}",
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer no smaller than ``minimum`` (e.g. 1 for a depth, 0 for a seed)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value

    parse.__name__ = f"int >= {minimum}"  # argparse names the type in some messages
    return parse


# `learngene COMMAND`: the module of learngene.tools (the repository's tools/ folder) that runs it.
COMMANDS = {"expand": "expand", "init": "init", "share": "share", "convert": "convert", "train-aux": "train_aux",
            "finetune": "finetune", "benchmark": "benchmark", "bench-speed": "bench_speed"}
USAGE = f"""usage: learngene COMMAND [ARGS...]

The learngene tools as one command (the same scripts as tools/*.py in the repository).

commands:
  expand       initialize a Des-Net of any depth from a learngene, or with a baseline (tools/expand.py)
  init         initialize a timm ViT from any larger ViT or a learngene, recording every tensor (tools/init.py)
  share        write a learngene or a model folder as a hub folder with a model card; --push it (tools/share.py)
  convert      convert an official SWS or TLEG checkpoint into a learngene file (tools/convert.py)
  train-aux    distill an Aux-Net from its ancestry and write its learngene (tools/train_aux.py)
  finetune     train or fine-tune any timm model or model folder (tools/finetune.py)
  benchmark    compare SWS with the baselines across Des-Net depths (tools/benchmark.py)
  bench-speed  measure what learngene training costs (tools/bench_speed.py)

examples:
  learngene expand hf-hub:ORG/NAME --depth 12 --out des12
  learngene expand --help
"""


def main(argv: Sequence[str] | None = None) -> int:
    """The ``learngene`` console command: ``learngene COMMAND ARGS`` runs ``tools/COMMAND.py ARGS``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(USAGE, end="")
        return 0
    if not argv or argv[0] not in COMMANDS:
        given = f"unknown command {argv[0]!r}" if argv else "no command given"
        print(f"error: {given}: choose one of {', '.join(COMMANDS)} (see learngene --help)", file=sys.stderr)
        return 2
    tool = importlib.import_module(f"learngene.tools.{COMMANDS[argv[0]]}")
    return tool.main(argv[1:])
