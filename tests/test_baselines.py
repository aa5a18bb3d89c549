"""TLEG, Simple-LG and Vanilla-LG initializers."""
import pytest
import timm
import torch

import learngene  # noqa: F401  (registers the Aux-Nets)
from learngene.baselines import expand_simple_lg, expand_tleg, expand_vanilla_lg
from learngene.errors import LearngeneError
from learngene.expand import load_expanded
from learngene.models.registry import des_architecture

TINY = dict(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=32, num_heads=4)
TINY_DES = dict(TINY, class_token=False, global_pool="avg")


def tleg_aux(**kwargs):
    torch.manual_seed(0)
    return timm.create_model("tleg_aux_vit_tiny_patch16_224", **{**TINY, **kwargs}).eval()


def des_net(depth, seed=1, **kwargs):
    torch.manual_seed(seed)
    return timm.create_model("vit_tiny_patch16_224", **{**TINY_DES, "depth": depth, **kwargs}).eval()


def test_tleg_aux_init_follows_reference():
    aux = tleg_aux()
    for norm in (aux.slope.norm1, aux.slope.norm2):
        assert not norm.weight.any() and not norm.bias.any()
    assert bool((aux.base.norm1.weight == 1).all()) and not aux.base.norm2.bias.any()
    for block in (aux.base, aux.slope):
        assert not block.mlp.fc1.bias.any() and not block.attn.qkv.bias.any()
        assert 0.015 < block.mlp.fc1.weight.std() < 0.025  # trunc_normal(0.02)


def test_tleg_layers_interpolate_and_train():
    aux = tleg_aux(num_layers=4)
    assert aux.architecture_args()["num_layers"] == 4 and "num_layers" not in aux.des_model_args(6)
    tensors = aux.layer_tensors(3)
    assert torch.equal(tensors["attn.qkv.weight"], aux.base.attn.qkv.weight + 0.75 * aux.slope.attn.qkv.weight)
    aux.train()
    aux(torch.randn(2, 1, 8, 8)).logsumexp(-1).sum().backward()
    assert aux.slope.mlp.fc2.weight.grad.abs().sum() > 0 and aux.base.norm1.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("num_layers", [12, 5])
def test_tleg_expansion_to_own_depth_reproduces_aux_logits(num_layers):
    aux = tleg_aux(num_layers=num_layers)
    with torch.no_grad():  # move off the init, where every slope norm is zero
        for p in aux.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    des = timm.create_model(des_architecture("tleg_aux_vit_tiny_patch16_224"), **aux.des_model_args(num_layers))
    load_expanded(des, expand_tleg(aux.state_dict(), num_layers))
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(des.eval()(x), aux(x), atol=1e-5, rtol=0)


def test_tleg_expansion_coefficients():
    state = tleg_aux().state_dict()
    expanded = expand_tleg(state, 5)
    for i in range(5):
        expected = state["base.mlp.fc1.weight"] + (i / 5) * state["slope.mlp.fc1.weight"]
        assert torch.equal(expanded[f"blocks.{i}.mlp.fc1.weight"], expected)
    assert "blocks.5.mlp.fc1.weight" not in expanded and torch.equal(expanded["pos_embed"], state["pos_embed"])
    assert not any(k.startswith("head.") for k in expand_tleg(state, 5, include_head=False))
    with pytest.raises(LearngeneError, match="TLEG"):
        expand_tleg(des_net(2).state_dict(), 3)


def test_simple_lg_expands_blocks_cyclically():
    source = des_net(5).state_dict()
    state, plan = expand_simple_lg(source, 12)
    assert plan.layer_sources == [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4]
    for i, block in enumerate(plan.layer_sources):
        assert torch.equal(state[f"blocks.{i}.attn.qkv.weight"], source[f"blocks.{block}.attn.qkv.weight"])
    des = des_net(12, seed=2)
    load_expanded(des, state)
    assert torch.equal(des.state_dict()["head.weight"], source["head.weight"])
    _, last_first = expand_simple_lg(source, 7, order="last-mid-front")
    assert last_first.layer_sources == [0, 1, 2, 3, 3, 4, 4]
    with pytest.raises(LearngeneError, match="blocks"):
        expand_simple_lg(tleg_aux().state_dict(), 6)


def test_vanilla_lg_puts_last_ancestry_blocks_on_top():
    ancestry, target = des_net(6, seed=1).state_dict(), des_net(8, seed=2).state_dict()
    state = expand_vanilla_lg(ancestry, target)
    assert list(state) == list(target)
    for i in range(8):
        expected = ancestry[f"blocks.{i - 2}.mlp.fc1.weight"] if i >= 5 else target[f"blocks.{i}.mlp.fc1.weight"]
        assert torch.equal(state[f"blocks.{i}.mlp.fc1.weight"], expected)
    for key in ("patch_embed.proj.weight", "pos_embed"):
        assert torch.equal(state[key], target[key])
    for key in ("fc_norm.weight", "head.weight"):
        assert torch.equal(state[key], ancestry[key])
    other_labels = des_net(8, seed=2, num_classes=5).state_dict()
    assert torch.equal(expand_vanilla_lg(ancestry, other_labels, 1)["head.weight"], other_labels["head.weight"])


def test_vanilla_lg_errors():
    ancestry = des_net(6).state_dict()
    with pytest.raises(LearngeneError, match="num_layers"):
        expand_vanilla_lg(ancestry, des_net(2).state_dict(), num_layers=3)
    with pytest.raises(LearngeneError, match="width"):
        expand_vanilla_lg(ancestry, des_net(4, embed_dim=64).state_dict())
