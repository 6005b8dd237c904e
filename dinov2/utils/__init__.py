"""Configuration, schedules, parameter groups and checkpoints of DINOv2 pretraining."""

from dinov2.utils.config import ConfigError, default_config, derived_values, load_config, scaled_lr
from dinov2.utils.schedules import Schedules, build_schedules, cosine_schedule

__all__ = [
    "ConfigError", "default_config", "derived_values", "load_config", "scaled_lr",
    "Schedules", "build_schedules", "cosine_schedule",
]
