"""learngene: initialize vision transformers of any depth from one small learngene (SWS).

Top-level modules: ``methods`` (every initializer, SWS first, behind one interface), ``checkpoint`` (the files
written, atomically and verified), ``hub`` (shared folders), ``cli`` and ``errors`` (what tools share).
``import learngene.models`` (or any module that builds models) registers the Aux-Nets with timm; ``import learngene``
alone imports no torch, so that the ``learngene`` command answers ``--help`` at once.
"""
import importlib

from learngene.errors import LearngeneError

__version__ = "0.1.0"
__all__ = ["LearngeneError", "models"]


def __getattr__(name: str):
    if name == "models":  # ``learngene.models`` without an import statement, as when it was imported eagerly
        return importlib.import_module("learngene.models")
    raise AttributeError(f"module 'learngene' has no attribute {name!r}")
