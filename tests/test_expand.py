import itertools

import pytest
import timm
import torch

from learngene.errors import LearngeneError
from learngene.expand import (ORDER_NAMES, ExpansionPlan, cyclic_layer_sources, expand_sws, load_expanded, make_plan,
                              own_layer_sources, random_layer_sources, resolve_order)

from train_mode import assert_same_train_mode_function

SIZES = (3, 3, 4, 3, 3)


def closed_form_cyclic(depth, order):
    """Stage order[j] gets depth // M layers plus one when j < depth % M; laid out by stage index."""
    m = len(order)
    counts = {stage: depth // m + (j < depth % m) for j, stage in enumerate(order)}
    return [s for s in range(m) for _ in range(counts[s])]


def test_issue_examples():
    assert cyclic_layer_sources(6, SIZES) == [0, 0, 1, 2, 3, 4]
    assert cyclic_layer_sources(12, SIZES) == [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4]
    assert cyclic_layer_sources(15, SIZES) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert cyclic_layer_sources(3, SIZES) == [0, 1, 2]  # depths below M drop the stages last in the order


def test_named_orders_for_five_stages():
    assert {name: resolve_order(name, 5) for name in ORDER_NAMES} == {
        "front-mid-last": [0, 1, 2, 3, 4], "front-last-mid": [0, 1, 3, 4, 2], "mid-front-last": [2, 0, 1, 3, 4],
        "mid-last-front": [2, 3, 4, 0, 1], "last-front-mid": [3, 4, 0, 1, 2], "last-mid-front": [3, 4, 2, 0, 1]}
    assert resolve_order("0,2,1,3,4", 5) == [0, 2, 1, 3, 4]
    assert resolve_order(None, 5) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("order", ORDER_NAMES)
def test_cyclic_depths_1_to_20(order):
    visit = resolve_order(order, 5)
    for depth in range(1, 21):
        sources = cyclic_layer_sources(depth, SIZES, order)
        assert sources == closed_form_cyclic(depth, visit), (order, depth)
        assert len(sources) == depth and sources == sorted(sources)


def test_front_last_mid_puts_extra_layers_at_both_ends():
    assert cyclic_layer_sources(8, SIZES, "front-last-mid") == [0, 0, 1, 1, 2, 3, 3, 4]


def test_random_keeps_order_and_is_reproducible():
    for depth, seed in itertools.product(range(1, 21), range(3)):
        sources = random_layer_sources(depth, SIZES, seed)
        assert sources == random_layer_sources(depth, SIZES, seed)
        assert sources == sorted(sources) and len(sources) == depth
        if depth >= 5:
            assert set(sources) == {0, 1, 2, 3, 4}
        else:
            assert len(set(sources)) == depth
    draws = {tuple(random_layer_sources(12, SIZES, seed)) for seed in range(20)}
    assert len(draws) > 5


def test_shuffled_ablation_breaks_order():
    sources = random_layer_sources(12, SIZES, seed=1, keep_order=False)
    assert sources == random_layer_sources(12, SIZES, seed=1, keep_order=False)
    shuffled = [random_layer_sources(12, SIZES, s, keep_order=False) for s in range(5)]
    assert any(sources != sorted(sources) for sources in shuffled)


@pytest.mark.parametrize("bad", [0, -3])
def test_bad_depth(bad):
    with pytest.raises(LearngeneError, match="depth must be a positive integer"):
        cyclic_layer_sources(bad, SIZES)


def test_bad_inputs():
    with pytest.raises(LearngeneError, match="stage_sizes is empty"):
        cyclic_layer_sources(4, ())
    with pytest.raises(LearngeneError, match="unknown order 'sideways'"):
        cyclic_layer_sources(4, SIZES, "sideways")
    with pytest.raises(LearngeneError, match="permutation"):
        cyclic_layer_sources(4, SIZES, [0, 1, 1, 2, 3])
    with pytest.raises(LearngeneError, match="unknown strategy"):
        make_plan(4, SIZES, strategy="greedy")


def test_plan_round_trips_as_plain_data():
    plan = make_plan(7, SIZES, "cyclic", "front-last-mid", source="lg.safetensors")
    assert plan == ExpansionPlan.from_dict(plan.to_dict())
    assert plan.to_dict() == dict(layer_sources=[0, 0, 1, 1, 2, 3, 4], strategy="cyclic", order=[0, 1, 3, 4, 2],
                                  seed=None, source="lg.safetensors")


def test_plan_describes_its_strategy_and_says_when_the_order_changes_nothing():
    assert make_plan(8, SIZES, "cyclic", "front-last-mid").describe() == "cyclic order front-last-mid"
    assert make_plan(7, SIZES, "cyclic", "0,2,1,3,4").describe() == "cyclic order 0,2,1,3,4"
    assert make_plan(12, SIZES).describe() == "cyclic order front-mid-last"
    # At a multiple of the 5 stages every stage gets the same number of layers in any order.
    assert make_plan(10, SIZES, "cyclic", "last-mid-front").describe() == \
        "cyclic order last-mid-front (at depth 10 the same plan as front-mid-last)"
    assert make_plan(3, SIZES, "cyclic", "0,1,2,4,3").describe() == \
        "cyclic order 0,1,2,4,3 (at depth 3 the same plan as front-mid-last)"
    assert make_plan(4, SIZES, "cyclic", "0,1,2,4,3").describe() == "cyclic order 0,1,2,4,3"
    assert make_plan(6, SIZES, "random", seed=3).describe() == "random (seed 3)"
    assert make_plan(6, SIZES, "shuffled", seed=0).describe() == "shuffled (seed 0)"


def des_for(aux, depth, **overrides):
    return timm.create_model("vit_tiny_patch16_224", **dict(aux.des_model_args(depth), **overrides)).eval()


def test_expansion_to_own_layout_reproduces_aux_logits(tiny_aux):
    des = des_for(tiny_aux, 16)
    load_expanded(des, expand_sws(tiny_aux.state_dict(), own_layer_sources(tiny_aux.stage_sizes)))
    x = torch.randn(8, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(des(x), tiny_aux(x), atol=1e-5, rtol=0)


def test_expansion_to_own_layout_reproduces_aux_logits_in_train_mode_with_drop_path():
    """Same seed, same drop-path draws: the Aux-Net applies drop path per applied layer exactly as timm's blocks do."""
    from conftest import TINY_AUX

    torch.manual_seed(0)
    aux = timm.create_model("sws_aux_vit_tiny_patch16_224", **TINY_AUX, drop_path_rate=0.5).train()
    des = des_for(aux, 16, drop_path_rate=0.5).train()
    load_expanded(des, expand_sws(aux.state_dict(), own_layer_sources(aux.stage_sizes)))
    assert_same_train_mode_function(aux, des, torch.randn(8, 1, 8, 8))


def test_expanded_blocks_are_independent_copies(tiny_aux):
    state = expand_sws(tiny_aux.state_dict(), cyclic_layer_sources(12, SIZES))
    assert len([k for k in state if k.startswith("blocks.")]) == 12 * len(tiny_aux.stages[0].state_dict())
    torch.testing.assert_close(state["blocks.2.attn.qkv.weight"], tiny_aux.stages[0].attn.qkv.weight.detach())
    torch.testing.assert_close(state["blocks.3.mlp.fc1.bias"], tiny_aux.stages[1].mlp.fc1.bias.detach())
    torch.testing.assert_close(state["fc_norm.weight"], tiny_aux.fc_norm.weight.detach())
    assert state["blocks.0.attn.qkv.weight"].data_ptr() != state["blocks.1.attn.qkv.weight"].data_ptr()


def test_other_label_space_keeps_target_head(tiny_aux):
    des = des_for(tiny_aux, 6, num_classes=7)
    head = des.head.weight.detach().clone()
    load_expanded(des, expand_sws(tiny_aux.state_dict(), cyclic_layer_sources(6, SIZES), include_head=False))
    torch.testing.assert_close(des.head.weight, head)
    torch.testing.assert_close(des.blocks[5].norm1.weight, tiny_aux.stages[4].norm1.weight)


def test_wrong_architecture_is_refused_naming_keys_and_shapes(tiny_aux):
    wider = timm.create_model("vit_tiny_patch16_224", **dict(tiny_aux.des_model_args(6), embed_dim=48))
    with pytest.raises(LearngeneError) as e:
        load_expanded(wider, expand_sws(tiny_aux.state_dict(), cyclic_layer_sources(6, SIZES)))
    assert str(e.value) == (
        "learngene does not fit the target model VisionTransformer (shape: pos_embed [1, 16, 32] vs [1, 16, 48] "
        "expected, patch_embed.proj.weight [32, 1, 2, 2] vs [48, 1, 2, 2] expected, patch_embed.proj.bias [32] vs "
        "[48] expected and 75 more): build the target with the architecture arguments of the learngene's Des-Nets")
    deeper = des_for(tiny_aux, 8)
    with pytest.raises(LearngeneError) as e:
        load_expanded(deeper, expand_sws(tiny_aux.state_dict(), cyclic_layer_sources(6, SIZES)))
    assert str(e.value).startswith("learngene does not fit the target model VisionTransformer (missing: "
                                   "blocks.6.norm1.weight, blocks.6.norm1.bias, blocks.6.attn.qkv.weight and 21 more): ")
    shallower = des_for(tiny_aux, 5)
    with pytest.raises(LearngeneError) as e:
        load_expanded(shallower, expand_sws(tiny_aux.state_dict(), cyclic_layer_sources(6, SIZES)))
    assert "(unexpected: blocks.5.norm1.weight, blocks.5.norm1.bias, blocks.5.attn.qkv.weight and 9 more): " \
        in str(e.value)
    with pytest.raises(LearngeneError, match="the learngene has 5 stages"):
        expand_sws(tiny_aux.state_dict(), [0, 5])
