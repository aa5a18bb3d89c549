"""TLEG, Simple-LG and Vanilla-LG initializers, and tools/expand.py for every method."""
import json

import pytest
import timm
import torch
import torch.nn.functional as F

import learngene.models  # noqa: F401  (registers the Aux-Nets)
from learngene.baselines import expand_simple_lg, expand_tleg, expand_vanilla_lg, select_weights
from learngene.checkpoint import load_learngene, load_model_folder, save_learngene, save_model_folder
from learngene.errors import LearngeneError
from learngene.expand import load_expanded
from learngene.models import des_architecture
from learngene.tools import expand
from train_mode import assert_same_train_mode_function

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
    with torch.no_grad():  # off the init, where every slope norm is zero
        for p in aux.slope.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    # Layer 3 of 4 is timm's Block with the tensors B + 0.75 A, to the bit, with fused and with math attention.
    block = aux.make_block()
    slope = aux.slope.state_dict()
    block.load_state_dict({name: b + 0.75 * slope[name] for name, b in aux.base.state_dict().items()})
    tokens = torch.randn(2, 16, aux.embed_dim)
    for fused in (True, False):
        aux.layers[3].block.attn.fused_attn = block.attn.fused_attn = fused
        assert torch.equal(aux.run_layer(tokens, 3), aux.block_layer(block, tokens, 3))
        assert torch.equal(aux.run_layer(tokens, 3), hand_written_tleg_layer(aux, tokens, 3, fused))
    aux.train()
    aux(torch.randn(2, 1, 8, 8)).logsumexp(-1).sum().backward()
    assert aux.slope.mlp.fc2.weight.grad.abs().sum() > 0 and aux.base.norm1.weight.grad.abs().sum() > 0


def hand_written_tleg_layer(aux, x, layer, fused):
    """The TLEG layer as it was written out by hand before it ran timm's Block (no q/k norm, no layer scale)."""
    t = layer / aux.num_layers
    lerp = lambda base, slope: (base.weight + t * slope.weight, base.bias + t * slope.bias)  # noqa: E731
    base, slope, attn = aux.base, aux.slope, aux.base.attn
    y = F.layer_norm(x, base.norm1.normalized_shape, *lerp(base.norm1, slope.norm1), base.norm1.eps)
    batch, tokens, dim = y.shape
    qkv = F.linear(y, *lerp(attn.qkv, slope.attn.qkv))
    q, k, v = qkv.reshape(batch, tokens, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    y = F.scaled_dot_product_attention(q, k, v) if fused else (q * attn.scale @ k.transpose(-2, -1)).softmax(-1) @ v
    x = x + F.linear(y.transpose(1, 2).reshape(batch, tokens, dim), *lerp(attn.proj, slope.attn.proj))
    y = F.layer_norm(x, base.norm2.normalized_shape, *lerp(base.norm2, slope.norm2), base.norm2.eps)
    return x + F.linear(F.gelu(F.linear(y, *lerp(base.mlp.fc1, slope.mlp.fc1))), *lerp(base.mlp.fc2, slope.mlp.fc2))


def test_tleg_aux_in_train_mode_with_drop_path_equals_its_own_depth_des_net():
    """Same seed, same drop-path draws: each applied layer is timm's Block with that layer's drop-path rate."""
    torch.manual_seed(0)
    aux = timm.create_model("tleg_aux_vit_tiny_patch16_224", **TINY, num_layers=5, drop_path_rate=0.5).train()
    with torch.no_grad():  # off the init, where every slope norm is zero
        for p in aux.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    des = timm.create_model(des_architecture("tleg_aux_vit_tiny_patch16_224"), **aux.des_model_args(5),
                            drop_path_rate=0.5).train()
    load_expanded(des, expand_tleg(aux.state_dict(), 5))
    assert_same_train_mode_function(aux, des, torch.randn(8, 1, 8, 8))
    assert not any(name.startswith("layers.") for name in aux.state_dict())  # the layers hold no state


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
    state, copied = expand_vanilla_lg(ancestry, target)
    assert list(state) == list(target)
    assert copied == [k for k in target if k.startswith(("blocks.5.", "blocks.6.", "blocks.7.", "fc_norm.", "head."))]
    for i in range(8):
        expected = ancestry[f"blocks.{i - 2}.mlp.fc1.weight"] if i >= 5 else target[f"blocks.{i}.mlp.fc1.weight"]
        assert torch.equal(state[f"blocks.{i}.mlp.fc1.weight"], expected)
    for key in ("patch_embed.proj.weight", "pos_embed"):
        assert torch.equal(state[key], target[key])
    for key in ("fc_norm.weight", "head.weight"):
        assert torch.equal(state[key], ancestry[key])
    other_labels = des_net(8, seed=2, num_classes=5).state_dict()
    assert torch.equal(expand_vanilla_lg(ancestry, other_labels, 1)[0]["head.weight"], other_labels["head.weight"])


def test_vanilla_lg_errors():
    ancestry = des_net(6).state_dict()
    with pytest.raises(LearngeneError, match="num_layers"):
        expand_vanilla_lg(ancestry, des_net(2).state_dict(), num_layers=3)
    with pytest.raises(LearngeneError, match="width"):
        expand_vanilla_lg(ancestry, des_net(4, embed_dim=64).state_dict())


# tools/expand.py: every method writes the same timm local-dir folder.

@pytest.fixture
def sources(tmp_path):
    """A TLEG learngene file, a 5-layer ViT folder (Simple-LG) and a 6-layer ancestry folder."""
    tleg = tmp_path / "tleg.safetensors"
    save_learngene(tleg_aux(num_layers=6), tleg, kind="tleg")
    save_model_folder(des_net(5, seed=3), tmp_path / "five", preprocessing=None, model_args=dict(TINY_DES, depth=5))
    save_model_folder(des_net(6, seed=4), tmp_path / "ancestry", preprocessing=None,
                      model_args=dict(TINY_DES, depth=6))
    return tmp_path


def run_expand(out, *argv):
    assert expand.main([*map(str, argv), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "init.json", "model.safetensors"]
    return load_model_folder(out).state_dict(), json.loads((out / "init.json").read_text())


def test_tool_tleg(sources):
    state, plan = run_expand(sources / "out", sources / "tleg.safetensors", "--method", "tleg", "--depth", "4")
    tleg = load_learngene(sources / "tleg.safetensors")
    expected = expand_tleg(tleg.state_dict, 4)
    assert sorted(state) == sorted(expected) and all(torch.equal(state[k], v) for k, v in expected.items())
    assert plan["method"] == "tleg" and plan["coefficients"] == [0, 0.25, 0.5, 0.75]
    assert plan["parameters_stored"] == sum(t.numel() for t in tleg.state_dict.values())
    state, _ = run_expand(sources / "out4", sources / "tleg.safetensors", "--method", "tleg", "--depth", "4",
                          "--num-classes", "4", "--seed", "2")
    assert torch.equal(state["head.weight"], des_net(4, seed=2, num_classes=4).state_dict()["head.weight"])
    assert torch.equal(state["fc_norm.weight"], expected["fc_norm.weight"])


def test_tool_simple_lg_and_pf(sources):
    five = load_model_folder(sources / "five")
    state, plan = run_expand(sources / "s", sources / "five", "--method", "simple-lg", "--depth", "7")
    assert plan["layer_sources"] == [0, 0, 1, 1, 2, 3, 4] and plan["method"] == "simple-lg"
    assert plan["parameters_stored"] == sum(p.numel() for p in five.parameters())
    assert torch.equal(state["blocks.1.mlp.fc2.weight"], five.blocks[0].mlp.fc2.weight)
    state, plan = run_expand(sources / "pf", sources / "five", "--method", "pf")
    assert all(torch.equal(state[k], v) for k, v in five.state_dict().items())
    assert plan["parameters_stored"] == sum(p.numel() for p in five.parameters())


def test_tool_vanilla_lg(sources):
    ancestry = load_model_folder(sources / "ancestry").state_dict()
    state, plan = run_expand(sources / "v", sources / "ancestry", "--method", "vanilla-lg", "--depth", "4",
                             "--num-layers", "2", "--seed", "7")
    fresh = des_net(4, seed=7).state_dict()  # the Des-Net's own init under the same seed
    assert torch.equal(state["blocks.1.attn.qkv.weight"], fresh["blocks.1.attn.qkv.weight"])
    assert torch.equal(state["pos_embed"], fresh["pos_embed"])
    assert torch.equal(state["blocks.2.attn.qkv.weight"], ancestry["blocks.4.attn.qkv.weight"])
    block = sum(v.numel() for k, v in ancestry.items() if k.startswith("blocks.0."))
    head = sum(v.numel() for k, v in ancestry.items() if k.startswith(("head.", "fc_norm.")))
    assert plan["parameters_stored"] == 2 * block + head


@pytest.mark.parametrize("extra", [[], ["--head-aware", "--elements", "random", "--layers", "last"]])
def test_tool_weight_selection(sources, extra):
    parent = load_model_folder(sources / "ancestry")
    state, plan = run_expand(sources / "w", sources / "ancestry", "--method", "weight-selection", "--depth", "3",
                             "--model-args", '{"embed_dim": 16, "num_heads": 2}', *extra)
    child = des_net(3, seed=0, embed_dim=16, num_heads=2).state_dict()
    options = dict(layers="last", elements="random", head_aware=True, num_heads=(4, 2)) if extra else {}
    expected = select_weights(parent.state_dict(), child, **options)
    assert all(torch.equal(state[k], v) for k, v in expected.items())
    assert plan["parameters_stored"] == sum(p.numel() for p in parent.parameters())


def test_tool_scratch(sources):
    state, plan = run_expand(sources / "a", sources / "tleg.safetensors", "--method", "scratch", "--depth", "3",
                             "--seed", "5")
    expected = des_net(3, seed=5).state_dict()
    assert sorted(state) == sorted(expected) and all(torch.equal(state[k], v) for k, v in expected.items())
    assert plan["parameters_stored"] == 0
    state, _ = run_expand(sources / "b", "--method", "scratch", "--model", "vit_tiny_patch16_224", "--depth", "2",
                          "--model-args", json.dumps(TINY_DES))
    assert "blocks.1.mlp.fc1.weight" in state and "blocks.2.mlp.fc1.weight" not in state


@pytest.mark.parametrize("argv,message", [
    (["tleg.safetensors", "--method", "sws", "--depth", "3"], "not a SWSAuxViT"),
    (["ancestry", "--method", "weight-selection", "--order", "front-last-mid"], "--order does not apply"),
    (["--method", "scratch", "--depth", "3"], "scratch needs --model"),
    (["--method", "tleg", "--depth", "3"], "tleg needs a source"),
    (["five", "--method", "pf", "--depth", "6"], "give its depth (5)"),
    (["five", "--method", "vanilla-lg", "--depth", "6", "--num-layers", "6"], "num_layers 6 must be between 1"),
    (["ancestry", "--method", "weight-selection", "--depth", "7"], "cannot deepen"),
    (["ancestry", "--method", "scratch", "--model-args", "[1]"], "must be a JSON object"),
    (["five", "--method", "tleg", "--depth", "3"], "is a model folder, not a learngene file"),
    (["tleg.safetensors", "--method", "simple-lg", "--depth", "3"], "is a learngene file: expand it"),
])
def test_tool_errors(sources, capsys, argv, message):
    argv = [str(sources / a) if (sources / a).exists() else a for a in argv]
    assert expand.main([*argv, "--out", str(sources / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not (sources / "out").exists()
