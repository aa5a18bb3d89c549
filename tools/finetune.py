"""Train or fine-tune any timm model or model folder (CE, or KD with teacher.name=...); report top-1/top-5.

    python tools/finetune.py                                     # configs/digits/des_finetune.yaml
    python tools/finetune.py --config configs/digits/ancestry.yaml                      # the digits ancestry
    python tools/finetune.py model.name=local-dir:runs/des12 output=runs/des12_ft       # a Des-Net from expand.py
    python tools/finetune.py model.name=local-dir:runs/des12 optim.epochs=0 output=runs/des12_eval  # evaluate only
    torchrun --nproc-per-node 4 tools/finetune.py --config configs/imagenet/des_finetune.yaml data.root=...
    python tools/finetune.py --config configs/imagenet/des_finetune.yaml executor=slurm slurm.gpus_per_node=4

The trained model is written to OUTPUT/model (a timm local-dir folder); see docs/training.md.
"""
from __future__ import annotations

from pathlib import Path

from learngene.cli import entry_point
from learngene.config import TrainConfig, parse_config_args
from learngene.slurm import launch_args, run_training

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "digits" / "des_finetune.yaml"


@entry_point
def main(argv=None) -> int:
    argv, launch = launch_args(argv)
    cfg = parse_config_args(argv, TrainConfig, DEFAULT_CONFIG, __doc__)
    return run_training(cfg, launch)


if __name__ == "__main__":
    raise SystemExit(main())
