"""Shared plumbing for the thin ``tools/*.py`` scripts."""
from __future__ import annotations

import argparse
import functools
import sys
from typing import Callable, Sequence

from learngene.errors import LearngeneError


def entry_point(main: Callable[[Sequence[str] | None], int]) -> Callable[[Sequence[str] | None], int]:
    """Wrap a tool's ``main(argv) -> int`` so bad input becomes one stderr line and exit code 2."""

    @functools.wraps(main)
    def wrapped(argv: Sequence[str] | None = None) -> int:
        try:
            return main(argv)
        except LearngeneError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    return wrapped



class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one ``error: ...`` line and exit code 2 like every other bad input."""

    def error(self, message: str):
        raise LearngeneError(f"{message} (see {self.prog} --help)")
