"""The transfer benchmark: class subsets, test curves, linear probes, learngene snapshots, new classifiers, FLOPs,
time to accuracy, the transfer claims, a reduced run end to end and the inputs it refuses."""
import csv
import json
import random
from pathlib import Path

import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import load_file

from learngene.benchmark import transfer_report
from learngene.benchmark.runner import Part, initialize
from learngene.benchmark.transfer_report import TRANSFER_FIELDS, TaskAnalysis, claims, third
from learngene.checkpoint import load_learngene, save_learngene
from learngene.config import TrainConfig, load_config
from learngene.data import DataConfig, build_eval_loader, build_splits
from learngene.engine import train
from learngene.engine.evaluate import evaluate
from learngene.errors import LearngeneError
from learngene.methods import count_parameters, fresh_model, forward_flops, init_scratch, init_sws
from learngene.tools import benchmark
from test_benchmark import write_configs

ROOT = Path(__file__).resolve().parents[1]
PLAIN = ["model.kwargs.depth=1", "data.train_limit=64", "optim.epochs=2", "deterministic=true"]


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


# -- data.classes ---------------------------------------------------------------------------------------------------

def test_digit_subset_relabels_every_split():
    full, _ = build_splits(DataConfig())
    splits, info = build_splits(DataConfig(classes=[7, "5", 9]))
    assert (info.num_classes, info.class_names) == (3, ("7", "5", "9"))
    for split in ("train", "val", "test"):
        kept = [(image, {7: 0, 5: 1, 9: 2}[label]) for image, label in full[split] if label in (5, 7, 9)]
        assert len(splits[split]) == len(kept)
        for (image, label), (want_image, want_label) in zip(splits[split], kept):
            assert label == want_label and torch.equal(image, want_image)
    assert info.num_test == sum(1 for _, label in full["test"] if label in (5, 7, 9))


def test_imagefolder_subset_by_name(tmp_path):
    for split in ("train", "val"):
        for c, name in enumerate(("cat", "dog", "fox")):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (16, 16), (40 * c, 10 * i, 0)).save(tmp_path / split / name / f"{i}.png")
    cfg = DataConfig(name="imagefolder", root=str(tmp_path), img_size=16, augment=False, classes=["fox", "cat"])
    splits, info = build_splits(cfg)
    assert info.class_names == ("fox", "cat") and info.num_test == 4
    assert [label for _, label in splits["test"]] == [1, 1, 0, 0]  # ImageFolder's order: cat's images, then fox's


@pytest.mark.parametrize("classes, problem", [([3, 3], "more than once"), ([10], "does not have"),
                                              (["seven"], "does not have")])
def test_bad_class_lists(classes, problem):
    with pytest.raises(LearngeneError, match=problem):
        build_splits(DataConfig(classes=classes))


# -- the trainer: test curves, linear probes, snapshots ---------------------------------------------------------------

def plain_run(tmp_path, name, *overrides) -> TrainConfig:
    cfg = load_config(ROOT / "configs/digits/trained.yaml", [*PLAIN, f"output={tmp_path / name}", *overrides],
                      TrainConfig)
    train(cfg)
    return cfg


def test_test_curve_is_the_test_split_and_changes_no_weight(tmp_path):
    plain_run(tmp_path, "plain", "data.classes=[5,6,7,8,9]")
    cfg = plain_run(tmp_path, "curve", "data.classes=[5,6,7,8,9]", "test_curve=true")
    weights = [load_file(tmp_path / name / "model" / "model.safetensors") for name in ("plain", "curve")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    curve = json.loads((tmp_path / "curve" / "test_curve.json").read_text())
    assert [point["epoch"] for point in curve] == [1, 2]
    test = build_eval_loader(cfg.data, "test")
    assert all(len(point["correct"]) == len(test.dataset) == 179 for point in curve)
    model = timm.create_model("local-dir:" + str(tmp_path / "curve" / "model"), pretrained=True)
    final = evaluate(model, test, "cpu", per_image=True)
    assert curve[-1]["top1"] == pytest.approx(final["top1"], abs=1e-9)
    assert curve[-1]["correct"] == "".join("1" if hit else "0" for hit in final["correct"].tolist())


def test_linear_probe_trains_the_classifier_only(tmp_path):
    source = plain_run(tmp_path, "source")
    plain_run(tmp_path, "probe", f"model.name=local-dir:{source.output}/model", "model.pretrained=true",
              "model.linear_probe=true", "optim.lr=1e-2")
    before = load_file(tmp_path / "source" / "model" / "model.safetensors")
    after = load_file(tmp_path / "probe" / "model" / "model.safetensors")
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == ["head.bias", "head.weight"]


def test_snapshots_are_the_weights_after_their_epoch(tmp_path):
    plain_run(tmp_path, "run", "snapshot_epochs=[1,2]")
    final = load_file(tmp_path / "run" / "model" / "model.safetensors")
    last, first = (load_file(tmp_path / "run" / f"epoch{e}" / "model" / "model.safetensors") for e in (2, 1))
    assert all(torch.equal(final[k], last[k]) for k in final)
    assert not all(torch.equal(final[k], first[k]) for k in final)
    with pytest.raises(LearngeneError, match="snapshot_epochs"):
        plain_run(tmp_path, "bad", "snapshot_epochs=[3]")


# -- a new classifier, FLOPs ----------------------------------------------------------------------------------------

def test_transferred_des_net_gets_a_new_classifier_and_keeps_the_rest(tiny_aux, tmp_path):
    learngene = tmp_path / "learngene.safetensors"
    save_learngene(tiny_aux, learngene)
    downstream = load_config(None, ["data.classes=[5,6,7,8,9]", "model.name=x"], TrainConfig)
    part = initialize(tmp_path / "init", "sws", 6, 3, Part(tmp_path, "key", {"artifact": str(learngene)}), {},
                      downstream, fresh_classes=5)
    saved = load_file(Path(part.result["artifact"]) / "model.safetensors")
    expanded = init_sws(str(learngene), 6).state_dict
    assert saved["head.weight"].shape == (5, 32) and saved["head.bias"].shape == (5,)
    assert all(torch.equal(saved[k], expanded[k]) for k in expanded if not k.startswith("head."))
    args = dict(load_learngene(learngene).build_aux().des_model_args(6), num_classes=5)
    fresh = fresh_model("vit_tiny_patch16_224", args, 3).state_dict()
    assert torch.equal(saved["head.weight"], fresh["head.weight"]) and not saved["head.bias"].any()
    assert len(part.result["test"]["correct"]) == 179  # the downstream test split: digits 5-9


def test_flops_match_a_hand_count():
    tokens, dim, classes = 16, 64, 5  # 8x8 images in 2x2 patches
    per_layer = 2 * (tokens * dim * 3 * dim + 2 * tokens * tokens * dim + tokens * dim * dim + 2 * tokens * dim * 4 * dim)
    embed, head = 2 * tokens * dim * (1 * 2 * 2), 2 * dim * classes
    for depth in (1, 3):
        args = dict(img_size=8, patch_size=2, in_chans=1, num_classes=classes, embed_dim=dim, depth=depth,
                    num_heads=4, class_token=False, global_pool="avg")
        assert forward_flops("vit_tiny_patch16_224", args) == embed + depth * per_layer + head


# -- time to accuracy and the claims --------------------------------------------------------------------------------

IMAGES = 2000


def units(accuracy: float, seed: int, groups: int = 3, spread: float = 1.0):
    """``(group, hits)`` of ``groups`` Des-Nets whose accuracies are ``accuracy`` - ``spread``, ``accuracy``,
    ``accuracy`` + ``spread`` points exactly (the cell's mean is ``accuracy``), each on its own random images."""
    rng = random.Random(seed)
    out = []
    for g in range(groups):
        hits = set(rng.sample(range(IMAGES), round((accuracy + spread * (g - 1)) * IMAGES / 100)))
        out.append((g, "".join("1" if i in hits else "0" for i in range(IMAGES))))
    return out


def curve_rows(method: str, accuracies: list[float], phase: str = "fine-tuned", depth: int = 6, seed: int = 0,
               learngene_epoch="") -> list[dict]:
    rows = []
    for epoch, accuracy in enumerate(accuracies):
        for group, hits in units(accuracy, hash((method, epoch, seed)) % 1000):
            rows.append(dict(method=method, depth=depth, width=64, phase=phase, epoch=epoch, group=group,
                             correct=hits, learngene_epoch=learngene_epoch))
    return rows


def analysis(curves: dict[str, list[float]], probes: dict[str, list[float]] | None = None, snapshots=None):
    rows = [r for m, acc in curves.items() for r in curve_rows(m, acc)]
    rows += [r for m, acc in (probes or {}).items() for r in curve_rows(m, acc, "probe")]
    rows += [r for e, acc in (snapshots or {}).items() for r in curve_rows("sws", acc, learngene_epoch=e, seed=e)]
    budget = len(next(iter(curves.values()))) - 1
    return TaskAnalysis(rows, [6], list(curves), 64, budget, len(next(iter(probes.values()))) - 1 if probes else 0)


def test_time_to_accuracy_reads_the_curve():
    t = analysis({"scratch": [20, 40, 60, 70, 80, 85, 90], "weight-selection": [20, 70, 89, 91, 95, 95, 96],
                  "tleg": [20, 30, 40, 50, 55, 60, 62]})
    ws = t.time_to_accuracy("weight-selection", 6)
    assert ws["target"] == pytest.approx(90)
    assert (ws["epoch"], ws["ratio"]) == (3, 0.5)  # mean 91 >= Scratch's 90 first at epoch 3
    assert ws["earliest"] == 2 and ws["confirmed"] == 4  # -1 point: inside the interval; +5: above it
    tleg = t.time_to_accuracy("tleg", 6)
    assert tleg["epoch"] is None and tleg["earliest"] is None and tleg["confirmed"] is None
    rows = transfer_report.tta_rows("task", t)
    assert {r["method"]: r["ratio"] for r in rows}["tleg"] == transfer_report.NOT_REACHED


FLAT = [20, 50, 70, 80, 85, 88]


@pytest.mark.parametrize("sws, verdict", [(95, "reproduced"), (88, "inconclusive"), (70, "not reproduced")])
def test_fig5_claim_every_outcome(sws, verdict):
    t = analysis({"sws": FLAT[:-1] + [sws], "pf": FLAT, "scratch": FLAT, "vanilla-lg": FLAT, "tleg": FLAT})
    rows = {claim: v for claim, _, v in claims({"task": t}, {}, {})}
    fig5 = [v for claim, v in rows.items() if claim.startswith("SWS above")]
    assert fig5 == [verdict] * 4


@pytest.mark.parametrize("ws_third, ws_final, probe, outcome", [
    (93, 95, 60, ("reproduced", "reproduced", "reproduced")),
    (88, 88, 30, ("inconclusive", "inconclusive", "inconclusive")),
    (70, 75, 10, ("not reproduced", "not reproduced", "not reproduced"))])
def test_weight_selection_claims_every_outcome(ws_third, ws_final, probe, outcome):
    budget = len(FLAT) - 1
    ws = [FLAT[0]] + [ws_third] * third(budget) + [ws_final] * (budget - third(budget))
    t = analysis({"sws": FLAT, "weight-selection": ws, "scratch": FLAT}, probes={"weight-selection": [20, probe],
                                                                              "scratch": [20, 30]})
    rows = claims({"task": t}, {}, {})
    got = tuple(v for claim, _, v in rows if claim.startswith("IMwLM"))
    assert got == outcome


@pytest.mark.parametrize("snapshot, verdict", [(80, "reproduced"), (88, "inconclusive"), (95, "not reproduced")])
def test_learngene_epochs_claim_every_outcome(snapshot, verdict):
    t = analysis({"sws": FLAT, "scratch": FLAT}, snapshots={5: FLAT[:-1] + [snapshot]})
    rows = {claim: v for claim, _, v in claims({"task": t}, {}, {})}
    assert rows["SWS from a longer-trained learngene above a shorter-trained one (SWS Table 6)"] == verdict


@pytest.mark.parametrize("pf, verdict, depths", [(220.0, "reproduced", 2), (100.0, "inconclusive", 2),
                                                 (50.0, "not reproduced", 2), (500.0, "inconclusive", 1)])
def test_cost_and_stored_claims(pf, verdict, depths):
    t = analysis({"sws": FLAT, "scratch": FLAT})
    rows = {c: (e, v) for c, e, v in claims({"task": t}, {"pf": 4000, "sws": 200},
                                            {"pf": pf, "sws": 100.0, "depths": depths})}
    evidence, stored = rows["About 20x fewer parameters stored than PF (SWS Table 2: 759.3M against 37.0M)"]
    assert stored == "arithmetic (no verdict)" and evidence.endswith("20.0x")
    assert rows["The learngene costs less upstream training than one pre-trained model per size (SWS Table 2)"][1] \
        == verdict


# -- a reduced run end to end ---------------------------------------------------------------------------------------

def transfer_args(tmp_path, methods="[sws, weight-selection, scratch, pf]", *extra):
    args = write_configs(tmp_path, tmp_path / "bench", methods, depths="[2]")
    plain = tmp_path / "plain.yaml"
    down = (f"[{{name: digits_5-9, epochs: 2, num_classes: 5, disjoint: true, probe_epochs: 1, finetune: "
            f"{{config: {plain}, overrides: ['data.classes=[5,6,7,8,9]']}}}}]")
    return [*args, "part_overrides=['data.classes=[0,1,2,3,4]',model.kwargs.num_classes=5]", f"downstream={down}",
            "trained_depths=[]", *extra]


@pytest.mark.slow
def test_reduced_transfer_run(tmp_path, capsys):
    args = transfer_args(tmp_path, "[sws, weight-selection, scratch, pf]", "learngene_epochs=[1]",
                         "sws_aux.overrides=[optim.epochs=2]")
    assert benchmark.main(args) == 0
    out = tmp_path / "bench"
    rows = read_csv(out / "transfer.csv")
    assert list(rows[0]) == TRANSFER_FIELDS
    # 4 methods x 3 seeds, and SWS from the learngene saved after epoch 1 (3 seeds): fine-tune epochs 0-2, probe 0-1
    assert len(rows) == (4 + 1) * 3 * (3 + 2)
    assert len([r for r in rows if r["learngene_epoch"] == "1"]) == 3 * (3 + 2)
    snapshot = out / "learngenes" / "sws" / "seed2" / "run" / "epoch1" / "learngene.safetensors"
    assert json.loads((out / "transfer" / "digits_5-9" / "init" / "sws-learngene-epoch1" / "depth2" / "seed2" /
                       "model" / "init.json").read_text())["source"] == str(snapshot)
    assert {r["split"] for r in rows} == {"test"} and {r["dataset"] for r in rows} == {"digits_5-9"}
    init = json.loads((out / "transfer" / "digits_5-9" / "init" / "sws" / "depth2" / "seed1" / "done.json")
                      .read_text())["result"]
    start = next(r for r in rows if (r["method"], r["learngene_seed"], r["epoch"], r["phase"]) ==
                 ("sws", "1", "0", "fine-tuned"))
    assert float(start["top1"]) == pytest.approx(init["test"]["top1"], abs=1e-4) and len(init["test"]["correct"]) == 179
    tuned = json.loads((out / "transfer" / "digits_5-9" / "finetune" / "sws" / "depth2" / "seed1" / "done.json")
                       .read_text())["result"]
    final = next(r for r in rows if (r["method"], r["learngene_seed"], r["epoch"], r["phase"]) ==
                 ("sws", "1", "2", "fine-tuned"))
    assert float(final["top1"]) == pytest.approx(tuned["test"]["top1"], abs=1e-4)  # the fine-tuned model, on test
    # Stored parameters: PF keeps its depth-2 model whole, SWS its learngene
    des = timm.create_model("vit_tiny_patch16_224", img_size=8, patch_size=2, in_chans=1, num_classes=5,
                            embed_dim=16, depth=2, num_heads=2, class_token=False, global_pool="avg")
    pf = next(r for r in rows if r["method"] == "pf")
    assert int(pf["params_stored"]) == int(pf["params"]) == count_parameters(des.parameters())
    learngene = load_learngene(out / "learngenes" / "sws" / "seed0" / "run" / "learngene.safetensors")
    assert int(next(r for r in rows if r["method"] == "sws")["params_stored"]) == \
        count_parameters(learngene.state_dict.values())
    stored = (out / "results.md").read_text().split("## Parameters stored")[1]
    assert f"| SWS | {count_parameters(learngene.state_dict.values()) / 1e6:.3f} |" in stored  # saved ones not counted
    assert f"| PF | {count_parameters(des.parameters()) / 1e6:.3f} |" in stored  # one model, the run's one depth
    for name in ("results.md", "transfer_verdicts.csv", "time_to_accuracy.csv", "curve_digits_5-9_depth2.png",
                 "curve_digits_5-9_depth2_probe.png"):
        assert (out / name).is_file()
    console = capsys.readouterr().out
    assert "Transfer claims" in console and "| SWS from a longer-trained learngene" in console
    assert "(SWS Table 6) | digits_5-9 depth 2, learngene epoch 1:" in console
    # Run again: every part is cached, the same numbers come back
    assert benchmark.main(args) == 0
    assert read_csv(out / "transfer.csv") == rows


BAD = {
    "missing dataset": (["downstream[0].finetune.overrides=[data.name=cifar10,data.root=/nowhere]"], "data.root"),
    "class count": (["downstream[0].num_classes=4"], "has 5 classes, not num_classes=4"),
    "unknown class": (["downstream[0].finetune.overrides=['data.classes=[5,6,7,8,12]']"], "does not have"),
    "repeated class": (["downstream[0].finetune.overrides=['data.classes=[5,5,7,8,9]']"], "more than once"),
    "shared classes": (["downstream[0].finetune.overrides=['data.classes=[4,6,7,8,9]']"], "shares its classes ['4']"),
    "no budget": (["downstream[0].epochs=0"], "at least 1 epoch"),
    "task depth not run": (["downstream[0].depths=[3]"], "depths [3] are not among the run's depths [2]"),
    "kept head, other classes": (["downstream[0].head=keep", "downstream[0].num_classes=3",
                                  "downstream[0].finetune.overrides=['data.classes=[5,6,7]']"], "head=keep needs"),
    "unsaved learngene": (["learngene_epochs=[1]"], "never saved"),
    "pf upstream only": (["downstream=[]"], "belong to the transfer benchmark"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_transfer_inputs(case, tmp_path, capsys):
    overrides, message = BAD[case]
    args = transfer_args(tmp_path, "[sws, scratch, pf]")
    code = benchmark.main([*args, *overrides])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "bench").exists()


def test_scratch_position_embedding_std():
    args = dict(img_size=8, patch_size=2, in_chans=1, num_classes=5, embed_dim=64, depth=2, num_heads=4,
                class_token=False, global_pool="avg")
    plain = init_scratch(None, 2, model="vit_tiny_patch16_224", model_args=args, seed=4).state_dict
    wide = init_scratch(None, 2, model="vit_tiny_patch16_224", model_args=args, seed=4, pos_embed_std=0.5).state_dict
    assert all(torch.equal(plain[k], wide[k]) for k in plain if k != "pos_embed")
    assert 0.45 < wide["pos_embed"].std() < 0.55 and plain["pos_embed"].std() < 0.03
