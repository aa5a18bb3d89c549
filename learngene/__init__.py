"""learngene: initialize vision transformers of any depth from one small learngene (SWS).

Top-level modules: ``methods`` (every initializer, SWS first, behind one interface), ``checkpoint`` (the files
written, atomically and verified), ``hub`` (shared folders), ``cli`` and ``errors`` (what tools share), ``perf``
(speed measurements).

``import learngene`` registers the Aux-Nets with timm (``learngene.models``) as soon as timm is imported, before or
after it, without importing torch or timm itself: the ``learngene`` command answers ``--help`` at once.
"""
import importlib
import importlib.abc
import importlib.util
import sys

from learngene.errors import LearngeneError

__version__ = "0.1.0"
__all__ = ["LearngeneError", "models"]


def __getattr__(name: str):
    if name == "models":  # ``learngene.models`` without an import statement, as when it was imported eagerly
        return importlib.import_module("learngene.models")
    raise AttributeError(f"module 'learngene' has no attribute {name!r}")


class _ThenRegisterAuxNets(importlib.abc.Loader):
    """timm's own loader, followed by ``import learngene.models`` (which registers the Aux-Nets' entry points)."""

    def __init__(self, loader: importlib.abc.Loader):
        self.loader = loader

    def __getattr__(self, name: str):  # resource readers and the like: timm's loader's
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        importlib.import_module("learngene.models")


class _RegisterWhenTimmLoads(importlib.abc.MetaPathFinder):
    """Finds timm as the other finders do, with ``_ThenRegisterAuxNets`` around its loader; used once."""

    def find_spec(self, name, path=None, target=None):
        if name != "timm":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenRegisterAuxNets(spec.loader)
        return spec


if "timm" in sys.modules:
    importlib.import_module("learngene.models")
else:
    sys.meta_path.insert(0, _RegisterWhenTimmLoads())
