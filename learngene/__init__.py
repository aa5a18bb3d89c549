"""learngene: initialize vision transformers of any depth from one small learngene (SWS).

Top-level modules: ``methods`` (every initializer, SWS first, behind one interface), ``checkpoint`` (the files
written, atomically and verified), ``hub`` (shared folders), ``cli`` and ``errors`` (what tools share).
"""
from learngene import models  # noqa: F401  (registers the Aux-Nets with timm)
from learngene.errors import LearngeneError

__version__ = "0.1.0"
__all__ = ["LearngeneError", "models"]
