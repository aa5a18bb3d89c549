"""A reduced benchmark end to end: two depths, tiny models, a few steps; outputs and cache reuse."""
import csv
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import benchmark  # noqa: E402

DATA = "data: {name: digits, img_size: 8, batch_size: 32, train_limit: 96}\n"
RECIPE = "optim: {lr: 1.0e-3, epochs: 1, warmup_epochs: 0, min_lr: 1.0e-5}\ndevice: cpu\n"
CONFIGS = {
    "ancestry.yaml": "model: {name: vit_small_patch16_224, kwargs: {img_size: 8, patch_size: 2, in_chans: 1, "
                     "num_classes: 10, embed_dim: 32, depth: 4, num_heads: 4, class_token: false, "
                     "global_pool: avg}}\n" + DATA + RECIPE,
    "aux.yaml": "model: {name: sws_aux_vit_tiny_patch16_224, kwargs: {img_size: 8, patch_size: 2, in_chans: 1, "
                "num_classes: 10, embed_dim: 16, num_heads: 2, stage_sizes: [1, 2, 1]}}\n" + DATA + RECIPE,
    "tleg_aux.yaml": "model: {name: tleg_aux_vit_tiny_patch16_224, kwargs: {img_size: 8, patch_size: 2, "
                     "in_chans: 1, num_classes: 10, embed_dim: 16, num_heads: 2, num_layers: 3}}\n" + DATA + RECIPE,
    "plain.yaml": DATA + RECIPE,
}


@pytest.fixture
def bench_args(tmp_path):
    for name, text in CONFIGS.items():
        (tmp_path / name).write_text(text)
    parts = {"ancestry": "ancestry", "sws_aux": "aux", "tleg_aux": "tleg_aux", "simple_lg": "plain",
             "finetune": "plain", "trained": "plain"}
    lines = [f"output: {tmp_path / 'bench'}", "depths: [2, 3]", "methods: [sws, weight-selection]",
             "seeds: [0, 1]", "finetune_epochs: 1"]
    lines += [f"{part}: {{config: {tmp_path / name}.yaml}}" for part, name in parts.items()]
    (tmp_path / "bench.yaml").write_text("\n".join(lines) + "\n")
    return ["--config", str(tmp_path / "bench.yaml")]


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_reduced_benchmark_outputs_and_cache(bench_args, tmp_path, capsys):
    assert benchmark.main(bench_args) == 0
    out = tmp_path / "bench"
    runs = read_csv(out / "runs.csv")
    # 2 methods x 2 depths x 2 seeds x (no-tune, fine-tuned) + Trained 2 depths x 2 seeds
    assert len(runs) == 2 * 2 * 2 * 2 + 2 * 2
    assert {(r["method"], r["phase"]) for r in runs} == {
        ("sws", "no-tune"), ("sws", "fine-tuned"), ("weight-selection", "no-tune"),
        ("weight-selection", "fine-tuned"), ("trained", "trained")}
    assert all(0.0 <= float(r["top1"]) <= 100.0 and float(r["top1"]) <= float(r["top5"]) for r in runs)

    results = read_csv(out / "results.csv")
    assert len(results) == 2 * 2 * 2 + 2
    sws2 = next(r for r in results if (r["method"], r["depth"], r["phase"]) == ("sws", "2", "fine-tuned"))
    assert sws2["seeds"] == "2" and sws2["epochs"] == "1.0000"
    # SWS stores its whole learngene; weight selection the whole ancestry; both the same Des-Net size.
    ws2 = next(r for r in results if (r["method"], r["depth"], r["phase"]) == ("weight-selection", "2", "no-tune"))
    assert ws2["params"] == sws2["params"] and int(ws2["params_stored"]) > int(sws2["params_stored"]) > 0
    seeds = [float(r["top1"]) for r in runs if (r["method"], r["depth"], r["phase"]) == ("sws", "2", "fine-tuned")]
    assert float(sws2["top1"]) == pytest.approx(sum(seeds) / 2, abs=1e-4)

    markdown = (out / "results.md").read_text()
    for heading in ("No tuning after initialization", "After a 1-epoch fine-tune", "Parameters stored",
                    "Training cost", "Learngenes and the models"):
        assert heading in markdown
    assert "| SWS | IMwLM | Trained |" in markdown
    for png in ("no_tune.png", "fine_tuned.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    first = json.loads((out / "benchmark.json").read_text())["wall_seconds"]
    capsys.readouterr()

    # A second run reuses every part: same numbers, no training.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("done.json")}
    assert benchmark.main([*bench_args, "workers=1"]) == 0  # the worker count is not part of any result
    assert {p: p.stat().st_mtime_ns for p in out.rglob("done.json")} == before
    assert read_csv(out / "runs.csv") == runs
    second = json.loads((out / "benchmark.json").read_text())["wall_seconds"]
    assert second["Des-Nets"] < first["Des-Nets"]

    # Changing the fine-tune budget recomputes the fine-tunes only.
    ancestry_done = (out / "ancestry" / "done.json").stat().st_mtime_ns
    assert benchmark.main([*bench_args, "--finetune-epochs", "2", "workers=1"]) == 0
    assert (out / "ancestry" / "done.json").stat().st_mtime_ns == ancestry_done
    tuned = [r for r in read_csv(out / "runs.csv") if r["phase"] == "fine-tuned"]
    assert {r["epochs"] for r in tuned} == {"2"}


def test_bad_benchmark_input(bench_args, capsys):
    assert benchmark.main([*bench_args, "--methods", "sws,magic"]) == 2
    assert "unknown methods ['magic']" in capsys.readouterr().err
    assert benchmark.main([*bench_args, "colour=blue"]) == 2
    assert "unknown config key 'colour'" in capsys.readouterr().err
    assert benchmark.main([*bench_args, "--depths", "6,x"]) == 2
    assert "comma-separated integers" in capsys.readouterr().err


def test_exported_sources_as_for_imagenet(bench_args, tmp_path):
    """The ImageNet layout: the ancestry and the weight-selection parent are only evaluated and exported
    (optim.epochs=0, as for pretrained timm models), Vanilla-LG gets its own source."""
    (tmp_path / "wide.yaml").write_text(CONFIGS["ancestry.yaml"].replace("epochs: 1", "epochs: 0"))
    (tmp_path / "narrow.yaml").write_text(CONFIGS["ancestry.yaml"].replace("embed_dim: 32", "embed_dim: 16")
                                          .replace("num_heads: 4", "num_heads: 2"))
    config = tmp_path / "bench.yaml"
    text = config.read_text().replace("methods: [sws, weight-selection]", "methods: [weight-selection, vanilla-lg]")
    text = text.replace(f"ancestry: {{config: {tmp_path / 'ancestry'}.yaml}}",
                        f"ancestry: {{config: {tmp_path / 'wide'}.yaml}}")
    config.write_text(text + f"weight_selection_parent: {{config: {tmp_path / 'wide'}.yaml}}\n"
                             f"vanilla_lg_source: {{config: {tmp_path / 'narrow'}.yaml}}\nvanilla_lg_layers: 1\n"
                             "trained_depths: [3]\nworkers: 1\n")
    assert benchmark.main(bench_args) == 0
    out = tmp_path / "bench"
    assert json.loads((out / "ancestry" / "done.json").read_text())["result"]["epochs"] == 0
    for source in ("weight-selection", "vanilla-lg"):
        assert (out / "sources" / source / "run" / "model" / "model.safetensors").is_file()
    init = json.loads((out / "init" / "vanilla-lg" / "depth2" / "seed0" / "model" / "init.json").read_text())
    assert init["source"] == str(out / "sources" / "vanilla-lg" / "run" / "model")
    runs = read_csv(out / "runs.csv")
    assert {(r["method"], r["depth"]) for r in runs if r["phase"] == "trained"} == {("trained", "3")}
