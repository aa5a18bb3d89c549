"""Model folders record the preprocessing their weights were trained with, so stock timm's recipe reproduces the
project's own evaluation (issue 10, item 5)."""
import json
import logging
from pathlib import Path

import pytest
import timm
import timm.data
import torch
from sklearn.datasets import load_digits

import learngene.models  # noqa: F401  (registers the Aux-Nets)
from learngene.checkpoint import preprocessing_of, save_learngene
from learngene.data import DataConfig, build_datasets
from learngene.data.digits import MAX_PIXEL, split_indices
from learngene.tools import expand
from learngene.tools import finetune

ROOT = Path(__file__).resolve().parents[1]

TINY_VIT = ("model.kwargs={img_size: 8, patch_size: 2, in_chans: 1, num_classes: 10, embed_dim: 16, depth: 2, "
            "num_heads: 2, class_token: false, global_pool: avg}")
ARCHITECTURE_CFG = {"fixed_input_size": True, "first_conv": "patch_embed.proj", "classifier": "head",
                    "pool_size": None}


def raw_val_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The validation digits as a user has them: (1, 8, 8) float images in [0, 1] (pixel / 16), and labels."""
    digits = load_digits()
    val_idx = split_indices(digits.target)["val"].numpy()
    images = torch.tensor(digits.images[val_idx], dtype=torch.float32).unsqueeze(1) / MAX_PIXEL
    return images, torch.tensor(digits.target[val_idx])


def timm_recipe(model_dir: Path) -> tuple[torch.nn.Module, torch.Tensor]:
    """What a stock-timm user does: load the folder, resolve its data config, transform each image."""
    model = timm.create_model(f"local-dir:{model_dir}", pretrained=True).eval()
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    return model, torch.stack([transform(image) for image in raw_val_digits()[0]])


def project_val(img_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    _, val, _ = build_datasets(DataConfig(name="digits", img_size=img_size))
    images, labels = zip(*(val[i] for i in range(len(val))))
    return torch.stack(images), torch.tensor(labels)


def no_channel_warnings(caplog) -> bool:
    return not any("does not match" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("img_size, patch_size", [(8, 2), (16, 4)])
def test_des_net_folder_under_timms_recipe_sees_the_projects_inputs(tmp_path, caplog, img_size, patch_size):
    """Exact: timm's transform of the raw digits equals the project's validation tensors, so logits are equal."""
    cfg = DataConfig(name="digits", img_size=img_size)
    _, _, info = build_datasets(cfg)
    torch.manual_seed(0)
    aux = timm.create_model("sws_aux_vit_tiny_patch16_224", img_size=img_size, patch_size=patch_size, in_chans=1,
                            num_classes=10, embed_dim=32, num_heads=4).eval()
    save_learngene(aux, tmp_path / "lg.safetensors", preprocessing=preprocessing_of(cfg, info))
    with caplog.at_level(logging.WARNING):
        assert expand.main([str(tmp_path / "lg.safetensors"), "--depth", "4", "--out", str(tmp_path / "des")]) == 0
        model, timm_images = timm_recipe(tmp_path / "des")
    assert no_channel_warnings(caplog)

    images, labels = project_val(img_size)
    assert torch.equal(timm_images, images)
    assert torch.equal(raw_val_digits()[1], labels)
    with torch.no_grad():
        assert torch.equal(model(timm_images), model(images))


def test_finetuned_folder_holds_only_what_is_true_of_it_and_timm_reproduces_its_accuracy(tmp_path, caplog):
    out = tmp_path / "ft"
    with caplog.at_level(logging.WARNING):
        assert finetune.main(["model.name=vit_small_patch16_224", "model.pretrained=false", TINY_VIT,
                              "data.batch_size=32", "optim.epochs=2", "optim.lr=3e-3", "device=cpu",
                              f"output={out}"]) == 0
        model, timm_images = timm_recipe(out / "model")
    assert no_channel_warnings(caplog)

    cfg = DataConfig(name="digits")
    config = json.loads((out / "model" / "config.json").read_text())
    # No tag, license, hub id, url or ImageNet mean/std inherited from timm's vit_small_patch16_224.
    assert config["pretrained_cfg"] == {**ARCHITECTURE_CFG, **preprocessing_of(cfg, build_datasets(cfg)[2]),
                                        "num_classes": 10}
    assert config["model_args"] == {"img_size": [8, 8], "patch_size": 2, "in_chans": 1, "num_classes": 10,
                                    "embed_dim": 16, "depth": 2, "num_heads": 2, "class_token": False,
                                    "global_pool": "avg"}
    images, labels = project_val(8)
    with torch.no_grad():
        predictions = model(timm_images).argmax(-1)
        assert torch.equal(predictions, model(images).argmax(-1))
    hits = int((predictions == raw_val_digits()[1]).sum())
    summary = json.loads((out / "summary.json").read_text())
    assert hits == round(summary["val_top1"] * len(labels) / 100)
    assert predictions.unique().numel() > 2  # a model that tells digits apart, not one constant answer


def test_expand_passes_the_preprocessing_on_and_records_none_for_untrained_weights(tiny_aux, tmp_path):
    preprocessing = {"input_size": [1, 8, 8], "mean": [0.25], "std": [0.5], "interpolation": "bilinear",
                     "crop_pct": 1.0, "crop_mode": "center"}
    save_learngene(tiny_aux, tmp_path / "lg.safetensors", preprocessing=preprocessing)
    assert expand.main([str(tmp_path / "lg.safetensors"), "--depth", "4", "--out", str(tmp_path / "des")]) == 0
    assert expand.main([str(tmp_path / "des"), "--method", "weight-selection", "--depth", "2",
                        "--model-args", '{"embed_dim": 16, "num_heads": 2}', "--out", str(tmp_path / "ws")]) == 0
    assert expand.main(["--method", "scratch", "--model", "vit_tiny_patch16_224", "--depth", "2", "--model-args",
                        '{"img_size": 8, "patch_size": 2, "in_chans": 3, "num_classes": 10, "embed_dim": 16, '
                        '"num_heads": 2}', "--out", str(tmp_path / "scratch")]) == 0
    pretrained_cfg = {name: json.loads((tmp_path / name / "config.json").read_text())["pretrained_cfg"]
                      for name in ("des", "ws", "scratch")}
    assert pretrained_cfg["des"] == pretrained_cfg["ws"] == {**ARCHITECTURE_CFG, **preprocessing, "num_classes": 10}
    assert pretrained_cfg["scratch"] == {**ARCHITECTURE_CFG, "input_size": [3, 8, 8], "num_classes": 10}
