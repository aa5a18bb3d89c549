"""The GPU transfer presets at toy scale: both run end to end on CPU, and ``--plan`` prices them without data.

``configs/benchmark/transfer_imagenet_des_b.yaml`` (SWS Fig. 5 / Table 2) and
``configs/benchmark/transfer_weight_selection.yaml`` (weight selection Table 2) run through ``tools/benchmark.py``
from a working folder holding ``configs/`` like a checkout, with the ImageNet tier's synthetic JPEG ImageFolder as
ImageNet and one downstream root holding tiny files in every downstream dataset's real on-disk format (the writers
of tests/test_data.py and tests/test_downstream_datasets.py; torchvision's md5 checks see generated files, so only
their presence is checked). The overrides are those a user without the data, a GPU or the network needs: depth 6
(the ViT-T preset: its one depth, 12), one seed and one learngene seed, one epoch per part and per task, batch 2,
4 training images per task, the class counts of the small files, ``model.pretrained=false`` for the timm-pretrained
parents. Model sizes (LeViT-384, Aux-B, Aux-T, Des-B, ViT-S, ViT-T) at 224 px and the recipes (DeiT augmentation,
mixup, cutmix, repeated augmentation, per-dataset warmups, ``amp=bf16``) stay as shipped. Each preset runs every
task with one method; the ViT-T preset then every method on CIFAR-100 (below). Marked ``imagenet_tier`` (about 4
minutes alone on this project's 2-core machine, shared with other jobs while measured).
"""
import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
import torchvision.datasets.cifar
import torchvision.datasets.flowers102
import torchvision.datasets.stl10
import torchvision.datasets.svhn
from safetensors.torch import load_file
from test_data import _write_cifar
from test_downstream_datasets import WRITERS
from test_imagenet_tier import write_image_folder

from learngene.benchmark.config import BENCHMARK_METHODS, BenchmarkConfig
from learngene.config import load_config
from learngene.tools import benchmark

REPO = Path(__file__).resolve().parents[1]

PRESETS = ("transfer_imagenet_des_b", "transfer_weight_selection")
DOWNSTREAM = "downstream"  # the one root of every downstream dataset, as the presets' recipes expect


def preset(name: str) -> BenchmarkConfig:
    return load_config(REPO / "configs" / "benchmark" / f"{name}.yaml", [], BenchmarkConfig)


def task_data(task) -> str:
    """The data.name a preset's task sets."""
    return next(o.split("=", 1)[1] for o in task.finetune.overrides if o.startswith("data.name="))


def expected_jobs(cfg: BenchmarkConfig) -> int:
    """The jobs of a transfer run, counted from the config's lists: the ancestry, the parent IMwLM and FRONT read,
    a Trained reference per depth and seed; a learngene per trained method and learngene seed; per task, a Des-Net
    per method, depth of the task and seed (a learned method: per learngene seed), and a fine-tune (and a probe) per
    seed of each."""
    parent = bool(cfg.weight_selection_parent.config and {"weight-selection", "front"} & set(cfg.methods))
    upstream = 1 + parent + len(cfg.trained_depths or cfg.depths) * len(cfg.seeds)
    trained = {BENCHMARK_METHODS[m].learngene for m in cfg.methods} | {"sws"}
    learngenes = len(trained - {None}) * len(cfg.learngene_seeds)
    des_nets = sum(len(cfg.learngene_seeds) if BENCHMARK_METHODS[m].learned else len(cfg.seeds) for m in cfg.methods)
    per_depth = {task.name: des_nets + len(cfg.methods) * len(cfg.seeds) * (1 + bool(task.probe_epochs))
                 for task in cfg.downstream}
    return upstream + learngenes + sum(len(task.depths or cfg.depths) * per_depth[task.name] for task in cfg.downstream)


@pytest.mark.parametrize("name", PRESETS)
def test_plan_prices_every_part_and_says_the_preset_gives_verdicts(name, tmp_path, capsys, monkeypatch):
    (tmp_path / "configs").symlink_to(REPO / "configs")
    monkeypatch.chdir(tmp_path)  # no dataset anywhere: the preset's plan_train_images stand in
    assert benchmark.main(["--config", f"configs/benchmark/{name}.yaml", "--plan"]) == 0
    lines = capsys.readouterr().out.splitlines()
    cfg = preset(name)
    jobs = [line for line in lines if line.startswith("  ")]
    assert len(jobs) == expected_jobs(cfg) and lines[0].startswith(f"plan: {expected_jobs(cfg)} Slurm jobs")
    assert lines[1] == "verdicts: yes, 3 learngene seeds measure each cell's spread"
    hours = {line.split(":")[0].strip(): float(line.split("~")[1].split(" ")[0].replace(",", "")) for line in jobs}
    assert hours["trained depth12 seed0"] > 0 and hours["learngene sws seed0"] > 0
    for task in cfg.downstream:  # every task's Des-Nets at its own depths only, each priced
        depths = {int(job.split(" depth")[1].split(" ")[0]) for job in hours if job.startswith(f"{task.name} ")}
        assert depths == set(task.depths or cfg.depths)
        priced = {job: h > 0 for job, h in hours.items() if job.startswith(f"{task.name} ")}
        assert all(priced[job] == (" finetune seed" in job or " probe seed" in job) for job in priced)  # no init
    assert sorted(p.name for p in tmp_path.iterdir()) == ["configs"]  # nothing written


def test_one_task_of_a_preset_is_set_by_its_index():
    cfg = load_config(REPO / "configs" / "benchmark" / "transfer_imagenet_des_b.yaml",
                      ["downstream[2].epochs=7", "downstream[2].finetune.overrides=[data.name=food101,data.root=/x]",
                       "downstream_overrides=[data.download=true]"], BenchmarkConfig)
    shipped = preset("transfer_imagenet_des_b")
    assert cfg.downstream[2].epochs == 7
    assert cfg.downstream[2].finetune.overrides == ["data.name=food101", "data.root=/x"]
    assert cfg.downstream[2].num_classes == 101 and cfg.downstream[2].depths == [12]  # the rest of the task kept
    assert cfg.downstream[:2] == shipped.downstream[:2] and cfg.downstream[3] == shipped.downstream[3]
    assert cfg.downstream_overrides == ["data.download=true"]


# -- the presets at toy scale ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A working folder like a checkout: ``configs/``, the synthetic ImageNet, every downstream dataset's files under
    one root; returns each data.name's class count."""
    folder = tmp_path_factory.mktemp("transfer_tier")
    write_image_folder(folder / "imagenet")
    root = folder / DOWNSTREAM
    classes = {name: len(writer(root)[1]) for name, writer in WRITERS.items()}
    for name, cifar10 in (("cifar10", True), ("cifar100", False)):
        _write_cifar(root, cifar10, per_file=20 if cifar10 else 100)
        classes[name] = 10 if cifar10 else 100
    (folder / "configs").symlink_to(REPO / "configs")
    with pytest.MonkeyPatch.context() as mp:
        for module in (torchvision.datasets.cifar, torchvision.datasets.flowers102, torchvision.datasets.stl10,
                       torchvision.datasets.svhn):  # generated files cannot match torchvision's md5 sums
            mp.setattr(module, "check_integrity", lambda path, md5=None, check=module.check_integrity: check(path))
        mp.chdir(folder)
        yield classes
    shutil.rmtree(folder)  # a gigabyte of Des-B checkpoints


TOY = ["data.root=imagenet", "data.batch_size=2", "data.num_workers=0", "seeds=[0]", "learngene_seeds=[0]",
       "ancestry.overrides=[model.pretrained=false]", "weight_selection_parent.overrides=[model.pretrained=false]",
       "sws_aux.overrides=[optim.epochs=1]", "tleg_aux.overrides=[optim.epochs=1]",
       'trained.overrides=[teacher.name="",optim.epochs=1]',
       f"downstream_overrides=[data.root={DOWNSTREAM},data.batch_size=2,data.num_workers=0,data.train_limit=4]"]


def run_toy(name: str, classes: dict, depth: int, methods: list[str], tasks: list[int]) -> tuple[Path, list[dict]]:
    """The preset's ``methods`` on its ``tasks`` (indices) at depth ``depth``, each task 1 epoch with its small files'
    classes, into the preset's folder (its upstream parts made once); transfer.csv's rows."""
    cfg, out = preset(name), Path(f"runs/{name}")
    picked = [dict(name=t.name, epochs=1, num_classes=classes[task_data(t)],
                   finetune=dict(config=t.finetune.config, overrides=t.finetune.overrides))
              for t in (cfg.downstream[i] for i in tasks)]
    assert benchmark.main(["--config", f"configs/benchmark/{name}.yaml", *TOY, f"depths=[{depth}]",
                           f"methods=[{','.join(methods)}]", f"downstream={json.dumps(picked)}", f"output={out}"]) == 0
    return out, list(csv.DictReader(open(out / "transfer.csv")))


def check_rows(rows: list[dict], tasks: list[str], methods: list[str], depth: int) -> None:
    """Every task, method and epoch of the run: test top-1 as initialized and after its one epoch."""
    cells = {(r["dataset"], r["method"], int(r["depth"]), int(r["epoch"])) for r in rows}
    assert cells == {(t, m, depth, e) for t in tasks for m in methods for e in (0, 1)}
    assert len(rows) == len(cells) and {r["split"] for r in rows} == {"test"}


def des_net(out: Path, task: str, phase: str, method: str, depth: int) -> dict[str, torch.Tensor]:
    folder = out / "transfer" / task / phase / method / f"depth{depth}" / "seed0"
    return load_file(folder / ("model" if phase == "init" else "run/model") / "model.safetensors")


# Every task with one method: each dataset's files through its recipe. The Des-B preset's is PF (a Des-B-6 part takes
# half a minute here), the method only transfer runs have: its other methods make their Des-B from the same upstream
# parts as configs/benchmark/imagenet_des_b.yaml, which tests/test_imagenet_tier.py runs. The ViT-T preset then runs
# all its methods on CIFAR-100, reusing the first run's upstream parts.

@pytest.mark.imagenet_tier
def test_des_b_preset_fine_tunes_pf_on_every_task(work):
    cfg = preset("transfer_imagenet_des_b")
    out, rows = run_toy("transfer_imagenet_des_b", work, 6, ["pf"], list(range(len(cfg.downstream))))
    check_rows(rows, [t.name for t in cfg.downstream], ["pf"], 6)
    trained = json.loads((out / "trained" / "depth6" / "seed0" / "done.json").read_text())["result"]["artifact"]
    trained = load_file(Path(trained) / "model.safetensors")
    for task in cfg.downstream:  # the Des-B-6 pre-trained upstream, with a new head for the task's classes
        init = des_net(out, task.name, "init", "pf", 6)
        assert all(torch.equal(init[k], v) for k, v in trained.items() if not k.startswith("head."))
        tuned = des_net(out, task.name, "finetune", "pf", 6)
        assert tuned["head.weight"].shape == (work[task_data(task)], 768) and "cls_token" not in tuned
        assert tuned["pos_embed"].shape == (1, 196, 768)  # 224 px in 16 px patches, CIFAR included


@pytest.mark.imagenet_tier
def test_weight_selection_preset_selects_vit_t_from_vit_s_on_every_task(work):
    cfg = preset("transfer_weight_selection")
    names = [t.name for t in cfg.downstream]
    out, rows = run_toy("transfer_weight_selection", work, 12, ["weight-selection"], list(range(len(names))))
    check_rows(rows, names, ["weight-selection"], 12)
    parent = json.loads((out / "sources" / "weight-selection" / "done.json").read_text())["result"]["artifact"]
    parent = load_file(Path(parent) / "model.safetensors")
    for task in cfg.downstream:
        child = des_net(out, task.name, "init", "weight-selection", 12)
        # the released rule: every 2nd element of ViT-S's first 12 layers, a fresh head for the task's classes
        assert torch.equal(child["blocks.11.mlp.fc1.weight"], parent["blocks.11.mlp.fc1.weight"][::2, ::2])
        assert torch.equal(child["patch_embed.proj.weight"], parent["patch_embed.proj.weight"][::2])
        assert torch.equal(child["pos_embed"], parent["pos_embed"][:, 1:, ::2])  # pooled: no class position
        assert torch.equal(child["fc_norm.weight"], parent["norm.weight"][::2]) and "cls_token" not in child
        assert child["head.weight"].shape == (work[task_data(task)], 192)
    out, rows = run_toy("transfer_weight_selection", work, 12, cfg.methods, [names.index("cifar100")])
    check_rows(rows, ["cifar100"], cfg.methods, 12)
