"""Configs: structured dataclasses (``schema``) and YAML + ``key=value`` loading (``load``)."""
from learngene.config.load import load_config, parse_config_args, save_config
from learngene.config.schema import (RESUMABLE_KEYS, DistillConfig, ElasticConfig, ModelConfig, OptimConfig,
                                     TeacherConfig, TrainConfig, check_train_config, resume_conflicts)

__all__ = ["RESUMABLE_KEYS", "DistillConfig", "ElasticConfig", "ModelConfig", "OptimConfig", "TeacherConfig",
           "TrainConfig", "check_train_config", "load_config", "parse_config_args", "resume_conflicts", "save_config"]
