"""An elastic run logs the val top-1 of every width it trains, not only the full width's."""
import csv

import timm
import torch
from torch.utils.data import DataLoader

from learngene.checkpoint import load_learngene
from learngene.config import ElasticConfig, ModelConfig, OptimConfig, TrainConfig
from learngene.data import DataConfig, build_datasets
from learngene.engine import evaluate, train
from learngene.expand.width import narrow_width


def test_elastic_run_logs_every_trained_width(tmp_path, capsys):
    aux = dict(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=16, num_heads=2, stage_sizes=[1, 2])
    cfg = TrainConfig(model=ModelConfig(name="sws_aux_vit_tiny_patch16_224", kwargs=aux),
                      data=DataConfig(name="digits", batch_size=16, train_limit=64),
                      optim=OptimConfig(lr=3e-3, epochs=1), output=str(tmp_path / "run"), device="cpu",
                      elastic=ElasticConfig(widths=[8, 16]))
    torch.manual_seed(0)
    summary = train(cfg)
    with open(tmp_path / "run" / "log.csv") as f:
        row = list(csv.DictReader(f))[-1]
    learngene = load_learngene(tmp_path / "run" / "learngene.safetensors")
    narrow = timm.create_model(learngene.model, **dict(learngene.model_args, embed_dim=8, num_heads=1)).eval()
    narrow.load_state_dict(narrow_width(learngene.state_dict, 2, 8))
    _, val, _ = build_datasets(cfg.data)
    expected = evaluate(narrow, DataLoader(val, batch_size=64), "cpu")["top1"]
    assert float(row["val_top1_w8"]) == summary["val_top1_w8"] == expected
    assert "val_top1_w16" not in row  # the full width is val_top1
    assert f"top1_w8 {expected:.2f}" in capsys.readouterr().out
