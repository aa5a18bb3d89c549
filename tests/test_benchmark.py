"""A reduced benchmark end to end: two depths, tiny models, a few steps; outputs, seeds, caches, determinism."""
import csv
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

import learngene
from learngene.benchmark import Benchmark, BenchmarkConfig, cache
from learngene.benchmark.plan import Planner
from learngene.config import load_config
from learngene.errors import LearngeneError
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
real_fingerprint = cache.code_fingerprint  # before a test replaces it
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
    # 34 parts: the ancestry, 6 Trained, 3 learngenes, 12 Des-Nets and their 12 fine-tunes
    assert "[34/34 parts," in console and "] sws depth3 seed2: test top-1 no-tune" in console
    assert "] sws depth3 seed2 finetune seed2: test top-1 tuned" in console
    # the parts it ran are the jobs --plan lists, in their order (one worker: each job after those it reads)
    ran = [line.split("] ", 1)[1].split(": test top-1")[0] for line in console.splitlines() if " parts, " in line]
    cfg = load_config(bench_args[1], [], BenchmarkConfig)
    assert ran == [job.name for job in Planner(cfg).graph.jobs()]
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
    assert f"{damaged} is unreadable or missing (damaged): cleaning {damaged.parent} and computing it again" \
        in capsys.readouterr().out
    assert json.loads(damaged.read_text())["result"]["test"] == original["test"]
    assert read_csv(out / "results.csv") == runs

    # Changing the fine-tune budget lists the fine-tunes it would replace and stops; recompute=stale computes the
    # fine-tunes only, keeping each old one beside the new.
    before = snapshot(out)
    assert benchmark.main([*bench_args, "--finetune-epochs", "2"]) == 2
    captured = capsys.readouterr()
    stale = [line for line in captured.out.splitlines() if line.startswith("stale part ")]
    assert len(stale) == 12 and all("/finetune/" in line and line.endswith("(finished): config changed; kept, not used")
                                    for line in stale)
    assert captured.err.startswith("error: 12 stale parts listed above were made with another key")
    assert snapshot(out) == before
    assert benchmark.main([*bench_args, "--finetune-epochs", "2", "recompute=stale"]) == 0
    assert {p: v for p, v in snapshot(out).items() if "/finetune/" not in str(p)} == \
        {p: v for p, v in before.items() if "/finetune/" not in str(p)}
    tuned = [r for r in read_csv(out / "results.csv") if r["phase"] == "fine-tuned"]
    assert {r["epochs"] for r in tuned} == {"2"}
    old = next((out / "finetune" / "sws" / "depth2").glob("seed0.stale-*"))
    assert json.loads((old / "done.json").read_text())["result"]["epochs"] == 1


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


def snapshot(folder: Path) -> dict:
    """Every file in the subfolders of ``folder`` (the parts, not the reports) with its modification time and hash."""
    return {p: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.parent != folder}


def surveyed(part: Path, key: str, **choices):
    """``cached(part, key)`` during the check before a run: the stand-in it returns and the check."""
    survey = cache.Survey(recompute=choices.get("recompute", False), reuse=choices.get("reuse", False))
    token = cache.SURVEY.set(survey)
    try:
        return cache.cached(part, key, lambda folder: pytest.fail("the check computed a part")), survey
    finally:
        cache.SURVEY.reset(token)


def count_and_write(computed: list):
    def compute(folder):
        computed.append(folder)
        (folder / "artifact").write_text(str(len(computed)))
        return {"value": len(computed)}
    return compute


def test_a_part_made_with_other_code_is_kept_then_reused_or_recomputed_on_request(tmp_path, monkeypatch):
    computed = []
    compute = count_and_write(computed)
    part = tmp_path / "part"
    first = cache.cached(part, "k", compute)
    assert first.result == {"value": 1} and cache.cached(part, "k", compute).key == first.key and len(computed) == 1
    assert json.loads((part / "done.json").read_text())["components"] == {
        "config": "k", "upstream": [], "code": cache.code_fingerprint(), "libraries": cache.libraries(),
        "threads": torch.get_num_threads()}

    monkeypatch.setattr(cache, "code_fingerprint", lambda: "other code")
    before = snapshot(tmp_path)
    with pytest.raises(LearngeneError, match=r"part was made with another key \(learngene code changed\)"):
        cache.cached(part, "k", compute)  # a run meets a stale part the check did not list: it stops
    stand_in, survey = surveyed(part, "k")
    assert stand_in.key == first.key and stand_in.result == first.result
    assert [s.line() for s in survey.stale] == [f"stale part {part} (finished): learngene code changed; kept, not used"]
    assert survey.refusal().startswith("1 stale part listed above was made with another key")
    assert snapshot(tmp_path) == before and len(computed) == 1

    # reuse=stale accepts it under the new key and records that it did; the part keeps its old key.
    stand_in, survey = surveyed(part, "k", reuse=True)
    assert survey.refusal() is None and stand_in.key == first.key
    survey.stale[0].apply()
    record = json.loads((part / "done.json").read_text())
    new_key = record["accepted"][0]["key"]
    assert record["key"] == first.key != new_key and record["accepted"][0]["changes"] == ["learngene code changed"]
    assert record["accepted"][0]["components"]["code"] == "other code"
    assert cache.cached(part, "k", compute).key == first.key and len(computed) == 1

    # Another config: reuse=stale cannot accept it; recompute=stale keeps the old folder beside the new one.
    stand_in, survey = surveyed(part, "k2", reuse=True)
    assert stand_in.key == cache.STALE + first.key  # the parts made from it are to be computed again too
    assert survey.stale[0].changes == ["config changed"] and "reuse=stale accepts only" in survey.refusal()
    stand_in, survey = surveyed(part, "k2", recompute=True)
    assert survey.refusal() is None
    survey.stale[0].apply()
    aside = tmp_path / f"part.stale-{first.key[:8]}"
    assert not part.exists() and (aside / "artifact").read_text() == "1"
    assert cache.cached(part, "k2", compute).result == {"value": 2} and (part / "artifact").read_text() == "2"
    assert json.loads((aside / "done.json").read_text())["result"] == {"value": 1}


def test_the_thread_count_is_part_of_the_key_on_cpu_only(tmp_path, monkeypatch):
    computed, threads = [], torch.get_num_threads()
    compute = count_and_write(computed)
    cache.cached(tmp_path / "cpu", "k", compute)
    gpu = cache.cached(tmp_path / "gpu", "k", compute, device="cuda")
    monkeypatch.setattr(cache.torch, "get_num_threads", lambda: threads + 1)
    assert cache.cached(tmp_path / "gpu", "k", compute, device="cuda") == gpu and len(computed) == 2
    _, survey = surveyed(tmp_path / "cpu", "k")
    assert survey.stale[0].changes == [f"thread count changed ({threads} -> {threads + 1})"]


def test_an_interrupted_part_resumes_and_one_started_with_other_code_is_kept(tmp_path, monkeypatch):
    def interrupted(folder):
        (folder / "last.pt").write_text("state")
        raise KeyboardInterrupt

    def resume(folder):
        return {"resumed": (folder / "last.pt").read_text()}

    part = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        cache.cached(part, "k", interrupted)
    assert cache.cached(part, "k", resume).result == {"resumed": "state"}

    other = tmp_path / "other"
    with pytest.raises(KeyboardInterrupt):
        cache.cached(other, "k", interrupted)
    monkeypatch.setattr(cache, "code_fingerprint", lambda: "other code")
    with pytest.raises(LearngeneError, match="other was made with another key"):
        cache.cached(other, "k", resume)
    assert (other / "last.pt").read_text() == "state"
    survey = cache.Survey(recompute=False, reuse=True)
    token = cache.SURVEY.set(survey)
    with pytest.raises(cache.NotCached):  # nothing to stand in for it: the parts made from it wait
        cache.cached(other, "k", resume)
    cache.SURVEY.reset(token)
    assert [s.line() for s in survey.stale] == [f"stale part {other} (unfinished): learngene code changed; "
                                                "reused as it is"]
    survey.stale[0].apply()  # reuse=stale: the training goes on from its last.pt with the code of now
    assert cache.cached(other, "k", resume).result == {"resumed": "state"}
    assert json.loads((other / "done.json").read_text())["accepted"][0]["changes"] == ["learngene code changed"]


def package_copy(tmp_path: Path, name: str, edit) -> Path:
    """A copy of the learngene package whose trainer module is ``edit(text)``."""
    copy = tmp_path / name / "learngene"
    shutil.copytree(Path(learngene.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    trainer = copy / "engine" / "trainer.py"
    trainer.write_text(edit(trainer.read_text()))
    return copy


LOSS = "        return mean_over_passes(lambda out: distillation_loss(out, targets, teacher_logits, self.cfg.distill.alpha,"


def documented(text: str) -> str:
    """The trainer with another module docstring, a new method docstring and a comment."""
    assert text.startswith('"""') and LOSS in text
    return text.replace('"""', '"""Edited: ', 1).replace(
        "        if self.teacher is None:\n",
        '        """The loss of one batch."""\n        # a comment\n        if self.teacher is None:\n', 1)


def halved(text: str) -> str:
    """The trainer with its distillation loss halved."""
    return text.replace(LOSS, LOSS.replace("return ", "return 0.5 * "), 1)


def test_code_fingerprint_ignores_docstrings_comments_and_reports_not_the_loss(tmp_path):
    package = Path(learngene.__file__).parent
    fingerprint = cache.code_fingerprint(package)
    assert cache.code_fingerprint() == fingerprint
    assert cache.code_fingerprint(package_copy(tmp_path, "doc", documented)) == fingerprint
    reporting = package_copy(tmp_path, "report", lambda text: text)
    (reporting / "benchmark" / "report.py").write_text((reporting / "benchmark" / "report.py").read_text() + "X = 1\n")
    assert cache.code_fingerprint(reporting) == fingerprint
    assert cache.code_fingerprint(package_copy(tmp_path, "loss", halved)) != fingerprint


def test_a_docstring_edit_recomputes_nothing_and_a_loss_edit_stops_the_run(tmp_path, monkeypatch, capsys):
    args = write_configs(tmp_path, tmp_path / "bench", "[sws]", "[0]", "[2]")
    assert benchmark.main(args) == 0
    out = tmp_path / "bench"
    finished, results = snapshot(out), read_csv(out / "results.csv")
    parts = sorted(p.parent for p in out.rglob("done.json"))
    assert len(parts) == 5  # ancestry, Trained, learngene, Des-Net init, its fine-tune

    edited = real_fingerprint(package_copy(tmp_path, "doc", documented))
    monkeypatch.setattr(cache, "code_fingerprint", lambda: edited)
    capsys.readouterr()
    assert benchmark.main(args) == 0
    assert snapshot(out) == finished and "stale part" not in capsys.readouterr().out

    edited = real_fingerprint(package_copy(tmp_path, "loss", halved))
    monkeypatch.setattr(cache, "code_fingerprint", lambda: edited)
    assert benchmark.main(args) == 2
    captured = capsys.readouterr()
    assert sorted(line for line in captured.out.splitlines() if line.startswith("stale part")) == sorted(
        f"stale part {p} (finished): learngene code changed; kept, not used" for p in parts)
    assert captured.err.startswith("error: 5 stale parts listed above were made with another key")
    assert snapshot(out) == finished  # nothing deleted, nothing written

    assert benchmark.main([*args, "reuse=stale"]) == 0  # accepted: nothing computed, each done.json says so
    assert {p: v for p, v in snapshot(out).items() if p.name != "done.json"} == \
        {p: v for p, v in finished.items() if p.name != "done.json"}
    for p in parts:
        assert json.loads((p / "done.json").read_text())["accepted"][0]["changes"] == ["learngene code changed"]
    assert read_csv(out / "results.csv") == results
    assert sorted(json.loads((out / "benchmark.json").read_text())["stale_parts"]) == sorted(
        f"stale part {p} (finished): learngene code changed; reused as it is" for p in parts)
    capsys.readouterr()
    assert benchmark.main(args) == 0 and "stale part" not in capsys.readouterr().out

    # The learngene missing: the check before the run stops there, and its Des-Net (made from the old learngene)
    # is listed when its job is about to start, after the learngene is computed again.
    shutil.move(out / "learngenes" / "sws" / "seed0", tmp_path / "moved")
    assert benchmark.main(args) == 2
    captured = capsys.readouterr()
    init = out / "init" / "sws" / "depth2" / "seed0"
    assert f"stale part {init} (finished): a part it reads changed; kept, not used" in captured.out
    assert captured.err.startswith("error: 2 stale parts listed above")  # the Des-Net and its fine-tune
    assert benchmark.main([*args, "recompute=stale"]) == 0
    assert f"stale part {init} (finished): a part it reads changed; computed again" in capsys.readouterr().out
    assert len(list(init.parent.glob("seed0.stale-*"))) == 1 and (init / "done.json").is_file()


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


def test_the_runner_and_the_plan_share_one_job_graph_where_each_job_waits_only_for_what_it_reads(tmp_path, capsys):
    args = write_configs(tmp_path, tmp_path / "bench",
                         "[sws, sws-random, tleg, weight-selection, front, scratch, vanilla-lg]", "[0, 1]")
    cfg = load_config(tmp_path / "bench.yaml", [], BenchmarkConfig)
    jobs = Benchmark(cfg).graph.jobs()
    described = [(j.name, j.kind, j.reads, j.path, j.model, j.epochs, j.teacher) for j in jobs]
    assert described == [(j.name, j.kind, j.reads, j.path, j.model, j.epochs, j.teacher)
                         for j in Planner(cfg).graph.jobs()]
    assert benchmark.main([*args, "--plan"]) == 0  # what --plan prints is that list, with what each job waits for
    printed = [line[2:].split(": ~") for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    assert [(name, rest.split(", after ")[1] if ", after " in rest else "") for name, rest in printed] == \
        [(j.name, ", ".join(j.reads)) for j in jobs]

    reads = {j.name: j.reads for j in jobs}
    assert all(name in [j.name for j in jobs[:i]] for i, j in enumerate(jobs) for name in j.reads)  # in order
    assert reads["learngene sws seed1"] == ("ancestry",)  # no learngene waits for a Trained reference
    assert reads["learngene tleg seed1"] == ("ancestry", "learngene sws seed1")  # it replays the SWS teacher cache
    assert reads["scratch depth2 seed1"] == ()
    assert reads["weight-selection depth2 seed1"] == reads["front depth2 seed1"] == ("ancestry",)
    assert reads["vanilla-lg depth2 seed1"] == ("trained depth3 seed1",)  # the deepest Trained reference
    assert reads["sws-random depth2 seed1"] == ("learngene sws seed1",)
    assert reads["tleg depth2 seed1"] == ("learngene tleg seed1",)
    # each fine-tune is its own job, waiting for its Des-Net alone
    assert reads["sws depth3 seed1 finetune seed1"] == ("sws depth3 seed1",)
    assert len(jobs) == 1 + 2 * 2 + 2 * 2 + 2 * 7 * 2 * 2  # ancestry, Trained, learngenes, Des-Nets and fine-tunes
