"""Expansion of learngenes into Des-Nets: plans (which layer from which stage, ``plan``), pure state-dict
helpers every initializer shares (``state_dict``), SWS expansion (``sws``) and width changes (``width``)."""
from learngene.expand.plan import (ORDER_NAMES, STRATEGIES, ExpansionPlan, cyclic_layer_sources, make_plan,
                                   own_layer_sources, random_layer_sources, resolve_order, stage_groups)
from learngene.expand.state_dict import expand_layers, layer_counts, load_expanded, split_stage_state
from learngene.expand.sws import expand_sws

__all__ = [
    "ORDER_NAMES", "STRATEGIES", "ExpansionPlan", "cyclic_layer_sources", "make_plan", "own_layer_sources",
    "random_layer_sources", "resolve_order", "stage_groups", "expand_layers", "expand_sws", "load_expanded",
    "split_stage_state", "layer_counts",
]
