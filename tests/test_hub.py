import hashlib
import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import learngene
import learngene.hub
from learngene.checkpoint import load_learngene, save_learngene
from learngene.config import TrainConfig, load_config, save_config
from learngene.errors import LearngeneError
from learngene.tools import expand
from learngene.tools import share

ROOT = Path(__file__).resolve().parents[1]

EXTRA = {"teacher": "local-dir:runs/digits/ancestry/model", "epochs": 10, "val_top1": 91.5, "teacher_top1": 97.25}


@pytest.fixture
def run_dir(tiny_aux, tmp_path):
    """A finished Aux-Net run as tools/train_aux.py leaves it: learngene file, config.yaml, summary.json."""
    run = tmp_path / "run"
    save_learngene(tiny_aux, run / "learngene.safetensors", extra=EXTRA)
    save_config(load_config(ROOT / "configs" / "digits" / "aux.yaml", ["optim.epochs=10"], TrainConfig),
                run / "config.yaml")
    (run / "summary.json").write_text(json.dumps({"val_top1": 91.5, "teacher_top1": 97.25}))
    return run


@pytest.fixture
def shared(run_dir, tmp_path):
    out = tmp_path / "shared"
    assert share.main([str(run_dir / "learngene.safetensors"), "--out", str(out)]) == 0
    return out


def front_matter(card: Path) -> dict:
    text = card.read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def expanded_tensors(source, out: Path, *extra) -> dict:
    assert expand.main([str(source), "--depth", "12", "--out", str(out), *extra]) == 0
    return load_file(out / "model.safetensors")


def assert_same_tensors(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_shared_folder_round_trip(run_dir, shared, tmp_path):
    assert sorted(p.name for p in shared.iterdir()) == ["README.md", "config.json", "learngene.safetensors"]
    original = run_dir / "learngene.safetensors"
    assert (shared / "learngene.safetensors").read_bytes() == original.read_bytes()
    assert_same_tensors(expanded_tensors(shared, tmp_path / "from_folder"),
                        expanded_tensors(original, tmp_path / "from_file"))
    config = json.loads((shared / "config.json").read_text())
    assert (config["architecture"], config["des_architecture"], config["learngene_kind"]) == (
        "sws_aux_vit_tiny_patch16_224", "vit_tiny_patch16_224", "sws")
    assert config["model_args"] == load_learngene(original).model_args


def test_timm_loads_the_aux_net_of_a_shared_learngene_folder_as_the_docs_say(shared, tiny_aux):
    import timm

    aux_net = timm.create_model(f"local-dir:{shared}", pretrained=True).eval()  # conftest imported learngene.models
    images = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(aux_net(images), tiny_aux(images))
    # docs/sharing.md's table of a shared learngene folder names exactly its files and config.json's keys
    rows = {cells[1].strip("` "): cells[2] for cells in (line.split("|") for line in
            (ROOT / "docs" / "sharing.md").read_text().split("A shared learngene folder holds:")[1].split("\n\n")[1]
            .splitlines()[2:])}
    assert sorted(rows) == sorted(p.name for p in shared.iterdir())
    documented = re.findall(r"`(\w+)`", rows["config.json"])
    assert sorted(documented) == sorted(json.loads((shared / "config.json").read_text()))


def test_card_front_matter_holds_the_lineage(run_dir, shared):
    meta = front_matter(shared / "README.md")
    assert meta["library_name"] == "learngene-sws" and {"learngene", "sws"} <= set(meta["tags"])
    assert "license" not in meta  # unknown: not claimed
    assert meta["datasets"] == ["digits"] and meta["metrics"] == ["accuracy"]
    assert meta["model-index"][0]["results"][0]["metrics"][0]["value"] == 91.5
    lineage = meta["lineage"]
    weights = (shared / "learngene.safetensors").read_bytes()
    assert lineage["sha256"] == hashlib.sha256(weights).hexdigest()
    assert lineage["weights"] == "learngene.safetensors"
    # the ancestry folder is the author's (here it does not even exist): named as such, not as a usable path
    assert lineage["ancestry"] == {"name": EXTRA["teacher"], "local": True}
    assert (lineage["ancestry_top1"], lineage["val_top1"]) == (97.25, 91.5)
    assert lineage["learngene_metadata"] == EXTRA
    assert lineage["preprocessing"] == load_learngene(run_dir / "learngene.safetensors").preprocessing
    assert lineage["recipe"] == yaml.safe_load((run_dir / "config.yaml").read_text())
    assert lineage["recipe"]["optim"]["epochs"] == 10
    assert lineage["data"] == {"name": "digits", "img_size": lineage["recipe"]["data"]["img_size"]}
    assert lineage["code"]["learngene"] == learngene.__version__
    card = (shared / "README.md").read_text()
    assert "pip install learngene-sws\nlearngene expand hf-hub:ORG/NAME --depth 12 --out des12" in card
    assert "timm loads this folder's Aux-Net once `import learngene.models`" in card and "python tools/" not in card
    assert "| ancestry top-1 (%) | 97.25 |" in card
    assert f"| ancestry (teacher) | {EXTRA['teacher']} (a folder of the author's, not shared) |" in card


def test_license_is_written_when_given(run_dir, tmp_path):
    out = tmp_path / "licensed"
    assert share.main([str(run_dir / "learngene.safetensors"), "--out", str(out), "--license", "apache-2.0"]) == 0
    assert front_matter(out / "README.md")["license"] == "apache-2.0"


def test_changed_weights_are_refused(shared, tmp_path, capsys):
    weights = shared / "learngene.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of the last tensor value: still a valid safetensors file
    weights.write_bytes(bytes(data))
    with pytest.raises(LearngeneError, match="corrupted"):  # the file's own checksum catches it too
        load_learngene(weights)
    out = tmp_path / "des"
    assert expand.main([str(shared), "--depth", "12", "--out", str(out)]) == 2
    assert "does not match the sha256 in its model card" in error_line(capsys)
    assert not out.exists()
    assert share.main([str(shared), "--push", "org/name"]) == 2
    assert "does not match the sha256" in error_line(capsys)


def test_card_without_lineage_is_refused(shared, tmp_path, capsys):
    (shared / "README.md").write_text("---\nlibrary_name: timm\n---\n# a card from elsewhere\n")
    assert expand.main([str(shared), "--depth", "4", "--out", str(tmp_path / "des")]) == 2
    assert "has no lineage with weights and sha256" in error_line(capsys)


def test_hf_hub_id_offline_is_one_line(tmp_path, capsys):
    out = tmp_path / "des"
    assert expand.main(["hf-hub:some-org/some-learngene", "--depth", "12", "--out", str(out)]) == 2
    line = error_line(capsys)
    assert "hf-hub:some-org/some-learngene" in line and "HF_HUB_OFFLINE" in line
    assert not out.exists()


def test_hf_hub_id_resolves_through_snapshot_download(run_dir, shared, tmp_path, monkeypatch):
    calls = []

    def fake_snapshot_download(repo_id, allow_patterns):
        calls.append((repo_id, allow_patterns))
        return str(shared)

    monkeypatch.setattr(learngene.hub, "snapshot_download", fake_snapshot_download)
    from_hub = expanded_tensors("hf-hub:some-org/some-learngene", tmp_path / "from_hub")
    assert calls == [("some-org/some-learngene", learngene.hub.SHARED_FILES)]
    assert_same_tensors(from_hub, expanded_tensors(run_dir / "learngene.safetensors", tmp_path / "from_file"))
    assert json.loads((tmp_path / "from_hub" / "init.json").read_text())["source"] == "hf-hub:some-org/some-learngene"


def test_push_offline_is_one_line(shared, capsys):
    before = sorted((p.name, p.read_bytes()) for p in shared.iterdir())
    assert share.main([str(shared), "--push", "some-org/some-learngene"]) == 2
    line = error_line(capsys)
    assert "cannot upload" in line and "some-org/some-learngene" in line
    assert sorted((p.name, p.read_bytes()) for p in shared.iterdir()) == before


def test_des_net_folder_is_shared_for_stock_timm(shared, tmp_path):
    import timm

    des = tmp_path / "des"
    tensors = expanded_tensors(shared, des)
    out = tmp_path / "des_shared"
    assert share.main([str(des), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "init.json", "model.safetensors"]
    meta = front_matter(out / "README.md")
    assert meta["library_name"] == "timm" and "sws" in meta["tags"] and "model-index" not in meta
    assert meta["lineage"]["initialized_from"] == json.loads((des / "init.json").read_text())
    # the lineage of the learngene it was expanded from (resolved from the shared folder to its weights file)
    learngene_run = front_matter(shared / "README.md")["lineage"]
    assert (meta["lineage"]["ancestry"], meta["lineage"]["recipe"]) == (learngene_run["ancestry"],
                                                                         learngene_run["recipe"])
    assert meta["lineage"]["sha256"] == hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()
    model = timm.create_model(f"local-dir:{out}", pretrained=True)
    assert_same_tensors(model.state_dict(), tensors)
    assert learngene.hub.resolve_source(str(out)) == str(out)


@pytest.mark.parametrize("make_args,message", [
    (lambda tmp, run, shared: [str(tmp / "missing.safetensors"), "--out", str(tmp / "o")], "does not exist"),
    (lambda tmp, run, shared: [str(run / "learngene.safetensors")], "--out is required"),
    (lambda tmp, run, shared: [str(shared), "--out", str(tmp / "o")], "already a shared folder"),
    (lambda tmp, run, shared: [str(shared), "--push", "no-slash"], "is not ORG/NAME"),
    (lambda tmp, run, shared: [str(run / "config.yaml"), "--out", str(tmp / "o")], "learngene file"),
    (lambda tmp, run, shared: [str(run / "learngene.safetensors"), "--out", str(run)], "already exists"),
])
def test_bad_share_input(run_dir, shared, tmp_path, capsys, make_args, message):
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert share.main(make_args(tmp_path, run_dir, shared)) == 2
    assert message in error_line(capsys)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_des_net_cards_keep_the_learngene_lineage(run_dir, tmp_path):
    des = tmp_path / "des"
    expanded_tensors(run_dir / "learngene.safetensors", des)
    assert share.main([str(des), "--out", str(tmp_path / "des_shared")]) == 0
    lineage = front_matter(tmp_path / "des_shared" / "README.md")["lineage"]
    recipe = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert lineage["ancestry"] == {"name": EXTRA["teacher"], "local": True}
    assert (lineage["recipe"], lineage["data"]["name"]) == (recipe, "digits")
    assert lineage["recipe_of"].startswith("the training run of the learngene it was initialized from")

    run = tmp_path / "des_run"  # a fine-tune of that Des-Net, as tools/finetune.py leaves it (model/ has no init.json)
    (run / "model").mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (run / "model" / name).write_bytes((des / name).read_bytes())
    save_config(load_config(ROOT / "configs" / "digits" / "des_finetune.yaml", [f"model.name=local-dir:{des}"],
                            TrainConfig), run / "config.yaml")
    assert share.main([str(run / "model"), "--out", str(tmp_path / "tuned_shared")]) == 0
    lineage = front_matter(tmp_path / "tuned_shared" / "README.md")["lineage"]
    assert lineage["fine_tuned_from"] == f"local-dir:{des}"
    assert lineage["initialized_from"] == json.loads((des / "init.json").read_text())
    assert lineage["ancestry"] == {"name": EXTRA["teacher"], "local": True}
    assert lineage["recipe_of"] == "this model's training run"
