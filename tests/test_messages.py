"""Refusals that lead somewhere: each says what the input is and which path, key or command works instead."""
from pathlib import Path

import pytest
import torch

from learngene.benchmark import check_benchmark_config
from learngene.checkpoint import load_model_folder, save_learngene
from learngene.config import TrainConfig
from learngene.data import build_loaders
from learngene.errors import LearngeneError
from learngene.tools import benchmark
from learngene.tools import expand
from learngene.tools import share

ROOT = Path(__file__).resolve().parents[1]


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.fixture
def learngene_file(tiny_aux, tmp_path):
    path = tmp_path / "aux_run" / "learngene.safetensors"
    save_learngene(tiny_aux, path)
    return path


def test_not_a_model_folder_says_what_it_is(learngene_file, tmp_path, monkeypatch):
    assert expand.main([str(learngene_file), "--depth", "3", "--out", str(tmp_path / "des")]) == 0
    run = tmp_path / "ft_run"
    (run / "model").mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (run / "model" / name).write_bytes((tmp_path / "des" / name).read_bytes())
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text("seed: 0\n")
    monkeypatch.chdir(tmp_path)
    expected = {
        tmp_path / "nowhere": "does not exist: pass a folder from tools/expand.py or RUN/model of a finished",
        Path("runs/digits/ancestry/model"): "does not exist: train the digits ancestry first with "
                                            "`python tools/finetune.py --config configs/digits/ancestry.yaml`",
        run: f"is a training run folder: pass {run / 'model'}",
        learngene_file.parent: "is an Aux-Net training run folder; its learngene",
        learngene_file: "is a learngene file: expand it into a Des-Net first (tools/expand.py LEARNGENE",
        unfinished: "is a training run folder with no model yet: finish the run",
    }
    for path, message in expected.items():
        with pytest.raises(LearngeneError, match="^" + str(path).replace(".", r"\.") + " ") as e:
            load_model_folder(path)
        assert message in str(e.value), (path, str(e.value))


def test_narrowing_a_plain_learngene_names_commands_that_work(learngene_file, tmp_path, capsys):
    assert expand.main([str(learngene_file), "--depth", "3", "--width", "16", "--out", str(tmp_path / "a")]) == 2
    assert "expand a Des-Net at the learngene's width and select from it (tools/expand.py DES --method " \
           "weight-selection" in error_line(capsys)
    assert expand.main([str(learngene_file), "--method", "weight-selection", "--depth", "3",
                        "--out", str(tmp_path / "b")]) == 2  # the learngene file itself is no Des-Net
    assert "is a learngene file: expand it into a Des-Net first" in error_line(capsys)


def test_train_limit_zero_is_refused():
    cfg = TrainConfig()
    cfg.data.train_limit = 0
    with pytest.raises(LearngeneError, match=r"data.train_limit=0 keeps no training image: set a positive count, "
                                             r"or data.train_limit=null"):
        build_loaders(cfg.data, seed=0)


def test_benchmark_preset_and_config_and_depths(tmp_path, monkeypatch, capsys):
    assert benchmark.main(["--preset", "quick", "--config", str(ROOT / "configs/benchmark/digits.yaml")]) == 2
    assert "--preset quick and --config" in error_line(capsys)

    configs = []

    class Recorded:  # the benchmark as configured, not run
        def __init__(self, cfg):
            configs.append(check_benchmark_config(cfg))

        def run(self):
            return {}

    monkeypatch.setattr(benchmark, "Benchmark", Recorded)
    assert benchmark.main(["--preset", "quick", "--depths", "6"]) == 0
    assert (configs[-1].depths, configs[-1].trained_depths) == ([6], [6])
    assert benchmark.main(["--preset", "quick", "--depths", "6", "trained_depths=[]"]) == 0
    assert configs[-1].trained_depths == []


def test_share_license_and_training_state(learngene_file, tmp_path, capsys):
    out = tmp_path / "shared"
    assert share.main([str(learngene_file), "--out", str(out), "--license", "Apache 2"]) == 2
    assert "'Apache 2' is not a license id: write the hub's id, e.g. apache-2.0" in error_line(capsys)
    last = tmp_path / "last.pt"
    torch.save({"model": {}, "epoch": 1}, last)
    assert share.main([str(last), "--out", str(out)]) == 2
    assert f"{last} is not a learngene file but a torch one (a training state like last.pt, or an official " \
           "checkpoint): pass the run's learngene.safetensors" in error_line(capsys)
    assert not out.exists()


def test_benchmark_help_has_examples_and_keys(capsys):
    import dataclasses

    from learngene.benchmark import BenchmarkConfig

    with pytest.raises(SystemExit) as e:
        benchmark.main(["--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the option help
    assert "examples: python tools/benchmark.py # embedded digits benchmark" in out
    assert "python tools/benchmark.py --preset quick" in out
    keys = ", ".join(f.name for f in dataclasses.fields(BenchmarkConfig))
    assert f"Keys (see learngene/benchmark/config.py): {keys}" in out


@pytest.mark.parametrize("override,message", [
    ("seeds=3", "bad config value for 'seeds' in the command line: it must be a list: write e.g. seeds=[1,2]"),
    ("ancestry=5", "bad config value for 'ancestry' in the command line: a PartConfig section must be a mapping of its keys, not "
                   "a int: write e.g. 'NAME={config: FILE}' or set its keys one by one (NAME.KEY=VALUE)"),
    ("finetune.overrides=x", "bad config value for 'finetune.overrides' in the command line: it must be a list: "
                             "write e.g. finetune.overrides=[1,2]"),
])
def test_config_type_errors_speak_config(override, message):
    from learngene.benchmark import BenchmarkConfig
    from learngene.config import load_config

    with pytest.raises(LearngeneError) as e:
        load_config(ROOT / "configs" / "benchmark" / "digits_quick.yaml", [override], BenchmarkConfig)
    assert str(e.value) == message and "ListConfig" not in message


def test_num_heads_help_says_it_has_one_value(capsys):
    with pytest.raises(SystemExit):
        expand.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--num-heads NUM_HEADS sws: heads of that width; the head dim is kept, so the one valid value is width / " \
           "the learngene's head dim, the default (a check, nothing to choose)" in out
