"""Files the toolkit writes can be trusted: checksums catch damage inside, modes follow the umask, mismatches
are one line."""
import json
import os
import stat

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from file_damage import zero_tensor_bytes
from learngene.checkpoint import (CHECKSUM_KEY, LEARNGENE_FORMAT, atomic_torch_save, atomic_write_text,
                                  learngene_payload, load_learngene, load_torch_file, payload_checksum,
                                  save_learngene, save_model_folder)
from learngene.errors import LearngeneError
from learngene.tools import expand


def training_state():
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(64, 64, generator=generator)  # 16 KiB
    return {"model": {"w": weight, "b": torch.zeros(64)},
            "optimizer": {"state": {0: {"exp_avg": torch.randn(64, 64, generator=generator)}}, "param_groups": []},
            "epoch": 3, "rng": {"python": (3, (1, 2), None), "torch": torch.get_rng_state()},
            "history": [{"val_top1": 12.5}],
            "odd_tensors": [torch.ones(3, dtype=torch.bfloat16), torch.tensor(True), torch.zeros(0), torch.tensor(7),
                            torch.arange(6).reshape(2, 3).t()]}  # bf16, bool, empty, 0-dim, non-contiguous


def test_training_state_round_trips_without_its_checksum(tmp_path):
    state = training_state()
    atomic_torch_save(state, tmp_path / "last.pt")
    assert CHECKSUM_KEY in torch.load(tmp_path / "last.pt", weights_only=True)
    loaded = load_torch_file(tmp_path / "last.pt", "training state")
    assert CHECKSUM_KEY not in loaded and payload_checksum(loaded) == payload_checksum(state)
    assert torch.equal(loaded["model"]["w"], state["model"]["w"]) and loaded["epoch"] == 3


def test_training_state_with_a_zeroed_block_is_refused(tmp_path):
    """The issue's case: 4 KiB of one tensor zeroed. torch reads the file happily; the checksum refuses it."""
    state = training_state()
    path = tmp_path / "last.pt"
    atomic_torch_save(state, path)
    zero_tensor_bytes(path, state["model"]["w"], count=4096)
    damaged = torch.load(path, weights_only=True)
    assert not torch.equal(damaged["model"]["w"], state["model"]["w"])  # what resume would have trained on
    with pytest.raises(LearngeneError) as error:
        load_torch_file(path, "training state")
    assert str(error.value) == (f"training state {path} is corrupted: its contents no longer match the checksum "
                                "stored when it was written; restore it from a copy, or delete it and train again")


def test_a_torch_file_without_checksum_loads_unverified(tmp_path):
    """Files written by other tools (e.g. a teacher's state dict) carry no checksum and are read as they are."""
    torch.save({"w": torch.ones(3)}, tmp_path / "plain.pt")
    assert torch.equal(load_torch_file(tmp_path / "plain.pt")["w"], torch.ones(3))


def test_payload_checksum_covers_values_dtypes_shapes_and_plain_data_not_dict_order():
    state = training_state()
    reference = payload_checksum(state)
    assert payload_checksum(dict(reversed(list(state.items())))) == reference
    changed = [
        {**state, "epoch": 4},
        {**state, "model": {**state["model"], "b": torch.zeros(64, dtype=torch.float64)}},
        {**state, "model": {**state["model"], "b": torch.zeros(8, 8)}},
        {**state, "model": {**state["model"], "b": torch.zeros(64).index_fill(0, torch.tensor([63]), 1e-30)}},
        {**state, "model": {"w": state["model"]["w"], "c": state["model"]["b"]}},  # a renamed tensor
        {**state, "history": [{"val_top1": 12.25}]},
    ]
    assert len({payload_checksum(s) for s in changed} | {reference}) == len(changed) + 1


def test_learngene_with_one_tensor_changed_is_refused(tiny_aux, tmp_path):
    path = tmp_path / "lg.safetensors"
    save_learngene(tiny_aux, path)
    weight = tiny_aux.state_dict()["stages.2.mlp.fc1.weight"]
    zero_tensor_bytes(path, weight, count=64)
    with pytest.raises(LearngeneError, match=f"^learngene file {path} is corrupted: .* write it again with "
                                             "tools/train_aux.py$"):
        load_learngene(path)


def write_learngene(path, state, model, model_args):
    metadata = {"format": LEARNGENE_FORMAT, "kind": "sws", "model": model, "model_args": json.dumps(model_args),
                "extra": "{}"}
    save_file(state, str(path), metadata={**metadata, CHECKSUM_KEY: payload_checksum(learngene_payload(state,
                                                                                                      metadata))})


def rewrite_metadata(path, edit):
    """The learngene at ``path`` with the same tensors and ``edit(metadata)``, its checksum left as it was."""
    with safe_open(str(path), framework="pt") as f:
        metadata, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    edit(metadata)
    save_file(state, str(path), metadata=metadata)


def test_learngene_checksum_covers_its_metadata(tiny_aux, tmp_path):
    """One fewer layer in the last stage: the tensors fit, the expansion would silently differ."""
    path = tmp_path / "lg.safetensors"
    save_learngene(tiny_aux, path)
    assert load_learngene(path).model_args["stage_sizes"] == [3, 3, 4, 3, 3]

    def one_layer_less(metadata):
        metadata["model_args"] = metadata["model_args"].replace("[3, 3, 4, 3, 3]", "[3, 3, 4, 3, 2]")

    rewrite_metadata(path, one_layer_less)
    with pytest.raises(LearngeneError, match=f"^learngene file {path} is corrupted: its contents no longer match the "
                                             "checksum stored when it was written; write it again with "
                                             "tools/train_aux.py$"):
        load_learngene(path)


def test_learngene_without_checksum_or_of_the_older_format_is_refused(tiny_aux, tmp_path):
    path = tmp_path / "lg.safetensors"
    save_learngene(tiny_aux, path)
    rewrite_metadata(path, lambda metadata: metadata.pop(CHECKSUM_KEY))
    with pytest.raises(LearngeneError, match=f"^learngene file {path} has no {CHECKSUM_KEY} metadata, so it cannot "
                                             "be verified: write it again with tools/train_aux.py$"):
        load_learngene(path)
    rewrite_metadata(path, lambda metadata: metadata.update(format="learngene/v1"))
    with pytest.raises(LearngeneError, match=f"^{path} is an older learngene file \\(learngene/v1\\), whose checksum "
                                             "does not cover its metadata: write it again with tools/train_aux.py"):
        load_learngene(path)


def test_learngene_naming_an_unknown_model_is_one_line(tiny_aux, tmp_path, capsys):
    path = tmp_path / "lg.safetensors"
    write_learngene(path, tiny_aux.state_dict(), "sws_aux_vit_huge_patch16_224", tiny_aux.architecture_args())
    out = tmp_path / "des"
    assert expand.main([str(path), "--depth", "4", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: learngene {path} names model "
                                                   "'sws_aux_vit_huge_patch16_224' with ")
    assert "which timm cannot create (Unknown model" in err and not out.exists()


def test_learngene_whose_tensors_do_not_fit_its_model_names_the_keys(tiny_aux, tmp_path):
    state = dict(tiny_aux.state_dict())
    del state["fc_norm.bias"]
    state["extra.weight"] = torch.zeros(2)
    path = tmp_path / "lg.safetensors"
    write_learngene(path, state, "sws_aux_vit_tiny_patch16_224", {**tiny_aux.architecture_args(), "embed_dim": 48})
    with pytest.raises(LearngeneError) as error:
        load_learngene(path).build_aux()
    assert str(error.value) == (
        f"learngene {path} does not fit the sws_aux_vit_tiny_patch16_224 it names (missing: fc_norm.bias; "
        "unexpected: extra.weight; shape: pos_embed [1, 16, 32] vs [1, 16, 48] expected, patch_embed.proj.weight "
        "[32, 1, 2, 2] vs [48, 1, 2, 2] expected, patch_embed.proj.bias [32] vs [48] expected and 62 more): pass a "
        "file written by tools/train_aux.py")


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_artifacts_get_the_modes_the_umask_allows(tiny_aux, tmp_path, umask):
    """Not the 0600 / 0700 of mkstemp / mkdtemp: a group machine must be able to share learngenes and models."""
    previous = os.umask(umask)
    try:
        atomic_write_text("x\n", tmp_path / "summary.json")
        atomic_torch_save(training_state(), tmp_path / "last.pt")
        save_learngene(tiny_aux, tmp_path / "lg.safetensors")
        assert expand.main([str(tmp_path / "lg.safetensors"), "--depth", "2", "--out", str(tmp_path / "des")]) == 0
    finally:
        os.umask(previous)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    for name in ("summary.json", "last.pt", "lg.safetensors", "des/config.json", "des/model.safetensors",
                 "des/init.json"):
        assert mode(tmp_path / name) == 0o666 & ~umask, name
    assert mode(tmp_path / "des") == 0o777 & ~umask


def test_a_model_folder_is_never_written_over(tiny_aux, tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(LearngeneError, match="already exists and is not empty"):
        save_model_folder(tiny_aux, out, preprocessing=None, model_args=tiny_aux.architecture_args())
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and [p.name for p in tmp_path.iterdir()] == ["model"]
