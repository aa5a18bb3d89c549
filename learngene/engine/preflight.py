"""The checks a training passes before anything is trained, written or submitted: the local run (``train``) and
``executor=slurm`` (before ``sbatch``) go through this one function, so both refuse the same inputs with the same
message. Nothing here reads the data or the weights: models are built on the meta device from their configs."""
from __future__ import annotations

from pathlib import Path

import torch

from learngene.checkpoint import not_a_model_folder
from learngene.config import TrainConfig, check_train_config
from learngene.data.factory import check_data_config
from learngene.engine.elastic import check_elastic
from learngene.engine.models import LOCAL_DIR, build_model
from learngene.engine.run_folder import check_fresh_output
from learngene.errors import LearngeneError


def check_training(cfg: TrainConfig, before_submit: bool = False) -> TrainConfig:
    """Refuse ``cfg`` where the run would refuse it. ``before_submit``: also the output folder (a finished run in
    it, or a state to resume that is not there), which the local run checks once it holds the folder's lock."""
    check_train_config(cfg)
    check_data_config(cfg.data)
    student = meta_model("model", cfg.model.name, cfg.model.pretrained, cfg.model.checkpoint, cfg.model.kwargs)
    if cfg.teacher.name:
        meta_model("teacher", cfg.teacher.name, cfg.teacher.pretrained, cfg.teacher.checkpoint, cfg.teacher.kwargs)
    if cfg.elastic.widths:
        check_elastic(cfg.elastic, student)
    if before_submit:  # as Run.find_resume_state decides
        last = Path(cfg.output) / "last.pt"
        if not cfg.resume or (cfg.resume == "auto" and not last.exists()):
            check_fresh_output(Path(cfg.output), cfg.resume)
            return cfg
        path = last if cfg.resume == "auto" else Path(cfg.resume)
        if path.resolve() != last.resolve():
            check_fresh_output(Path(cfg.output), cfg.resume)
        if not path.is_file():
            raise LearngeneError(f"training state {path} does not exist: check the path")
    return cfg


def meta_model(what: str, name: str, pretrained: bool, checkpoint: str, kwargs: dict) -> torch.nn.Module:
    """The model of a config node on the meta device, after the checks its weights get when it is built."""
    if name.startswith(LOCAL_DIR) and pretrained and not checkpoint:
        folder = Path(name[len(LOCAL_DIR):])
        if not (folder / "config.json").is_file():
            raise LearngeneError(not_a_model_folder(folder))
    if checkpoint and not Path(checkpoint).is_file():
        raise LearngeneError(f"{what}.checkpoint {checkpoint} does not exist: check the path")
    with torch.device("meta"):
        return build_model(name, what=what, **kwargs)
