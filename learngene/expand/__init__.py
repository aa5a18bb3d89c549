"""Expansion of learngenes into Des-Nets: plans (which layer from which stage) and pure state-dict functions."""
from learngene.expand.plan import (ORDER_NAMES, STRATEGIES, ExpansionPlan, cyclic_layer_sources, make_plan,
                                   own_layer_sources, random_layer_sources, resolve_order, stage_groups)
from learngene.expand.sws import expand_layers, expand_sws, load_expanded, split_stage_state

__all__ = [
    "ORDER_NAMES", "STRATEGIES", "ExpansionPlan", "cyclic_layer_sources", "make_plan", "own_layer_sources",
    "random_layer_sources", "resolve_order", "stage_groups", "expand_layers", "expand_sws", "load_expanded",
    "split_stage_state",
]
