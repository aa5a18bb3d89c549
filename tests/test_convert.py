import argparse
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from learngene.checkpoint import load_learngene
from learngene.convert import convert_sws_official, convert_tleg_official, sws_key_table, tleg_key_table
from learngene.models import SWSAuxViT, TLEGAuxViT
from learngene.tools import convert
from learngene.tools import expand

ROOT = Path(__file__).resolve().parents[1]

# Tiny official-shaped Aux-Nets: 8x8 one-channel images in 2x2 patches (16 tokens), 10 classes, MLP ratio 4.
WIDTH, CLASSES = 48, 10


def block_shapes(width=WIDTH) -> dict[str, tuple]:
    """(layer.param) -> shape of one official block, e.g. attn.qkv.weight -> (144, 48)."""
    hidden = 4 * width
    return {"norm1.weight": (width,), "norm1.bias": (width,),
            "attn.qkv.weight": (3 * width, width), "attn.qkv.bias": (3 * width,),
            "attn.proj.weight": (width, width), "attn.proj.bias": (width,),
            "norm2.weight": (width,), "norm2.bias": (width,),
            "mlp.fc1.weight": (hidden, width), "mlp.fc1.bias": (hidden,),
            "mlp.fc2.weight": (width, hidden), "mlp.fc2.bias": (width,)}


def official_stem(width=WIDTH, in_chans=1, patch=2, tokens=16, classes=CLASSES) -> dict[str, torch.Tensor]:
    return {"patch_embed.proj.weight": torch.randn(width, in_chans, patch, patch),
            "patch_embed.proj.bias": torch.randn(width), "pos_embed": torch.randn(1, tokens, width),
            "norm.weight": torch.randn(width), "norm.bias": torch.randn(width),
            "head.weight": torch.randn(classes, width), "head.bias": torch.randn(classes)}


def official_sws_state(num_stages=5, width=WIDTH, **stem) -> dict[str, torch.Tensor]:
    """Keys and shapes of AlphaXia/SWS SWS_vit.py: blocks.block.<layer>.instances.<stage>.<param>."""
    torch.manual_seed(0)
    state = official_stem(width, **stem)
    for stage in range(num_stages):
        for name, shape in block_shapes(width).items():
            layer, param = name.rsplit(".", 1)
            state[f"blocks.block.{layer}.instances.{stage}.{param}"] = torch.randn(shape)
    return state


def official_tleg_state(width=WIDTH, **stem) -> dict[str, torch.Tensor]:
    """Keys and shapes of AlphaXia/TLEG TLEG_vit.py + modules_with_LE.py: LELinear / LELayerNorm hold
    weight_base, weight_ilayer, bias_base, bias_ilayer in instances.0."""
    torch.manual_seed(1)
    state = official_stem(width, **stem)
    for name, shape in block_shapes(width).items():
        layer, param = name.rsplit(".", 1)
        for part in ("base", "ilayer"):
            state[f"blocks.block.{layer}.instances.0.{param}_{part}"] = torch.randn(shape)
    return state


def save_checkpoint(path: Path, state: dict, **args) -> Path:
    """The official main.py's checkpoint.pth layout, args (an argparse.Namespace) included."""
    torch.save({"model": state, "model_ema": {k: v + 1 for k, v in state.items()}, "optimizer": {"state": {}},
                "lr_scheduler": {"t_initial": 150}, "epoch": 149, "scaler": {"scale": 65536.0},
                "args": argparse.Namespace(model="aux_deit_small_patch16_224_L16_33433", epochs=150, lr=5e-4,
                                           teacher_model="levit_384", distillation_type="soft", **args)}, path)
    return path


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_sws_every_official_tensor_lands_where_the_table_says():
    official = official_sws_state()
    table = sws_key_table(5)
    assert table["blocks.block.attn.qkv.instances.3.weight"] == "stages.3.attn.qkv.weight"
    assert table["norm.weight"] == "fc_norm.weight" and len(table) == 7 + 5 * 12
    learngene = convert_sws_official(official)
    assert sorted(learngene.state_dict) == sorted(table.values())
    for official_key, our_key in table.items():
        assert torch.equal(learngene.state_dict[our_key], official[official_key]), official_key
    aux = learngene.build_aux()  # strict
    assert isinstance(aux, SWSAuxViT) and aux.stage_sizes == (3, 3, 4, 3, 3)
    assert (aux.num_heads, aux.stages[0].attn.head_dim, aux.fc_norm.eps) == (12, 4, 1e-6)
    assert learngene.extra["official_layer_norm_eps"] == 1e-5 and learngene.extra["num_heads"] == 12


def test_tleg_every_official_tensor_lands_where_the_table_says():
    official = official_tleg_state(width=64)
    table = tleg_key_table()
    assert table["blocks.block.mlp.fc1.instances.0.weight_base"] == "base.mlp.fc1.weight"
    assert table["blocks.block.mlp.fc1.instances.0.weight_ilayer"] == "slope.mlp.fc1.weight"
    learngene = convert_tleg_official(official)
    assert sorted(learngene.state_dict) == sorted(table.values()) and len(table) == 7 + 2 * 12
    for official_key, our_key in table.items():
        assert torch.equal(learngene.state_dict[our_key], official[official_key]), official_key
    aux = learngene.build_aux()
    assert isinstance(aux, TLEGAuxViT) and aux.num_layers == 12
    assert aux.num_heads == 1 and learngene.extra["num_heads"] == 1  # DeiT's 64-dim heads: width 64 -> 1 head


def test_official_aux_s_defaults():
    """Aux-S at its real shapes (224 px, 16 px patches, width 384, 1000 classes) with the official defaults."""
    deit_s = dict(in_chans=3, patch=16, tokens=196, classes=1000)
    sws = convert_sws_official(official_sws_state(width=384, **deit_s))
    assert sws.model == "sws_aux_vit_small_patch16_224"
    assert sws.model_args == dict(img_size=[224, 224], patch_size=[16, 16], in_chans=3, num_classes=1000,
                                  embed_dim=384, num_heads=12, mlp_ratio=4.0, qkv_bias=True,
                                  stage_sizes=[3, 3, 4, 3, 3])
    tleg = convert_tleg_official(official_tleg_state(width=384, **deit_s))
    assert tleg.model == "tleg_aux_vit_small_patch16_224"
    assert (tleg.model_args["num_heads"], tleg.model_args["num_layers"]) == (6, 12)
    assert tleg.build_aux().base.attn.head_dim == 64


def test_sws_checkpoint_converts_loads_strictly_and_expands(tmp_path, capsys):
    official = official_sws_state()
    checkpoint = save_checkpoint(tmp_path / "checkpoint.pth", official)
    out = tmp_path / "sws.safetensors"
    assert convert.main([str(checkpoint), "--from", "sws-official", "--out", str(out), "--num-heads", "6"]) == 0
    assert "6 heads (official 12)" in capsys.readouterr().out
    learngene = load_learngene(out)
    aux = learngene.build_aux()
    assert aux.num_heads == 6 and aux.stages[0].attn.head_dim == 8
    extra = learngene.extra
    assert (extra["num_heads"], extra["official_num_heads"]) == (6, 12)
    assert (extra["official_layer_norm_eps"], extra["layer_norm_eps"]) == (1e-5, 1e-6)
    assert extra["pooling"] == "mean over tokens, then fc_norm"
    assert extra["teacher"] == "levit_384"
    record = extra["official_checkpoint"]
    assert (record["file"], record["epoch"], record["state"]) == ("checkpoint.pth", 149, "model")
    assert record["args"]["lr"] == 5e-4 and len(record["sha256"]) == 64

    des = tmp_path / "des12"
    assert expand.main([str(out), "--depth", "12", "--out", str(des)]) == 0
    weights = load_file(des / "model.safetensors")
    # Default plan for stages (3,3,4,3,3) at depth 12: 0,0,0,1,1,1,2,2,3,3,4,4.
    assert torch.equal(weights["blocks.7.mlp.fc1.weight"], official["blocks.block.mlp.fc1.instances.2.weight"])
    assert torch.equal(weights["blocks.11.norm2.bias"], official["blocks.block.norm2.instances.4.bias"])
    assert torch.equal(weights["fc_norm.weight"], official["norm.weight"])
    assert torch.equal(weights["head.bias"], official["head.bias"])


def test_ema_weights_on_request(tmp_path):
    official = official_sws_state()
    checkpoint = save_checkpoint(tmp_path / "checkpoint.pth", official)
    out = tmp_path / "ema.safetensors"
    assert convert.main([str(checkpoint), "--from", "sws-official", "--out", str(out), "--state", "model_ema"]) == 0
    state = load_learngene(out).state_dict
    assert torch.equal(state["stages.1.attn.proj.weight"], official["blocks.block.attn.proj.instances.1.weight"] + 1)


def test_tleg_checkpoint_converts_and_expands(tmp_path):
    official = official_tleg_state()
    checkpoint = save_checkpoint(tmp_path / "checkpoint.pth", official)
    out = tmp_path / "tleg.safetensors"
    assert convert.main([str(checkpoint), "--from", "tleg-official", "--out", str(out), "--num-heads", "4",
                         "--num-layers", "12"]) == 0
    learngene = load_learngene(out)
    assert learngene.kind == "tleg" and learngene.build_aux().num_heads == 4
    des = tmp_path / "des6"
    assert expand.main([str(out), "--method", "tleg", "--depth", "6", "--out", str(des)]) == 0
    weights = load_file(des / "model.safetensors")
    base, slope = (official[f"blocks.block.attn.qkv.instances.0.weight_{part}"] for part in ("base", "ilayer"))
    torch.testing.assert_close(weights["blocks.3.attn.qkv.weight"], base + (3 / 6) * slope, atol=0, rtol=0)


def test_bare_state_dict_is_accepted(tmp_path):
    official = official_sws_state(num_stages=2)
    torch.save(official, tmp_path / "state.pth")
    out = tmp_path / "lg.safetensors"
    assert convert.main([str(tmp_path / "state.pth"), "--from", "sws-official", "--out", str(out),
                         "--stage-sizes", "2,3"]) == 0
    learngene = load_learngene(out)
    assert learngene.model_args["stage_sizes"] == [2, 3] and learngene.extra["official_checkpoint"]["state"] == ""


@pytest.mark.parametrize("case,message", [
    ("missing-key", "misses 1 key(s), e.g. blocks.block.mlp.fc2.instances.4.bias"),
    ("extra-key", "has key(s) no official Aux-Net has, e.g. cls_token"),
    ("tleg-as-sws", "not an official SWS Aux-Net"),
    ("sws-as-tleg", "not an official TLEG Aux-Net"),
    ("stage-count", "has 5 stages but --stage-sizes 3,3 gives 2"),
    ("heads", "which 5 heads do not divide"),
    ("tleg-width", "not a DeiT width with 64-dim heads: pass --num-heads"),
    ("shape", "does not fit the sws_aux_vit_tiny_patch16_224 it names (shape: stages.2.attn.qkv.weight [144, 49] vs [144, 48]"),
    ("foreign", "cannot read"),
    ("missing-file", "does not exist"),
    ("no-model", "has no state dict under 'model'"),
    ("wrong-option", "--num-layers applies to --from tleg-official"),
    ("exists", "already exists"),
])
def test_bad_input_is_one_line(tmp_path, capsys, case, message):
    state = official_tleg_state() if case in ("tleg-as-sws", "sws-as-tleg", "tleg-width") else official_sws_state()
    source = "tleg-official" if case in ("sws-as-tleg", "tleg-width") else "sws-official"
    options = []
    if case == "missing-key":
        del state["blocks.block.mlp.fc2.instances.4.bias"]
    elif case == "extra-key":
        state["cls_token"] = torch.zeros(1, 1, WIDTH)
    elif case == "sws-as-tleg":
        state, source = official_sws_state(), "tleg-official"
    elif case == "stage-count":
        options = ["--stage-sizes", "3,3"]
    elif case == "heads":
        options = ["--num-heads", "5"]
    elif case == "shape":
        state["blocks.block.attn.qkv.instances.2.weight"] = torch.randn(3 * WIDTH, WIDTH + 1)
    elif case == "wrong-option":
        options = ["--num-layers", "12"]
    checkpoint = save_checkpoint(tmp_path / "checkpoint.pth", state)
    if case == "foreign":
        checkpoint.write_text("not a checkpoint")
    elif case == "missing-file":
        checkpoint = tmp_path / "nothing.pth"
    elif case == "no-model":
        torch.save({"args": argparse.Namespace(lr=1.0), "epoch": 3}, checkpoint)
    out = tmp_path / "lg.safetensors"
    if case == "exists":
        out.write_text("keep me")
    before = sorted((p.name, p.read_bytes()) for p in tmp_path.iterdir() if p.is_file())
    assert convert.main([str(checkpoint), "--from", source, "--out", str(out), *options]) == 2
    assert message in error_line(capsys)
    assert sorted((p.name, p.read_bytes()) for p in tmp_path.iterdir() if p.is_file()) == before
