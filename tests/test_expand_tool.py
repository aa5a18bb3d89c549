import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from learngene.checkpoint import load_learngene, save_learngene
from learngene.tools import expand

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def learngene_file(tiny_aux, tmp_path):
    path = tmp_path / "lg.safetensors"
    save_learngene(tiny_aux, path)
    return path


def test_learngene_file_round_trip(tiny_aux, learngene_file):
    lg = load_learngene(learngene_file)
    assert (lg.kind, lg.model) == ("sws", "sws_aux_vit_tiny_patch16_224")
    assert lg.model_args["stage_sizes"] == [3, 3, 4, 3, 3]
    rebuilt = lg.build_aux().eval()
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(rebuilt(x), tiny_aux(x), atol=0, rtol=0)


def test_des_folder_loads_in_plain_timm(tiny_aux, learngene_file, tmp_path, capsys):
    out = tmp_path / "des12"
    assert expand.main([str(learngene_file), "--depth", "12", "--out", str(out)]) == 0
    assert "depth 12" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "init.json", "model.safetensors"]
    plan = json.loads((out / "init.json").read_text())
    assert plan["layer_sources"] == [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4] and plan["method"] == "sws"
    weights = load_file(out / "model.safetensors")
    assert "blocks.11.attn.qkv.weight" in weights and not any(k.startswith("stages.") for k in weights)
    torch.testing.assert_close(weights["blocks.7.mlp.fc1.weight"], tiny_aux.stages[2].mlp.fc1.weight.detach())

    # A process that never imports learngene rebuilds exactly these weights with stock timm.
    script = (
        "import sys, torch, timm\n"
        "from safetensors.torch import load_file\n"
        f"m = timm.create_model('local-dir:{out}', pretrained=True)\n"
        "assert 'learngene' not in sys.modules\n"
        f"ref = load_file('{out / 'model.safetensors'}')\n"
        "sd = m.state_dict()\n"
        "assert sorted(sd) == sorted(ref), 'keys differ'\n"
        "assert all(torch.equal(sd[k], ref[k]) for k in ref)\n"
        "print(type(m).__name__, len(m.blocks), m.global_pool, m.cls_token is None)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["VisionTransformer", "12", "avg", "True"]


def test_other_num_classes_and_order(learngene_file, tmp_path, capsys):
    out = tmp_path / "des7"
    assert expand.main([str(learngene_file), "--depth", "7", "--out", str(out), "--order", "front-last-mid",
                        "--num-classes", "4"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["num_classes"] == 4 and config["model_args"]["depth"] == 7
    assert json.loads((out / "init.json").read_text())["layer_sources"] == [0, 0, 1, 1, 2, 3, 4]
    # At depth 7 front-last-mid places the layers as the default order does: the summary says so.
    assert capsys.readouterr().out == (
        f"wrote {out}: sws, depth 7, width 32, 0.090M params, 0.065M stored to initialize, cyclic order "
        "front-last-mid (at depth 7 the same plan as front-mid-last), plan [0, 0, 1, 1, 2, 3, 4]\n")

    out = tmp_path / "des8"
    assert expand.main([str(learngene_file), "--depth", "8", "--out", str(out), "--order", "front-last-mid"]) == 0
    assert capsys.readouterr().out.endswith(", cyclic order front-last-mid, plan [0, 0, 1, 1, 2, 3, 3, 4]\n")
    out = tmp_path / "des8r"
    assert expand.main([str(learngene_file), "--depth", "8", "--out", str(out), "--strategy", "random",
                        "--seed", "2"]) == 0
    plan = json.loads((out / "init.json").read_text())["layer_sources"]
    assert capsys.readouterr().out.endswith(f", random (seed 2), plan {plan}\n")


def test_help_shows_the_examples_and_defaults(capsys):
    with pytest.raises(SystemExit) as e:
        expand.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "examples:\n    python tools/expand.py runs/digits/aux/learngene.safetensors --depth 12" in text
    assert "runs/digits/tleg_aux/learngene.safetensors --method tleg" in text
    assert "--model-args '{\"embed_dim\": 64, \"num_heads\": 4}'" in text
    flat = " ".join(text.split())
    assert "which parent layers (default first)" in flat and "which elements per axis (default uniform)" in flat
    assert "weight selection and front keep the parent's width, heads and MLP ratio unless set here" in flat
    assert "runs/digits/ancestry/model --method front --depth 9" in text
    assert "fraction of DCT frequencies kept per axis, in (0, 1] (default 1.0)" in flat


def test_ctrl_c_is_one_line_and_leaves_no_folder(learngene_file, tmp_path, capsys, monkeypatch):
    def interrupted_write(*args, **kwargs):
        raise KeyboardInterrupt

    import timm.models
    monkeypatch.setattr(timm.models, "save_for_hf", interrupted_write)  # Ctrl-C while the folder is being written
    out = tmp_path / "des"
    assert expand.main([str(learngene_file), "--depth", "4", "--out", str(out)]) == 130
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "interrupted: nothing was written; run the same command again\n")
    assert [p.name for p in tmp_path.iterdir()] == ["lg.safetensors"]  # no folder, no temporary one


def error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    return err[0]


@pytest.mark.parametrize("args,message", [
    (["--depth", "0"], "argument --depth: must be an integer >= 1, got 0"),
    (["--depth", "-2"], "argument --depth: must be an integer >= 1, got -2"),
    (["--depth", "5", "--order", "sideways"], "unknown order"),
    (["--depth", "5", "--strategy", "greedy"], "invalid choice"),
    (["--depth", "five"], "invalid int value"),
])
def test_bad_arguments(learngene_file, tmp_path, capsys, args, message):
    out = tmp_path / "out"
    assert expand.main([str(learngene_file), "--out", str(out), *args]) == 2
    assert message in error_line(capsys)
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["lg.safetensors"]


def test_bad_files(learngene_file, tmp_path, capsys):
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(learngene_file.read_bytes()[:5000])
    assert expand.main([str(truncated), "--depth", "4", "--out", str(tmp_path / "a")]) == 2
    assert "truncated" in error_line(capsys)

    foreign = tmp_path / "foreign.safetensors"
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(2)}, foreign)
    assert expand.main([str(foreign), "--depth", "4", "--out", str(tmp_path / "b")]) == 2
    assert "not a learngene file" in error_line(capsys)

    assert expand.main([str(tmp_path / "missing.safetensors"), "--depth", "4", "--out", str(tmp_path / "c")]) == 2
    assert "does not exist" in error_line(capsys)
    assert not any((tmp_path / name).exists() for name in "abc")


def test_existing_output_is_left_alone(learngene_file, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert expand.main([str(learngene_file), "--depth", "4", "--out", str(out)]) == 2
    assert "already exists and is not empty" in error_line(capsys)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left behind
