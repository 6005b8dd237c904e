"""Load a trained backbone in one call, from a run directory, a teacher export or a full checkpoint.

    from dinov2.hub import load_backbone
    model = load_backbone("outputs/run")                                   # newest teacher export of the run
    model = load_backbone("outputs/run/eval/training_249/teacher_checkpoint.pth")
    model = load_backbone("outputs/run/model_0000249.pth")                  # the teacher of a full checkpoint

The architecture comes from the config stored with the weights (or ``DIR/config.yaml``); weights are read with
``weights_only=True`` and loaded strictly: a missing or unexpected key is an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import torch
from omegaconf import DictConfig, OmegaConf

from dinov2.models import DinoVisionTransformer, build_model_from_cfg
from dinov2.train.run_files import CONFIG_FILENAME
from dinov2.utils.checkpoint import newest_teacher_export
from dinov2.utils.config import DERIVED_SECTION, default_config

PathLike = Union[str, Path]


def config_from_yaml(text: str) -> DictConfig:
    """A training config from saved YAML (its derived section dropped), checked against the defaults."""
    saved = OmegaConf.create(text)
    if DERIVED_SECTION in saved:
        saved.pop(DERIVED_SECTION)
    return OmegaConf.merge(default_config(), saved)


def backbone_state_dict(state: dict[str, Any], source: PathLike) -> dict[str, torch.Tensor]:
    """The plain backbone keys of a teacher export (``teacher`` -> ``backbone.*``) or a full checkpoint
    (``model`` -> ``teacher.backbone.*``)."""
    if "teacher" in state:
        weights, prefix = state["teacher"], "backbone."
    elif "model" in state:
        weights, prefix = state["model"], "teacher.backbone."
    else:
        raise KeyError(f"{source} holds neither 'teacher' (teacher export) nor 'model' (full checkpoint)")
    backbone = {key[len(prefix) :]: value for key, value in weights.items() if key.startswith(prefix)}
    if not backbone:
        raise KeyError(f"{source} has no '{prefix}*' weights")
    return backbone


def load_backbone(
    source: PathLike, config: Optional[DictConfig] = None, map_location: Any = "cpu"
) -> DinoVisionTransformer:
    """The teacher backbone of a run directory, teacher export or full checkpoint, in eval mode."""
    path = Path(source)
    if path.is_dir():
        path = newest_teacher_export(path)
    if not path.is_file():
        raise FileNotFoundError(f"{source} is neither a run directory nor a checkpoint file")
    state = torch.load(path, map_location=map_location, weights_only=True)
    if config is None:
        config = _config_for(path, state)
    backbone, _ = build_model_from_cfg(config, only_teacher=True)
    backbone.load_state_dict(backbone_state_dict(state, path), strict=True)
    return backbone.eval()


def _config_for(path: Path, state: dict[str, Any]) -> DictConfig:
    if isinstance(state.get("config"), str) and state["config"]:
        return config_from_yaml(state["config"])
    for folder in (path.parent, *path.parents):
        candidate = folder / CONFIG_FILENAME
        if candidate.is_file():
            return config_from_yaml(candidate.read_text())
    raise FileNotFoundError(f"no config stored in {path} nor a {CONFIG_FILENAME} above it; pass config=")
