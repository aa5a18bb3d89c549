"""tools/init.py: a timm ViT initialized from a larger one (weight selection, FRONT) or from a learngene (SWS, TLEG),
with init.json recording every target tensor."""
import json
import sys
from pathlib import Path

import huggingface_hub.constants
import pytest
import timm
import torch
from timm.layers import resample_abs_pos_embed
from timm.models import save_for_hf

from learngene.baselines.front import front_transfer
from learngene.checkpoint import save_learngene, save_model_folder
from learngene.methods import parent_state_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import init as init_tool  # noqa: E402

from conftest import TINY_AUX  # noqa: E402


def released_selection(source: torch.Tensor, shape) -> torch.Tensor:
    """Weight selection's released uniform rule, written out: every (s // t)-th index along each axis of s -> t."""
    out = source
    for axis, (s, t) in enumerate(zip(source.shape, shape)):
        assert s % t == 0, "these tests use widths the source's divide"
        out = out.index_select(axis, torch.arange(0, s, s // t))
    return out


def load(folder: Path):
    return timm.create_model(f"local-dir:{folder}", pretrained=True), json.loads((folder / "init.json").read_text())


def run_tool(args, capsys) -> tuple[int, str, str]:
    rc = init_tool.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def vit_small(tmp_path_factory):
    """vit_small_patch16_224 with random weights, saved by timm itself (save_for_hf: config.json + safetensors)."""
    folder = tmp_path_factory.mktemp("source") / "vit_small"
    torch.manual_seed(1)
    model = timm.create_model("vit_small_patch16_224")
    save_for_hf(model, str(folder), safe_serialization=True)
    return folder, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def vit_tiny_folder(vit_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("init") / "vit_tiny"
    assert init_tool.main([str(vit_small[0]), "vit_tiny_patch16_224", "--out", str(out)]) == 0
    return out


def test_vit_tiny_from_vit_small_follows_the_released_rule(vit_small, vit_tiny_folder):
    _, source = vit_small
    tiny, record = load(vit_tiny_folder)
    state = tiny.state_dict()
    assert set(record["tensors"]) == set(state)  # every tensor of the target, once
    for key, value in state.items():
        entry = record["tensors"][key]
        assert entry["shape"] == list(value.shape)
        if key.startswith("head."):
            assert entry["kind"] == "fresh" and "released rule leaves the classifier" in entry["reason"]
            continue
        assert entry == {"kind": "selected", "shape": list(value.shape), "source": key,
                         "source_shape": list(source[key].shape)}  # first-N layers: block i from block i
        assert torch.equal(value, released_selection(source[key], value.shape)), key
    torch.manual_seed(0)  # the tool's --seed default: the target's own timm init
    fresh = timm.create_model("vit_tiny_patch16_224")
    assert torch.equal(state["head.weight"], fresh.head.weight) and torch.equal(state["head.bias"], fresh.head.bias)
    assert record["method"] == "weight-selection" and record["parameters_stored"] == sum(
        v.numel() for k, v in source.items())


def test_other_img_size_resamples_pos_embed_the_timm_way(vit_small, tmp_path, capsys):
    folder, source = vit_small
    rc, out, _ = run_tool([folder, "vit_tiny_patch16_224", "img_size=160", "num_classes=10", "--out",
                           tmp_path / "t160"], capsys)
    assert rc == 0 and "1 interpolated" in out
    tiny, record = load(tmp_path / "t160")
    resampled = resample_abs_pos_embed(source["pos_embed"], new_size=(10, 10), old_size=(14, 14), num_prefix_tokens=1)
    assert torch.allclose(tiny.pos_embed.detach(), released_selection(resampled, (1, 101, 192)))
    entry = record["tensors"]["pos_embed"]
    assert (entry["kind"], entry["then"], entry["source_shape"], entry["from_grid"], entry["to_grid"],
            entry["resampled_shape"]) == ("interpolated", "selected", [1, 197, 384], [14, 14], [10, 10], [1, 101, 384])
    assert record["tensors"]["head.weight"]["reason"] == "new classifier: num_classes 10 differs from the source's 1000"
    assert tiny.patch_embed.img_size == (160, 160) and tiny.num_classes == 10


def test_pooled_target_from_a_class_token_source(vit_small, tmp_path, capsys):
    folder, source = vit_small
    rc, _, _ = run_tool([folder, "vit_tiny_patch16_224", "class_token=false", "global_pool=avg", "--out",
                         tmp_path / "pooled"], capsys)
    assert rc == 0
    des, record = load(tmp_path / "pooled")
    assert record["tensors"]["fc_norm.weight"]["source"] == "norm.weight"
    assert torch.equal(des.fc_norm.weight, released_selection(source["norm.weight"], (192,)))
    assert record["tensors"]["pos_embed"]["note"].startswith("the class token's position dropped")
    assert torch.equal(des.pos_embed, released_selection(source["pos_embed"][:, 1:], (1, 196, 192)))


def test_a_tensor_the_source_lacks_is_an_error_unless_allowed(vit_small, tmp_path, capsys):
    args = [vit_small[0], "vit_tiny_patch16_224", "init_values=1e-5", "--out", tmp_path / "ls"]
    rc, _, err = run_tool(args, capsys)
    assert rc == 2 and err.startswith("error: the source has nothing to initialize blocks.0.ls1.gamma")
    assert err.count("\n") == 1 and "--allow-fresh" in err and not (tmp_path / "ls").exists()
    rc, out, _ = run_tool(args + ["--allow-fresh", "blocks.*.ls?.gamma"], capsys)
    assert rc == 0 and "26 fresh, 150 selected" in out
    tiny, record = load(tmp_path / "ls")
    assert torch.equal(tiny.blocks[3].ls2.gamma.detach(), torch.full((192,), 1e-5))
    assert record["tensors"]["blocks.3.ls2.gamma"]["reason"] == \
        "the source has no such tensor (allowed by --allow-fresh)"


def test_front_transforms_every_tensor_from_the_source_layers(vit_small, tmp_path, capsys):
    folder, _ = vit_small
    rc, _, _ = run_tool([folder, "vit_tiny_patch16_224", "depth=6", "--method", "front", "--out", tmp_path / "f"],
                        capsys)
    assert rc == 0
    des, record = load(tmp_path / "f")
    assert {e["kind"] for e in record["tensors"].values()} == {"transformed"}  # same classes: the head too
    assert record["tensors"]["blocks.2.mlp.fc1.weight"]["source"] == [f"blocks.{i}.mlp.fc1.weight" for i in range(12)]
    parent = timm.create_model(f"local-dir:{folder}", pretrained=True)
    torch.manual_seed(0)
    target = timm.create_model("vit_tiny_patch16_224", depth=6)
    expected = front_transfer(parent_state_for(parent, target), target.state_dict())
    assert all(torch.equal(des.state_dict()[k], v) for k, v in expected.items())


@pytest.fixture
def learngenes(tmp_path, tiny_aux):
    torch.manual_seed(0)
    tleg = timm.create_model("tleg_aux_vit_tiny_patch16_224", **TINY_AUX)
    save_learngene(tiny_aux, tmp_path / "sws.safetensors")
    save_learngene(tleg, tmp_path / "tleg.safetensors", kind="tleg")
    return tiny_aux.state_dict(), tleg.state_dict()


def test_sws_and_tleg_from_a_learngene_record_their_layers(tmp_path, learngenes, capsys):
    sws_state, tleg_state = learngenes
    rc, _, _ = run_tool([tmp_path / "sws.safetensors", "depth=6", "img_size=12", "num_classes=5", "--method", "sws",
                         "--out", tmp_path / "sws"], capsys)
    assert rc == 0
    des, record = load(tmp_path / "sws")
    assert set(record["tensors"]) == set(des.state_dict()) and record["layer_sources"] == [0, 0, 1, 2, 3, 4]
    for i, stage in enumerate(record["layer_sources"]):
        entry = record["tensors"][f"blocks.{i}.attn.qkv.weight"]
        assert (entry["kind"], entry["source"]) == ("copied", f"stages.{stage}.attn.qkv.weight")
        assert torch.equal(des.blocks[i].attn.qkv.weight, sws_state[f"stages.{stage}.attn.qkv.weight"])
    resampled = resample_abs_pos_embed(sws_state["pos_embed"], new_size=(6, 6), old_size=(4, 4), num_prefix_tokens=0)
    assert torch.allclose(des.pos_embed.detach(), resampled)
    assert record["tensors"]["pos_embed"]["kind"] == "interpolated"
    assert record["tensors"]["head.bias"]["kind"] == "fresh"

    rc, _, _ = run_tool([tmp_path / "tleg.safetensors", "depth=4", "--method", "tleg", "--out", tmp_path / "tleg"],
                        capsys)
    assert rc == 0
    des, record = load(tmp_path / "tleg")
    entry = record["tensors"]["blocks.3.mlp.fc2.weight"]
    assert entry["kind"] == "transformed" and entry["source"] == ["base.mlp.fc2.weight", "slope.mlp.fc2.weight"]
    assert torch.allclose(des.blocks[3].mlp.fc2.weight, tleg_state["base.mlp.fc2.weight"]
                          + 3 / 4 * tleg_state["slope.mlp.fc2.weight"])
    assert record["tensors"]["head.weight"]["kind"] == "copied"  # the learngene's own classes


@pytest.fixture(scope="module")
def resnet_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resnet") / "resnet"
    save_model_folder(timm.create_model("test_resnet"), folder, preprocessing=None, model_args={})
    return folder


@pytest.mark.parametrize("case, expected", [
    ("not_a_vit", "is a ResNet, not a timm VisionTransformer"),
    ("smaller_source", "is wider than the parent's (1, 1, 192): weight selection only makes models narrower"),
    ("deeper_target", "has 13 blocks layers, the source"),
    ("unknown_target", "unknown timm model 'vit_no_such_model'"),
    ("unreachable_img_size", "img_size [100, 100] is not a multiple of its patch size [16, 16]"),
    ("missing_source", "is neither an existing folder, an hf-hub: id nor a timm model name"),
    ("learngene_target", "'s Des-Nets are vit_tiny_patch16_224, not vit_small_patch16_224"),
])
def test_bad_input_is_one_line_and_writes_nothing(case, expected, vit_small, vit_tiny_folder, resnet_folder, tmp_path,
                                                  tiny_aux, capsys):
    save_learngene(tiny_aux, tmp_path / "sws.safetensors")
    args = {"not_a_vit": [resnet_folder, "vit_tiny_patch16_224"],
            "smaller_source": [vit_tiny_folder, "vit_small_patch16_224"],
            "deeper_target": [vit_small[0], "vit_tiny_patch16_224", "depth=13"],
            "unknown_target": [vit_small[0], "vit_no_such_model"],
            "unreachable_img_size": [vit_small[0], "vit_tiny_patch16_224", "img_size=100"],
            "missing_source": [tmp_path / "nothing_here", "vit_tiny_patch16_224"],
            "learngene_target": [tmp_path / "sws.safetensors", "vit_small_patch16_224", "depth=6", "--method", "sws"],
            }[case]
    rc, out, err = run_tool(args + ["--out", tmp_path / "out"], capsys)
    assert (rc, out) == (2, "") and err.startswith("error: ") and err.count("\n") == 1 and expected in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("source", ["vit_tiny_patch16_224.augreg_in21k",
                                    "hf-hub:timm/vit_tiny_patch16_224.augreg_in21k"])
def test_pretrained_source_offline_and_not_cached_is_one_line(source, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    rc, _, err = run_tool([source, "vit_tiny_patch16_224", "--out", tmp_path / "out"], capsys)
    assert rc == 2 and err.startswith(f"error: cannot load pretrained {source} (") and err.count("\n") == 1
    assert "or pass a local model folder" in err and not (tmp_path / "out").exists()
