import dataclasses
from pathlib import Path

import pytest
import torch

from learngene.benchmark.config import BenchmarkConfig, PartConfig, check_benchmark_config
from learngene.config import TrainConfig, check_train_config, load_config, parse_config_args, save_config
from learngene.data import DatasetInfo
from learngene.engine.models import LOCAL_DIR, build_student, build_teacher
from learngene.errors import LearngeneError

REPO = Path(__file__).resolve().parents[1]
SHIPPED_CONFIGS = sorted((REPO / "configs" / "digits").glob("*.yaml")) + sorted(
    (REPO / "configs" / "imagenet").glob("*.yaml"))
BENCHMARK_CONFIGS = sorted((REPO / "configs" / "benchmark").glob("*.yaml"))
# What each data.name of the shipped configs feeds a model: (classes, channels). The ImageNet configs read an
# ImageFolder of ImageNet-1k, which is not here.
DATA_SHAPES = {"digits": (10, 1), "imagefolder": (1000, 3), "mnist": (10, 1), "fashion_mnist": (10, 1),
               "cifar10": (10, 3), "cifar100": (100, 3)}


def write(tmp_path, text):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_yaml_then_overrides_onto_defaults(tmp_path):
    path = write(tmp_path, "model:\n  name: vit_tiny_patch16_224\n  kwargs: {img_size: 8}\noptim:\n  lr: 0.01\n")
    cfg = load_config(path, ["optim.lr=2e-3", "model.kwargs.stage_sizes=[2,2]", "data.auto_augment=null"],
                      TrainConfig)
    assert isinstance(cfg, TrainConfig)
    assert cfg.model.name == "vit_tiny_patch16_224"
    assert cfg.model.kwargs == {"img_size": 8, "stage_sizes": [2, 2]}
    assert cfg.optim.lr == 2e-3 and isinstance(cfg.optim.lr, float)
    assert cfg.optim.epochs == TrainConfig().optim.epochs  # untouched default
    assert cfg.data.auto_augment is None


def test_unknown_key_lists_the_valid_keys_of_its_node(tmp_path):
    with pytest.raises(LearngeneError) as e:
        load_config(None, ["optim.lrr=1"], TrainConfig)
    message = str(e.value)
    assert "'optim.lrr'" in message and "the command line" in message
    assert "valid keys of optim are opt, lr, lr_base_batch, weight_decay" in message
    assert "\n" not in message

    with pytest.raises(LearngeneError, match=r"'epochs' in .*cfg.yaml: valid keys of the top level are model, "
                                             r"teacher, distill, data, optim, output"):
        load_config(write(tmp_path, "epochs: 3\n"), [], TrainConfig)


def test_bad_types_and_malformed_input(tmp_path):
    with pytest.raises(LearngeneError, match=r"bad config value for 'optim.epochs' in the command line: Value 'ten'"):
        load_config(None, ["optim.epochs=ten"], TrainConfig)
    with pytest.raises(LearngeneError, match=r"override 'optim.lr' is not key=value"):
        load_config(None, ["optim.lr"], TrainConfig)
    with pytest.raises(LearngeneError, match=r"does not exist"):
        load_config(tmp_path / "missing.yaml", [], TrainConfig)
    with pytest.raises(LearngeneError, match=r"not valid YAML"):
        load_config(write(tmp_path, "model: [unclosed\n"), [], TrainConfig)
    with pytest.raises(LearngeneError, match=r"must hold a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"), [], TrainConfig)


def test_check_train_config_rejects_unusable_values():
    cfg = load_config(None, ["model.name=vit_tiny_patch16_224", "amp=fp32", "optim.accum_steps=0"], TrainConfig)
    with pytest.raises(LearngeneError, match=r"amp='fp32' is not one of none, bf16, fp16; optim.accum_steps=0"):
        check_train_config(cfg)
    assert check_train_config(load_config(None, ["model.name=x"], TrainConfig)).model.name == "x"


def test_save_config_round_trips(tmp_path):
    cfg = load_config(None, ["model.name=vit_tiny_patch16_224", "model.kwargs.img_size=8", "data.mixup=0.5"],
                      TrainConfig)
    save_config(cfg, tmp_path / "run" / "config.yaml")
    assert load_config(tmp_path / "run" / "config.yaml", [], TrainConfig) == cfg


def test_training_tools_help_lists_every_config_key_by_section(capsys):
    with pytest.raises(SystemExit):
        parse_config_args(["--help"], TrainConfig, None, "Train things.\n\n    python tools/x.py optim.lr=1\n")
    out = capsys.readouterr().out
    assert "python tools/x.py optim.lr=1" in out and "docs/training.md" in out
    assert "  optim: opt, lr, lr_base_batch, weight_decay," in out and "  (top level): output, seed, resume," in out
    for section in ("model", "teacher", "distill", "data", "optim", "elastic"):
        fields = [f.name for f in dataclasses.fields(getattr(TrainConfig(), section))]
        assert f"  {section}: {', '.join(fields)}\n" in out


def test_parse_config_args_tool_convention(tmp_path):
    path = write(tmp_path, "model:\n  name: a\n")
    cfg = parse_config_args(["--config", str(path), "output=runs/x", "seed=3"], TrainConfig, None, "test\n")
    assert (cfg.model.name, cfg.output, cfg.seed) == ("a", "runs/x", 3)
    assert parse_config_args([], TrainConfig, path, "test\n").model.name == "a"
    with pytest.raises(LearngeneError, match="unrecognized arguments: --bogus"):
        parse_config_args(["--bogus"], TrainConfig, None, "test\n")


def build_on_meta(cfg: TrainConfig) -> list[torch.nn.Module]:
    """The config's student, and its teacher unless that is a model folder, as the tools build them, without weights.

    On the meta device nothing is allocated, so ViT-L costs what a digits model does; no weights are loaded
    (pretrained and checkpoints are off: the test checks the architecture a config names, not files elsewhere).
    """
    num_classes, in_chans = DATA_SHAPES[cfg.data.name]
    info = DatasetInfo(num_classes, in_chans, cfg.data.img_size, (0.5,) * in_chans, (0.5,) * in_chans, 1, 1, 1)
    models = []
    with torch.device("meta"):
        if not cfg.model.name.startswith(LOCAL_DIR):
            models.append(build_student(dataclasses.replace(cfg.model, pretrained=False, checkpoint=""), info))
        if cfg.teacher.name and not cfg.teacher.name.startswith(LOCAL_DIR):
            models.append(build_teacher(dataclasses.replace(cfg.teacher, pretrained=False, checkpoint=""), info))
    return models


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_configs_load_validate_and_build(path):
    cfg = check_train_config(load_config(path, [], TrainConfig))
    assert cfg.model.name and cfg.output.startswith("runs/")
    for model in build_on_meta(cfg):
        assert all(p.is_meta for p in model.parameters())
    if not cfg.model.name.startswith(LOCAL_DIR):
        assert build_on_meta(cfg)[0].num_classes == DATA_SHAPES[cfg.data.name][0]


def benchmark_parts(cfg: BenchmarkConfig) -> dict[str, PartConfig]:
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
            if isinstance(getattr(cfg, f.name), PartConfig) and getattr(cfg, f.name).config}


@pytest.mark.parametrize("path", BENCHMARK_CONFIGS, ids=lambda p: p.name)
def test_benchmark_configs_load_validate_and_build_their_parts(path, monkeypatch):
    monkeypatch.chdir(REPO)  # part configs are relative to the repository, as when the benchmark runs from it
    cfg = check_benchmark_config(load_config(path, [], BenchmarkConfig))
    assert cfg.output.startswith("runs/")
    parts = benchmark_parts(cfg)
    assert {"ancestry", "sws_aux", "tleg_aux", "simple_lg", "finetune", "trained"} <= set(parts)
    for name, part in parts.items():  # each part as the benchmark loads it: its file plus its overrides
        part_cfg = check_train_config(load_config(part.config, part.overrides, TrainConfig))
        assert build_on_meta(part_cfg) or name == "finetune", name  # only the fine-tune starts from a folder


def test_a_config_timm_rejects_fails_the_build():
    cfg = load_config(REPO / "configs" / "digits" / "aux.yaml", ["model.kwargs.bogus=1"], TrainConfig)
    with pytest.raises(LearngeneError, match="unexpected keyword argument 'bogus'"):
        build_on_meta(check_train_config(cfg))
    cfg = load_config(REPO / "configs" / "imagenet" / "aux_b.yaml", ["teacher.kwargs.bogus=1"], TrainConfig)
    with pytest.raises(LearngeneError, match="cannot create teacher 'levit_384'.*unexpected keyword argument 'bogus'"):
        build_on_meta(check_train_config(cfg))
    with pytest.raises(LearngeneError, match="'stagez'"):
        load_config(REPO / "configs" / "benchmark" / "digits.yaml", ["stagez=1"], BenchmarkConfig)
