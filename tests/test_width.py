import json

import pytest
import timm
import torch

from learngene.checkpoint import Learngene
from learngene.errors import LearngeneError
from learngene.expand import cyclic_layer_sources, expand_sws
from learngene.expand.width import (WidthPlan, apply_width_plan, grow_width, narrow_width, orthogonal_embedding,
                                    plan_width)

HEADS = 4  # the tiny Aux-Net of conftest: width 32, 4 heads of 8 dims, MLP 128


def des_net(aux, depth, width=32, mlp_ratio=4.0):
    args = dict(aux.des_model_args(depth), embed_dim=width, num_heads=width // 8, mlp_ratio=mlp_ratio)
    return timm.create_model("vit_tiny_patch16_224", **args).eval()


@pytest.fixture
def des_state(tiny_aux):
    """A depth-6 Des-Net of the tiny Aux-Net with non-trivial LayerNorms and biases (timm inits them 1 and 0)."""
    state = expand_sws(tiny_aux.state_dict(), cyclic_layer_sources(6, tiny_aux.stage_sizes))
    generator = torch.Generator().manual_seed(1)
    return {k: v + 0.3 * torch.randn(v.shape, generator=generator) if "norm" in k or k.endswith("bias") else v
            for k, v in state.items()}


def logits(model, state, images):
    model.load_state_dict(state)
    with torch.no_grad():
        return model(images)


@pytest.mark.parametrize("factor", [2, 3])
def test_integer_growth_keeps_the_logits(tiny_aux, des_state, factor):
    images = torch.randn(4, 1, 8, 8)
    reference = logits(des_net(tiny_aux, 6), des_state, images)
    grown = grow_width(des_state, HEADS, 32 * factor)
    torch.testing.assert_close(logits(des_net(tiny_aux, 6, 32 * factor), grown, images), reference,
                               atol=1e-4, rtol=0)
    # plain repetition: LayerNorm weights are copied, the head reads each copy at 1/factor
    assert torch.equal(grown["fc_norm.weight"], des_state["fc_norm.weight"].repeat(factor))
    torch.testing.assert_close(grown["head.weight"], des_state["head.weight"].repeat(1, factor) / factor)


def test_partial_growth_is_exact_with_the_orthogonal_rule_only(tiny_aux, des_state):
    images = torch.randn(4, 1, 8, 8)
    reference = logits(des_net(tiny_aux, 6), des_state, images)
    wide = des_net(tiny_aux, 6, 48)  # 1.5x: 6 heads, MLP 192
    exact = logits(wide, grow_width(des_state, HEADS, 48), images)
    torch.testing.assert_close(exact, reference, atol=1e-4, rtol=0)
    repeated = logits(wide, grow_width(des_state, HEADS, 48, partial="duplicate"), images)
    assert (repeated - reference).abs().max() > 1e-3  # uneven copies shift every LayerNorm's statistics


def test_orthogonal_embedding_is_an_isometry_keeping_the_mean_direction():
    u = orthogonal_embedding(32, 48)
    torch.testing.assert_close(u.T @ u, torch.eye(32, dtype=torch.float64))
    torch.testing.assert_close(u @ torch.ones(32, dtype=torch.float64), torch.full((48,), (32 / 48) ** 0.5,
                                                                                      dtype=torch.float64))
    repeat = torch.zeros(64, 32, dtype=torch.float64)
    repeat[torch.arange(64), torch.arange(64) % 32] = 2 ** -0.5
    torch.testing.assert_close(orthogonal_embedding(32, 64), repeat)  # integer ratio: the repetition itself


def test_noise_breaks_symmetry_but_keeps_the_function(tiny_aux, des_state):
    images = torch.randn(4, 1, 8, 8)
    reference = logits(des_net(tiny_aux, 6), des_state, images)
    plain, noisy = grow_width(des_state, HEADS, 64), grow_width(des_state, HEADS, 64, noise_std=0.01, seed=3)
    assert torch.equal(noisy["blocks.0.mlp.fc2.weight"], grow_width(des_state, HEADS, 64, noise_std=0.01,
                                                                    seed=3)["blocks.0.mlp.fc2.weight"])
    fc2, copy = noisy["blocks.0.mlp.fc2.weight"], slice(128, 256)
    assert not torch.allclose(fc2[:, :128], fc2[:, copy])  # the two copies of each hidden unit now differ
    assert (noisy["head.weight"] - plain["head.weight"]).abs().max() > 1e-3
    torch.testing.assert_close(logits(des_net(tiny_aux, 6, 64), noisy, images), reference, atol=1e-4, rtol=0)


def test_narrowing_keeps_the_leading_heads_of_q_k_and_v(des_state):
    narrow = narrow_width(des_state, HEADS, 16)  # 2 of 4 heads, MLP 64 of 128
    qkv = des_state["blocks.0.attn.qkv.weight"]
    assert torch.equal(narrow["blocks.0.attn.qkv.weight"], torch.cat([qkv[0:16, :16], qkv[32:48, :16],
                                                                       qkv[64:80, :16]]))
    assert torch.equal(narrow["blocks.0.attn.proj.weight"], des_state["blocks.0.attn.proj.weight"][:16, :16])
    assert torch.equal(narrow["blocks.0.mlp.fc2.weight"], des_state["blocks.0.mlp.fc2.weight"][:16, :64])
    assert torch.equal(narrow["pos_embed"], des_state["pos_embed"][..., :16])
    assert torch.equal(narrow["head.weight"], des_state["head.weight"][:, :16])
    assert torch.equal(narrow["head.bias"], des_state["head.bias"])


def test_width_changes_refuse_unknown_tensors(des_state):
    with pytest.raises(LearngeneError, match="cannot change the width of 'cls_token'"):
        narrow_width({**des_state, "cls_token": torch.zeros(1, 1, 32)}, HEADS, 16)
    with pytest.raises(LearngeneError, match="use grow_width"):
        narrow_width(des_state, HEADS, 64)
    with pytest.raises(LearngeneError, match="use narrow_width"):
        grow_width(des_state, HEADS, 16)


def learngene_of(aux, extra=None):
    return Learngene(aux.state_dict(), "sws_aux_vit_tiny_patch16_224", aux.architecture_args(), "sws", extra or {})


@pytest.mark.parametrize("width, num_heads, mlp_ratio, message", [
    # the nearest widths it can make: its trained width 32 or growth beyond it, not an untrained prefix
    (20, None, None, r"^width 20 is not a positive multiple of the head dim 8: use 32$"),
    (45, None, None, r"^width 45 is not a positive multiple of the head dim 8: use 40 or 48$"),
    (48, 5, None, "--num-heads 5 does not divide the width 48"),
    (48, 3, None, "--num-heads 3 gives 16-dim heads but the learngene's are 8-dim"),
    (40, None, 1.33, "is not a whole number of MLP units"),
    (16, None, None, r"^width 16 was never trained in this learngene \(not elastic\): its leading channels are "
                     r"untrained; use one of its trained widths \[32\] or a wider one \(growth keeps the function\), "
                     r"train an Aux-Net with elastic.widths including 16, or expand a Des-Net at the learngene's "
                     r"width and select from it \(tools/expand.py DES --method weight-selection --model-args \.\.\.\)$"),
    # the MLP by the same rule: fewer units than trained is an untrained prefix, at the learngene's width or above
    (32, None, 2.0, r"^--mlp-ratio 2 gives 64 MLP units, fewer than the 128 this learngene \(not elastic\) was "
                    r"trained with at width 32: the leading units alone were never trained; leave --mlp-ratio out or "
                    r"give at least 128 units \(growth keeps the function\)$"),
    (48, None, 2.0, r"^--mlp-ratio 2 gives 96 MLP units, fewer than the 128"),
])
def test_plan_refusals_are_one_line_errors(tiny_aux, width, num_heads, mlp_ratio, message):
    with pytest.raises(LearngeneError, match=message) as error:
        plan_width(learngene_of(tiny_aux), width, num_heads, mlp_ratio)
    assert "\n" not in str(error.value)


def test_width_refusals_suggest_the_nearest_usable_widths(tiny_aux, des_state):
    # a state dict: any multiple of the head dim; an elastic learngene: its trained widths or wider than its own
    with pytest.raises(LearngeneError, match=r"head dim 8: use 16 or 24$"):
        narrow_width(des_state, HEADS, 20)
    with pytest.raises(LearngeneError, match=r"head dim 8: use 16 or 32$"):
        plan_width(learngene_of(tiny_aux, {"elastic": {"widths": [16, 32]}}), 20)


def test_plan_decides_and_is_json(tiny_aux):
    elastic = learngene_of(tiny_aux, {"elastic": {"widths": [16, 32]}})
    assert plan_width(elastic, 16).embedding == "narrow" and plan_width(elastic, 16).trained_size == [16, 64]
    plan = plan_width(learngene_of(tiny_aux), 48, mlp_ratio=8.0)
    assert (plan.embedding, plan.mlp, plan.num_heads, plan.mlp_hidden, plan.trained_widths, plan.trained_size) == \
        ("grow", "grow", 6, 384, [32], [32, 128])
    assert plan.norms_reset == ["norm1", "norm2", "fc_norm"]
    assert plan_width(learngene_of(tiny_aux), 48, include_head=False).norms_reset == ["norm1", "norm2"]
    assert plan_width(learngene_of(tiny_aux), 64).norms_reset == []  # copies: nothing folded
    assert plan.model_args() == dict(embed_dim=48, num_heads=6, mlp_ratio=8.0)
    assert WidthPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    assert plan_width(learngene_of(tiny_aux)).to_dict()["embedding"] == "keep"


@pytest.mark.parametrize("width, mlp_ratio, message", [
    (8, None, r"^width 8 was never trained in this elastic learngene: .* trained widths \[16, 32\]"),
    (24, None, r"^width 24 was never trained in this elastic learngene"),  # between trained widths
    (16, 2.0, r"^--mlp-ratio 2 gives 32 MLP units, fewer than the 64 this elastic learngene was trained with at "
              r"width 16"),
    (32, 3.0, r"^--mlp-ratio 3 gives 96 MLP units, fewer than the 128"),
])
def test_an_elastic_learngene_refuses_sizes_it_was_never_trained_at(tiny_aux, width, mlp_ratio, message):
    with pytest.raises(LearngeneError, match=message):
        plan_width(learngene_of(tiny_aux, {"elastic": {"widths": [16, 32]}}), width, mlp_ratio=mlp_ratio)


def test_a_wider_mlp_grows_from_the_trained_size(tiny_aux, des_state):
    """Width 16 with 128 MLP units: the trained (16, 64) prefix, then the MLP grown, keeping its function."""
    plan = plan_width(learngene_of(tiny_aux, {"elastic": {"widths": [16, 32]}}), 16, mlp_ratio=8.0)
    assert (plan.embedding, plan.mlp, plan.trained_size) == ("narrow", "keep", [16, 64])
    narrowed = narrow_width(des_state, HEADS, 16)
    state = apply_width_plan(des_state, plan)
    expected = grow_width(narrowed, 2, 16, 128)
    assert state.keys() == expected.keys() and all(torch.equal(state[k], expected[k]) for k in state)
    images = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(logits(des_net(tiny_aux, 6, 16, mlp_ratio=8.0), state, images),
                               logits(des_net(tiny_aux, 6, 16), narrowed, images), atol=1e-5, rtol=0)


@pytest.mark.parametrize("width", [48, 64])
def test_growth_without_the_head_keeps_fc_norm_copied_at_every_ratio(tiny_aux, des_state, width):
    """Another label space: nothing reads fc_norm, so its trained weight and bias are kept, channel j from j % 32,
    at a non-integer ratio as at an integer one; the LayerNorms folded into qkv and fc1 are the ones reset."""
    headless = {k: v for k, v in des_state.items() if not k.startswith("head.")}
    grown = grow_width(headless, HEADS, width)
    copies = torch.arange(width) % 32
    for field in ("weight", "bias"):
        assert torch.equal(grown[f"fc_norm.{field}"], des_state[f"fc_norm.{field}"][copies])
    reset = plan_width(learngene_of(tiny_aux), width, include_head=False).norms_reset
    for key in ("blocks.0.norm1.weight", "blocks.5.norm2.bias"):
        neutral = float(key.endswith("weight"))
        assert bool((grown[key] == neutral).all()) == (key.split(".")[2] in reset)
    with_head = grow_width(des_state, HEADS, width)  # the head reads fc_norm: folded into it at 1.5x only
    assert bool((with_head["fc_norm.weight"] == 1).all()) == (width == 48)


def test_growth_of_a_learngene_without_qkv_bias(tiny_aux):
    """Integer growth needs no qkv bias; a non-integer one would fold norm1's bias into it: one error line."""
    from conftest import TINY_AUX
    torch.manual_seed(0)
    aux = timm.create_model("sws_aux_vit_tiny_patch16_224", **TINY_AUX, qkv_bias=False).eval()
    state = expand_sws(aux.state_dict(), cyclic_layer_sources(6, aux.stage_sizes))
    images = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(logits(des_net(aux, 6, 64), grow_width(state, HEADS, 64), images),
                               logits(des_net(aux, 6), state, images), atol=1e-4, rtol=0)
    with pytest.raises(LearngeneError, match=r"^cannot grow to a non-integer multiple of the width: blocks.0.norm1's "
                                             r"bias would move into blocks.0.attn.qkv, which has none "
                                             r"\(qkv_bias=False\); grow to a whole multiple$"):
        grow_width(state, HEADS, 48)


def test_expand_tool_grows_and_refuses(tiny_aux, tmp_path, capsys):
    from learngene.checkpoint import load_model_folder, save_learngene
    from learngene.tools import expand

    source = tmp_path / "lg.safetensors"
    save_learngene(tiny_aux, source)
    out = tmp_path / "des6_w48"
    assert expand.main([str(source), "--depth", "6", "--width", "48", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())["model_args"]
    assert (config["embed_dim"], config["num_heads"], config["depth"]) == (48, 6, 6)
    assert json.loads((out / "init.json").read_text())["width"] == plan_width(learngene_of(tiny_aux), 48).to_dict()
    images = torch.randn(4, 1, 8, 8)
    reference = des_net(tiny_aux, 6)
    reference.load_state_dict(expand_sws(tiny_aux.state_dict(), cyclic_layer_sources(6, tiny_aux.stage_sizes)))
    with torch.no_grad():
        torch.testing.assert_close(load_model_folder(out).eval()(images), reference(images), atol=1e-4, rtol=0)
    capsys.readouterr()
    assert expand.main([str(source), "--depth", "6", "--width", "16", "--out", str(tmp_path / "narrow")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: width 16 was never trained") and err.count("\n") == 1
    assert not (tmp_path / "narrow").exists()
    # fewer MLP units than trained: refused by the same rule (it used to change the function silently)
    assert expand.main([str(source), "--depth", "6", "--mlp-ratio", "2", "--out", str(tmp_path / "mlp2")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --mlp-ratio 2 gives 64 MLP units, fewer than the 128") and err.count("\n") == 1
    assert not (tmp_path / "mlp2").exists()
    # another label space: init.json records the LayerNorms reset, fc_norm keeps its (copied) weight and bias
    out = tmp_path / "des6_w48_c5"
    assert expand.main([str(source), "--depth", "6", "--width", "48", "--num-classes", "5", "--out", str(out)]) == 0
    assert json.loads((out / "init.json").read_text())["width"]["norms_reset"] == ["norm1", "norm2"]
    fc_norm = load_model_folder(out).fc_norm.weight.detach()
    assert torch.equal(fc_norm, tiny_aux.fc_norm.weight.detach()[torch.arange(48) % 32])
