"""Distill an Aux-Net from its ancestry (teacher) and write its learngene: OUTPUT/learngene.safetensors.

    python tools/train_aux.py                                    # configs/digits/aux.yaml (CPU, minutes)
    python tools/train_aux.py optim.epochs=5 output=runs/digits/aux_short
    torchrun --nproc-per-node 4 tools/train_aux.py --config configs/imagenet/aux_b.yaml data.root=/data/imagenet
    python tools/train_aux.py --config configs/imagenet/aux_b.yaml executor=slurm slurm.gpus_per_node=4 \
        slurm.partition=gpu                                      # one Slurm job, 4 tasks (docs/cluster.md)

Resume an interrupted run with ``resume=auto``; see docs/training.md.
"""
from __future__ import annotations

from pathlib import Path

from learngene.cli import entry_point
from learngene.config import TrainConfig, parse_config_args
from learngene.errors import LearngeneError
from learngene.models import des_architecture
from learngene.slurm import launch_args, run_training

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "digits" / "aux.yaml"


@entry_point
def main(argv=None) -> int:
    argv, launch = launch_args(argv)
    cfg = parse_config_args(argv, TrainConfig, DEFAULT_CONFIG, __doc__)
    if des_architecture(cfg.model.name) == cfg.model.name:  # Aux-Nets are the sws_aux_* / tleg_aux_* models
        raise LearngeneError(f"model.name {cfg.model.name!r} is not an Aux-Net (sws_aux_* or tleg_aux_*): "
                             "train other models with tools/finetune.py")
    return run_training(cfg, launch)


if __name__ == "__main__":
    raise SystemExit(main())
