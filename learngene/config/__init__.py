"""Configs: structured dataclasses (``schema``) and YAML + ``key=value`` loading (``load``)."""
from learngene.config.load import load_config, parse_config_args, save_config
from learngene.config.schema import (DistillConfig, ElasticConfig, ModelConfig, OptimConfig, TeacherConfig,
                                     TrainConfig, check_train_config)

__all__ = ["DistillConfig", "ElasticConfig", "ModelConfig", "OptimConfig", "TeacherConfig", "TrainConfig",
           "check_train_config", "load_config", "parse_config_args", "save_config"]
