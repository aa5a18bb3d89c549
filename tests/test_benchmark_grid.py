"""A reduced depth x width grid end to end: 2 depths x 4 widths, every grid method, 2 learngene seeds, tiny models."""
import csv
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from learngene.tools import benchmark

ROOT = Path(__file__).resolve().parents[1]

DATA = "data: {name: digits, img_size: 8, batch_size: 32, train_limit: 64}\n"
RECIPE = "optim: {lr: 1.0e-3, epochs: 1, warmup_epochs: 0, min_lr: 1.0e-5}\n"  # device auto, as shipped
AUX = ("model: {name: sws_aux_vit_tiny_patch16_224, kwargs: {img_size: 8, patch_size: 2, in_chans: 1, "
       "num_classes: 10, embed_dim: 16, num_heads: 4, stage_sizes: [1, 2, 1]}}\n")
CONFIGS = {  # 4-dim heads: widths 8 (1/2), 12 (3/4), 16 (the learngene's), 32 (2x); a 24-wide IMwLM parent
    "ancestry.yaml": "model: {name: vit_small_patch16_224, kwargs: {img_size: 8, patch_size: 2, in_chans: 1, "
                     "num_classes: 10, embed_dim: 24, depth: 4, num_heads: 6, class_token: false, "
                     "global_pool: avg}}\n" + DATA + RECIPE,
    "aux.yaml": AUX + DATA + RECIPE,
    "aux_elastic.yaml": AUX + "elastic: {widths: [8, 12, 16], random_widths: 1, sample_depths: [3, 4]}\n" + DATA
                        + RECIPE,
    "plain.yaml": DATA + RECIPE,
}
METHODS = "[sws-elastic, sws, sws-select, weight-selection, scratch]"


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_reduced_grid(tmp_path, capsys):
    for name, text in CONFIGS.items():
        (tmp_path / name).write_text(text)
    parts = {"ancestry": "ancestry", "sws_aux": "aux", "elastic_aux": "aux_elastic", "tleg_aux": "aux",
             "simple_lg": "plain", "finetune": "plain", "trained": "plain"}
    lines = [f"output: {tmp_path / 'grid'}", "depths: [3, 4]", "widths: [8, 12, 16, 32]", f"methods: {METHODS}",
             "seeds: [0, 1]", "learngene_seeds: [0, 1]", "trained_depths: [4]",
             "workers: 1", "weight_selection_head_aware: true", "weight_selection_select_head: true"]
    lines += [f"{part}: {{config: {tmp_path / name}.yaml}}" for part, name in parts.items()]
    (tmp_path / "grid.yaml").write_text("\n".join(lines) + "\n")
    assert benchmark.main(["--config", str(tmp_path / "grid.yaml")]) == 0
    out = tmp_path / "grid"
    console = capsys.readouterr().out

    runs = read_csv(out / "results.csv")
    assert list(runs[0])[:4] == ["method", "depth", "width", "phase"] and {r["split"] for r in runs} == {"test"}
    cells = {(r["method"], r["width"]) for r in runs if r["phase"] == "no-tune"}
    assert cells == {("sws-elastic", w) for w in ("8", "12", "16", "32")} | {("sws", "16")} \
        | {("sws-select", w) for w in ("8", "12")} | {("weight-selection", w) for w in ("8", "12", "16")} \
        | {("scratch", w) for w in ("8", "12", "16", "32")}
    # one Des-Net per learngene seed for the learned initializers (no-tune and fine-tuned), a seed per replicate else
    for method in ("sws-elastic", "sws", "sws-select"):
        assert {(r["learngene_seed"], r["seed"]) for r in runs if r["method"] == method} == {("0", "0"), ("1", "1")}
    assert {r["learngene_seed"] for r in runs if r["method"] in ("weight-selection", "scratch")} == {""}
    assert len(runs) == 2 * (4 + 1 + 2 + 3 + 4) * 2 * 2 + 2  # depths x cells x units x phases, + Trained (2 seeds)
    params = {(r["method"], r["width"]): int(r["params"]) for r in runs if r["depth"] == "3"}
    assert params["sws-elastic", "8"] == params["sws-select", "8"] == params["scratch", "8"] < params["sws", "16"]
    # one elastic learngene stores the same for every cell
    assert len({r["params_stored"] for r in runs if r["method"] == "sws-elastic"}) == 1

    # Growth at 2x is exact: the 32-wide Des-Nets hit the same test images as the 16-wide ones of their learngene.
    for depth in (3, 4):
        for seed in (0, 1):
            done = {w: json.loads((out / "init" / "sws-elastic" / cell / f"seed{seed}" / "done.json").read_text())
                    for w, cell in ((16, f"depth{depth}"), (32, f"depth{depth}-width32"))}
            assert done[32]["result"]["test"]["correct"] == done[16]["result"]["test"]["correct"]
            assert done[32]["result"]["test"]["loss"] == pytest.approx(done[16]["result"]["test"]["loss"], abs=1e-5)
    plan = json.loads((out / "init" / "sws-elastic" / "depth3-width8" / "seed0" / "model" / "init.json").read_text())
    assert (plan["width"]["width"], plan["width"]["embedding"]) == (8, "narrow")
    select = json.loads((out / "init" / "sws-select" / "depth3-width12" / "seed1" / "model" / "init.json").read_text())
    assert (select["width"], select["num_heads"], select["head_aware"]) == (12, 3, True)
    assert select["sws"]["source"] == str(out / "learngenes" / "sws" / "seed1" / "run" / "learngene.safetensors")
    # Post-hoc selection keeps every other channel of the SWS Des-Net (uniform rule, 16 -> 8), whole heads 0 and 2
    # of q, k and v, and the trained classifier's selected columns.
    full = load_file(out / "init" / "sws" / "depth3" / "seed0" / "model" / "model.safetensors")
    half = load_file(out / "init" / "sws-select" / "depth3-width8" / "seed0" / "model" / "model.safetensors")
    assert torch.equal(half["head.weight"], full["head.weight"][:, ::2])
    assert torch.equal(half["head.bias"], full["head.bias"])
    rows = torch.cat([part * 16 + torch.cat([torch.arange(0, 4), torch.arange(8, 12)]) for part in range(3)])
    assert torch.equal(half["blocks.1.attn.qkv.weight"], full["blocks.1.attn.qkv.weight"][rows][:, ::2])

    verdicts = read_csv(out / "verdicts.csv")
    assert {v["method"] for v in verdicts} == {"sws-elastic"}
    assert {(v["phase"], v["depth"], v["width"], v["baseline"]) for v in verdicts} == {
        (p, d, w, b) for p in ("no-tune", "fine-tuned") for d in ("3", "4") for w, b in
        [("8", "sws-select"), ("8", "weight-selection"), ("8", "scratch"), ("12", "sws-select"),
         ("12", "weight-selection"), ("12", "scratch"), ("16", "sws"), ("16", "weight-selection"), ("16", "scratch"),
         ("32", "scratch")]} | {("no-tune", "4", "16", "trained"), ("fine-tuned", "4", "16", "trained")}
    # Each difference by another route: the mean test top-1 of the method's runs minus the baseline's, from
    # results.csv (4 decimals; Trained has its own phase). 2 learngene seeds: no interval is calibrated, so no cell
    # gets a verdict, and each says why.
    top1 = {}
    for r in runs:
        top1.setdefault((r["method"], r["depth"], r["width"], r["phase"]), []).append(float(r["top1"]))
    mean_difference = {}
    for v in verdicts:
        elastic = top1[v["method"], v["depth"], v["width"], v["phase"]]
        baseline = top1[v["baseline"], v["depth"], v["width"], "trained" if v["baseline"] == "trained" else v["phase"]]
        expected = sum(elastic) / len(elastic) - sum(baseline) / len(baseline)
        assert float(v["diff"]) == pytest.approx(expected, abs=2e-4), v
        assert v["low"] == v["high"] == "nan" and v["verdict"] == "2 seeds: interval not calibrated"
        mean_difference[v["phase"], v["depth"], v["width"], v["baseline"]] = expected

    # IMwLM's head selected (the ancestry has the Des-Nets' 10 classes): its no-tune claim is not at chance by
    # construction; with 2 seeds it gets no verdict either
    ws = json.loads((out / "init" / "weight-selection" / "depth3-width8" / "seed0" / "model" / "init.json").read_text())
    assert ws["select_head"] is True
    markdown = (out / "results.md").read_text()
    imwlm = markdown.split("points above IMwLM at the same cell, no tuning |")[1].splitlines()[0]
    assert imwlm.split("**")[-2] == "2 seeds: interval not calibrated"
    evidence = [cell.split(": ")[0] for cell in imwlm.split(" | ")[0].strip().split("; ")]
    assert evidence == [f"depth {d} width {w}" for d in (3, 4) for w in (8, 12)]  # every narrower cell, nothing else
    for d in (3, 4):
        for w in (8, 12):
            assert f"depth {d} width {w}: {mean_difference['no-tune', str(d), str(w), 'weight-selection']:+.1f} [" \
                in imwlm
    growth = markdown.split("keeps the no-tune function (logits; a check of an identity, not a claim) |")[1].splitlines()[0]
    assert "4 Des-Nets (widths 32 x depths x learngene seeds): largest logit difference" in growth
    assert growth.endswith("| **reproduced** |")
    for heading in ("Claims of the elastic learngene on the depth x width grid, checked on this run", "Heatmaps",
                    "No tuning after initialization", "Parameters stored",
                    "Training cost", "What each spread covers"):
        assert heading in markdown
    assert "One pre-trained model per cell (8 cells)" in markdown
    heatmaps = sorted(p.name for p in out.glob("heatmap_*.png"))
    assert heatmaps == sorted(f"heatmap_{m}_{p}.png" for m in ("sws-elastic", "sws", "sws-select", "weight-selection",
                                                                "scratch") for p in ("no-tune", "fine-tuned"))
    for name in heatmaps:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"![{name}]({name})" in markdown
    assert "issue 13" not in markdown + console
    assert "Claims of the elastic learngene on the depth x width grid:" in console
    assert "] sws-elastic depth4 width32 seed1: test top-1" in console


def test_bad_grid_widths(tmp_path, capsys):
    config = str(ROOT / "configs" / "benchmark" / "digits_grid.yaml")
    assert benchmark.main(["--config", config, f"output={tmp_path / 'grid'}", "widths=[32,40]"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "widths [40] are not multiples of the learngene's head dim 16" in err
    assert benchmark.main(["--config", config, f"output={tmp_path / 'grid'}", "width_selection_elements=random"]) == 2
    assert "width_selection_elements='random'" in capsys.readouterr().err
    assert not (tmp_path / "grid").exists()


def test_front_on_the_grid(tmp_path):
    """FRONT makes every width of the grid from the 24-wide ancestry (narrower and wider), each cell compared with
    the elastic learngene, and the grid claims have its row."""
    for name, text in CONFIGS.items():
        (tmp_path / name).write_text(text)
    parts = {"ancestry": "ancestry", "sws_aux": "aux", "elastic_aux": "aux_elastic", "finetune": "plain",
             "trained": "plain"}
    lines = [f"output: {tmp_path / 'grid'}", "depths: [3]", "widths: [8, 16, 32]", "methods: [sws-elastic, front]",
             "seeds: [0]", "learngene_seeds: [0]", "trained_depths: [3]", "workers: 1"]
    lines += [f"{part}: {{config: {tmp_path / name}.yaml}}" for part, name in parts.items()]
    (tmp_path / "grid.yaml").write_text("\n".join(lines) + "\n")
    assert benchmark.main(["--config", str(tmp_path / "grid.yaml")]) == 0
    out = tmp_path / "grid"
    runs = read_csv(out / "results.csv")
    assert {(r["width"], r["phase"]) for r in runs if r["method"] == "front"} == \
        {(w, p) for w in ("8", "16", "32") for p in ("no-tune", "fine-tuned")}
    for width, cell in ((8, "depth3-width8"), (32, "depth3-width32")):
        config = json.loads((out / "init" / "front" / cell / "seed0" / "model" / "config.json").read_text())
        assert (config["model_args"]["embed_dim"], config["model_args"]["num_heads"]) == (width, width // 4)
    verdicts = read_csv(out / "verdicts.csv")
    assert {(v["phase"], v["width"]) for v in verdicts if v["baseline"] == "front"} == \
        {(p, w) for p in ("no-tune", "fine-tuned") for w in ("8", "16", "32")}
    markdown = (out / "results.md").read_text()
    row = markdown.split("| Elastic above FRONT in every cell, no tuning | ")[1].splitlines()[0]
    assert row.count("depth 3 width") == 3 and "not checked" not in row
    assert (out / "heatmap_front_no-tune.png").is_file()
