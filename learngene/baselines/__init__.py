"""Baseline initializers the SWS paper compares against, as pure functions on state dicts.

``learngene.methods.METHODS`` puts SWS and each of them behind the one interface tools/expand.py uses."""
from learngene.baselines.simple_lg import expand_simple_lg
from learngene.baselines.tleg import expand_tleg
from learngene.baselines.vanilla_lg import expand_vanilla_lg
from learngene.baselines.weight_selection import (ELEMENT_SELECTIONS, LAYER_SELECTIONS, layer_indices,
                                                  select_weights, uniform_indices)

__all__ = ["ELEMENT_SELECTIONS", "LAYER_SELECTIONS", "expand_simple_lg", "expand_tleg", "expand_vanilla_lg",
           "layer_indices", "select_weights", "uniform_indices"]
