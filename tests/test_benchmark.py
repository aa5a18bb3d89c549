"""A reduced benchmark end to end: two depths, tiny models, a few steps; outputs, seeds, caches, determinism."""
import csv
import hashlib
import json
from pathlib import Path

import pytest

from learngene.benchmark import runner
from learngene.tools import benchmark

ROOT = Path(__file__).resolve().parents[1]

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
ACCURACY = ("method", "depth", "phase", "learngene_seed", "seed", "split", "top1", "top5", "loss")


def write_configs(folder: Path, output: Path, methods: str, seeds: str = "[0, 1, 2]",
                  depths: str = "[2, 3]") -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in CONFIGS.items():
        (folder / name).write_text(text)
    parts = {"ancestry": "ancestry", "sws_aux": "aux", "tleg_aux": "tleg_aux", "simple_lg": "plain",
             "finetune": "plain", "trained": "plain"}
    lines = [f"output: {output}", f"depths: {depths}", f"methods: {methods}", f"seeds: {seeds}",
             f"learngene_seeds: {seeds}", "finetune_epochs: 1", "workers: 1"]
    lines += [f"{part}: {{config: {folder / name}.yaml}}" for part, name in parts.items()]
    (folder / "bench.yaml").write_text("\n".join(lines) + "\n")
    return ["--config", str(folder / "bench.yaml")]


@pytest.fixture
def bench_args(tmp_path):
    return write_configs(tmp_path, tmp_path / "bench", "[sws, weight-selection]")


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_reduced_benchmark_outputs_and_cache(bench_args, tmp_path, capsys):
    assert benchmark.main(bench_args) == 0
    out = tmp_path / "bench"
    console = capsys.readouterr().out
    runs = read_csv(out / "results.csv")
    # 3 SWS no-tune (one per learngene seed) + 3 fine-tuned, 3 + 3 IMwLM, per depth; Trained 2 depths x 3 seeds
    assert len(runs) == 2 * (3 + 3 + 3 + 3) + 2 * 3
    assert {r["split"] for r in runs} == {"test"}
    sws = [r for r in runs if r["method"] == "sws"]
    assert {r["learngene_seed"] for r in sws} == {"0", "1", "2"}
    # paired: fine-tune seed r under learngene seed r; methods without a learngene have none
    assert {(r["learngene_seed"], r["seed"]) for r in sws if r["phase"] == "fine-tuned"} == {("0", "0"), ("1", "1"),
                                                                                           ("2", "2")}
    assert {r["learngene_seed"] for r in runs if r["method"] in ("weight-selection", "trained")} == {""}
    assert all(0.0 <= float(r["top1"]) <= float(r["top5"]) <= 100.0 for r in runs)

    # Every number is the benchmark's own test evaluation: top-1 is the count of per-image hits it kept.
    done = json.loads((out / "init" / "sws" / "depth2" / "seed1" / "done.json").read_text())["result"]
    row = next(r for r in sws if (r["depth"], r["phase"], r["learngene_seed"]) == ("2", "no-tune", "1"))
    assert len(done["test"]["correct"]) == 360
    assert float(row["top1"]) == pytest.approx(100 * done["test"]["correct"].count("1") / 360, abs=1e-4)

    summary = read_csv(out / "summary.csv")
    assert len(summary) == 2 * 2 * 2 + 2
    cell = next(r for r in summary if (r["method"], r["depth"], r["phase"]) == ("sws", "2", "fine-tuned"))
    assert cell["units"] == "3" and cell["spread_covers"] == "learngene seed x fine-tune seed"
    values = [float(r["top1"]) for r in sws if (r["depth"], r["phase"]) == ("2", "fine-tuned")]
    assert float(cell["top1"]) == pytest.approx(sum(values) / 3, abs=1e-4)
    # SWS stores its whole learngene; weight selection the whole ancestry; both the same Des-Net size.
    ws = next(r for r in summary if (r["method"], r["depth"], r["phase"]) == ("weight-selection", "2", "no-tune"))
    assert ws["params"] == cell["params"] and int(ws["params_stored"]) > int(cell["params_stored"]) > 0

    verdicts = read_csv(out / "verdicts.csv")
    assert {(v["phase"], v["depth"], v["baseline"]) for v in verdicts} == {
        (p, d, b) for p in ("no-tune", "fine-tuned") for d in ("2", "3") for b in ("weight-selection", "trained")}
    # Each difference by another route: SWS's mean test top-1 minus the baseline's, from results.csv (4 decimals;
    # Trained has its own phase; the labels' rule is tests/test_benchmark_stats.py's).
    top1 = {}
    for r in runs:
        top1.setdefault((r["method"], r["depth"], r["phase"]), []).append(float(r["top1"]))
    for v in verdicts:
        baseline_phase = "trained" if v["baseline"] == "trained" else v["phase"]
        sws_cell, baseline = top1["sws", v["depth"], v["phase"]], top1[v["baseline"], v["depth"], baseline_phase]
        expected = sum(sws_cell) / len(sws_cell) - sum(baseline) / len(baseline)
        assert float(v["diff"]) == pytest.approx(expected, abs=2e-4), v
        assert float(v["low"]) <= expected <= float(v["high"])

    markdown = (out / "results.md").read_text()
    for heading in ("Claims of the SWS paper", "No tuning after initialization", "After a 1-epoch fine-tune",
                    "SWS minus each baseline", "What each spread covers", "Parameters stored", "Training cost",
                    "Learngenes and the models", "How each verdict is computed"):
        assert heading in markdown
    assert "| SWS | IMwLM | Trained |" in markdown
    assert "N = 2 Des-Nets, of depths 2, 3" in markdown
    for png in ("no_tune.png", "fine_tuned.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The console names every part, prints no per-epoch lines, and ends with the tables and the claims.
    assert "[Des-Nets 12/12," in console and "] sws depth3 seed2: test top-1 no-tune" in console
    assert not any(line.startswith("epoch ") for line in console.splitlines())
    assert console.index("No tuning after initialization:") < console.index("Claims of the SWS paper:")
    assert not list(out.rglob("last.pt"))  # finished parts drop their training states

    # A second run reuses every part: same numbers, no training.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("done.json")}
    assert benchmark.main([*bench_args, "workers=2"]) == 0  # the worker count is not part of any result
    assert {p: p.stat().st_mtime_ns for p in out.rglob("done.json")} == before
    assert read_csv(out / "results.csv") == runs

    # A truncated done.json: that part is computed again (one line says so), with the same result.
    damaged = out / "learngenes" / "sws" / "seed1" / "done.json"
    original = json.loads(damaged.read_text())["result"]
    damaged.write_text(damaged.read_text()[:40])
    capsys.readouterr()
    assert benchmark.main(bench_args) == 0
    assert f"{damaged} is unreadable (truncated?): computing" in capsys.readouterr().out
    assert json.loads(damaged.read_text())["result"]["test"] == original["test"]
    assert read_csv(out / "results.csv") == runs

    # Changing the fine-tune budget recomputes the fine-tunes only.
    ancestry_done = (out / "ancestry" / "done.json").stat().st_mtime_ns
    assert benchmark.main([*bench_args, "--finetune-epochs", "2"]) == 0
    assert (out / "ancestry" / "done.json").stat().st_mtime_ns == ancestry_done
    tuned = [r for r in read_csv(out / "results.csv") if r["phase"] == "fine-tuned"]
    assert {r["epochs"] for r in tuned} == {"2"}


@pytest.mark.slow
def test_two_runs_give_identical_results_and_charge_the_teacher(tmp_path):
    """The same command twice into fresh folders (on the worker pool, teacher cache on) gives identical accuracy
    columns; the SWS learngene records the teacher cache, the others replay it and are charged its teacher time."""
    results = []
    for name in ("first", "second"):
        args = write_configs(tmp_path / name, tmp_path / name / "bench", "[sws, tleg, simple-lg]", "[0, 1]", "[3]")
        keep = ["keep_training_states=true"] if name == "second" else []
        assert benchmark.main([*args, "workers=2", *keep]) == 0
        results.append([{k: r[k] for k in ACCURACY} for r in read_csv(tmp_path / name / "bench" / "results.csv")])
    assert results[0] == results[1]
    assert {r["learngene_seed"] for r in results[0] if r["method"] in ("tleg", "simple-lg")} == {"0", "1"}
    assert not list((tmp_path / "first").rglob("last.pt"))
    # ancestry, Trained (1 depth x 2 seeds), learngenes (3 x 2 seeds), fine-tunes (3 methods x 2 seeds)
    assert len(list((tmp_path / "second").rglob("last.pt"))) == 1 + 2 + 3 * 2 + 3 * 2

    out = tmp_path / "first" / "bench"
    weights = (out / "ancestry" / "run" / "model" / "model.safetensors").read_bytes()
    assert [p.name for p in (out / "teacher_cache").iterdir()] == [hashlib.sha256(weights).hexdigest()[:16]]
    sources = {(r["model"], r["learngene_seed"]): r for r in read_csv(out / "learngenes.csv")}
    for seed in ("0", "1"):
        recorded = float(sources["sws", seed]["teacher_seconds"])
        assert recorded > 0 and sources["sws", seed]["charged_seconds"] == sources["sws", seed]["seconds"]
        for method in ("tleg", "simple-lg"):
            row = sources[method, seed]
            assert float(row["teacher_seconds"]) == 0.0  # replayed every batch
            assert float(row["charged_seconds"]) == pytest.approx(float(row["seconds"]) + recorded, abs=2e-4)


def test_cached_parts_follow_code_and_thread_count(tmp_path, monkeypatch):
    computed = []

    def compute(folder):
        computed.append(folder)
        return {"value": len(computed)}

    part = tmp_path / "part"
    assert runner.cached(part, "k", compute).result == {"value": 1}
    assert runner.cached(part, "k", compute).result == {"value": 1} and len(computed) == 1
    monkeypatch.setattr(runner, "code_fingerprint", lambda: "other code")
    assert runner.cached(part, "k", compute).result == {"value": 2}
    monkeypatch.setattr(runner.torch, "get_num_threads", lambda: 7)
    assert runner.cached(part, "k", compute).result == {"value": 3}


def test_code_fingerprint_covers_the_package_sources():
    import learngene

    root = Path(learngene.__file__).parent
    digest = hashlib.sha256(learngene.__version__.encode())
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    assert runner.code_fingerprint() == digest.hexdigest()[:16]


def test_bad_benchmark_input(bench_args, tmp_path, capsys):
    assert benchmark.main([*bench_args, "--methods", "sws,magic"]) == 2
    assert "unknown methods ['magic']" in capsys.readouterr().err
    assert benchmark.main([*bench_args, "colour=blue"]) == 2
    assert "unknown config key 'colour'" in capsys.readouterr().err
    assert benchmark.main([*bench_args, "--depths", "6,x"]) == 2
    assert "comma-separated integers" in capsys.readouterr().err
    assert benchmark.main([*bench_args, "seeds=[0,1]"]) == 2
    assert "must hold a multiple of the 3 learngene_seeds" in capsys.readouterr().err
    assert benchmark.main([*bench_args, "learngene_seeds=[0,0,1]"]) == 2
    assert "must be distinct non-negative integers" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert benchmark.main([*bench_args, f"output={blocker / 'bench'}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"lies below the regular file {blocker}" in err
    assert blocker.read_text() == "x" and not (tmp_path / "bench").exists()


def test_exported_sources_as_for_imagenet(tmp_path):
    """The ImageNet layout: the ancestry and the weight-selection parent are only evaluated and exported
    (optim.epochs=0, as for pretrained timm models), Vanilla-LG gets its own source."""
    args = write_configs(tmp_path, tmp_path / "bench", "[weight-selection, vanilla-lg]", "[0]")
    (tmp_path / "wide.yaml").write_text(CONFIGS["ancestry.yaml"].replace("epochs: 1", "epochs: 0"))
    (tmp_path / "narrow.yaml").write_text(CONFIGS["ancestry.yaml"].replace("embed_dim: 32", "embed_dim: 16")
                                          .replace("num_heads: 4", "num_heads: 2"))
    config = tmp_path / "bench.yaml"
    text = config.read_text().replace(f"ancestry: {{config: {tmp_path / 'ancestry'}.yaml}}",
                                      f"ancestry: {{config: {tmp_path / 'wide'}.yaml}}")
    config.write_text(text + f"weight_selection_parent: {{config: {tmp_path / 'wide'}.yaml}}\n"
                             f"vanilla_lg_source: {{config: {tmp_path / 'narrow'}.yaml}}\nvanilla_lg_layers: 1\n"
                             "trained_depths: [3]\n")
    assert benchmark.main(args) == 0
    out = tmp_path / "bench"
    assert json.loads((out / "ancestry" / "done.json").read_text())["result"]["epochs"] == 0
    for source in ("weight-selection", "vanilla-lg"):
        assert (out / "sources" / source / "run" / "model" / "model.safetensors").is_file()
    init = json.loads((out / "init" / "vanilla-lg" / "depth2" / "seed0" / "model" / "init.json").read_text())
    assert init["source"] == str(out / "sources" / "vanilla-lg" / "run" / "model")
    runs = read_csv(out / "results.csv")
    assert {(r["method"], r["depth"]) for r in runs if r["phase"] == "trained"} == {("trained", "3")}


def test_front_reads_the_weight_selection_parent(tmp_path):
    """FRONT alone in a run still gets IMwLM's configured parent (exported once), makes the Des-Nets' width from it,
    no-tune and fine-tuned, stores the parent whole, and has its rows in the parameter and cost tables."""
    args = write_configs(tmp_path, tmp_path / "bench", "[sws, front]", "[0]")
    (tmp_path / "wide.yaml").write_text(CONFIGS["ancestry.yaml"].replace("epochs: 1", "epochs: 0")
                                        .replace("embed_dim: 32", "embed_dim: 48").replace("num_heads: 4", "num_heads: 6"))
    config = tmp_path / "bench.yaml"
    config.write_text(config.read_text() + f"weight_selection_parent: {{config: {tmp_path / 'wide'}.yaml}}\n")
    assert benchmark.main(args) == 0
    out = tmp_path / "bench"
    parent = out / "sources" / "weight-selection" / "run" / "model"
    init = json.loads((out / "init" / "front" / "depth3" / "seed0" / "model" / "init.json").read_text())
    assert init["method"] == "front" and init["source"] == str(parent) and init["depth_mode"] == "zero"
    config = json.loads((out / "init" / "front" / "depth3" / "seed0" / "model" / "config.json").read_text())
    assert config["model_args"]["embed_dim"] == 16 and config["model_args"]["depth"] == 3  # the SWS Des-Nets' width
    runs = read_csv(out / "results.csv")
    front = {(r["depth"], r["phase"]): r for r in runs if r["method"] == "front"}
    assert set(front) == {(d, p) for d in ("2", "3") for p in ("no-tune", "fine-tuned")}
    sws = next(r for r in runs if (r["method"], r["depth"]) == ("sws", "3"))
    parent_params = json.loads((parent.parent.parent / "done.json").read_text())["result"]["params"]
    assert front["3", "no-tune"]["params"] == sws["params"] and int(front["3", "no-tune"]["params_stored"]) == \
        parent_params and front["3", "no-tune"]["learngene_seed"] == ""
    markdown = (out / "results.md").read_text()
    assert f"| FRONT (no training; stores the parent's {parent_params / 1e6:.3f}M parameters) | 0 |" in markdown
    assert "| FRONT params stored (M) | FRONT top-1 |" in markdown
    assert "| SWS above FRONT with no tuning at depths 6-9 (FRONT, ICML 2026: newer than the paper) | not in this run" \
        in markdown
