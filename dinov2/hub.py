"""Load a trained backbone in one call: a run directory, an encoder export, a full checkpoint, an export folder
(``model.safetensors`` + ``config.json``, see :mod:`dinov2.export`), a Hugging Face transformers DINOv2 folder, a
timm folder, or a bare backbone state dict such as upstream DINOv2's released weights or timm's.

    from dinov2.hub import load_backbone
    model = load_backbone("outputs/run")                                   # newest encoder export of the run
    model = load_backbone("outputs/run/eval/training_249/teacher_checkpoint.pth")
    model = load_backbone("outputs/simclr/eval/training_249/student_checkpoint.pth")  # SimCLR, MoCo v3, SimSiam
    model = load_backbone("outputs/run/model_0000249.pth")                  # the evaluated encoder of a checkpoint
    model = load_backbone("outputs/export")                                 # python -m dinov2.export ...
    model = load_backbone("dinov2_vits14_pretrain.pth", arch="vit_small", patch_size=14)   # official weights
    model = load_backbone("dinov2-small")            # a transformers folder (facebook/dinov2-small, downloaded)
    model = load_backbone("vit_small_patch14_dinov2.safetensors")          # timm's weights

The architecture comes from the config stored with the weights (or ``DIR/config.yaml``), an export's or a
transformers folder's ``config.json``, or a bare state dict's tensors (``arch`` and ``patch_size``, when given,
are checked against them). Weights are read with ``weights_only=True`` (or from safetensors) and loaded strictly.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any, Optional, Union

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors import SafetensorError

from dinov2.models import DinoVisionTransformer, ResNetBackbone, build_model_from_cfg
from dinov2.models.backbone_weights import (BackboneSpec, BackboneWeightsError, is_bare_backbone, load_bare_backbone,
                                           spec_of_model)
from dinov2.models.transformers_weights import (TRANSFORMERS_WEIGHTS, load_transformers_backbone,
                                                transformers_weights_file)
from dinov2.utils.checkpoint import CONFIG_FILENAME, newest_encoder_export
from dinov2.utils.choices import evaluated_encoder
from dinov2.utils.config import DERIVED_SECTION, default_config
from utils.cli import squeezed
from utils.weights_file import describe_contents, export_encoder, is_training_file, load_torch_file

PathLike = Union[str, Path]
EXPORT_WEIGHTS, EXPORT_CONFIG = "model.safetensors", "config.json"
FOLDER_WEIGHTS = TRANSFORMERS_WEIGHTS  # what a weights folder may hold beside its config.json
BACKBONE_SOURCE = ("a backbone: an encoder export, a full checkpoint, a run directory, a python -m dinov2.export, "
                   "transformers or timm folder, or a bare backbone state dict")


def config_from_yaml(text: str) -> DictConfig:
    """A training config from saved YAML (its derived section dropped), checked against the defaults."""
    saved = OmegaConf.create(text)
    if DERIVED_SECTION in saved:
        saved.pop(DERIVED_SECTION)
    return OmegaConf.merge(default_config(), saved)


def backbone_state_dict(state: dict[str, Any], source: PathLike, encoder: str = "teacher") -> dict[str, torch.Tensor]:
    """The plain backbone keys of an encoder export (``teacher`` or ``student`` -> ``backbone.*``) or a full
    checkpoint (``model`` -> ``<encoder>.backbone.*``: the EMA teacher of DINO-style runs, the student of contrastive
    ones)."""
    exported = export_encoder(state)
    if exported is not None:
        weights, prefix = state[exported], "backbone."
    elif "model" in state:
        weights, prefix = state["model"], f"{encoder}.backbone."
    else:
        raise BackboneWeightsError(f"{source} holds {describe_contents(state)}: expected {BACKBONE_SOURCE}")
    backbone = {key[len(prefix) :]: value for key, value in weights.items() if key.startswith(prefix)}
    if not backbone:
        raise BackboneWeightsError(f"{source} has no '{prefix}*' weights: expected {BACKBONE_SOURCE}")
    return backbone


def is_run_directory(path: Path) -> bool:
    """True when ``path`` is a training run's folder: it holds full checkpoints or encoder exports."""
    path = Path(path)
    return path.is_dir() and (any(path.glob("model_*.pth")) or any((path / "eval").glob("training_*")))


def export_folder(path: Path) -> Optional[Path]:
    """The weights folder ``path`` is (or whose weights file it is): a ``python -m dinov2.export`` folder, a
    transformers or a timm one (``config.json`` beside ``model.safetensors`` or ``pytorch_model.bin``), else None.
    A folder inside a run directory is ignored, with a warning: the run's newest teacher is what the folder stands
    for, and an export written there earlier would go stale as the run resumes."""
    folder = path.parent if path.name in FOLDER_WEIGHTS else path
    if (folder / EXPORT_CONFIG).is_file() and any((folder / name).is_file() for name in FOLDER_WEIGHTS):
        if path.name != EXPORT_WEIGHTS and is_run_directory(folder):
            warnings.warn(f"{folder} is a run directory: its newest encoder export is used, not the "
                          f"{EXPORT_WEIGHTS} + {EXPORT_CONFIG} export inside it (pass {folder / EXPORT_WEIGHTS} for "
                          "that one)")
            return None
        return folder
    return None


def read_export_config(folder: Path) -> dict[str, Any]:
    """The ``config.json`` of an export folder; :class:`BackboneWeightsError` naming it when it is not JSON."""
    path = folder / EXPORT_CONFIG
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BackboneWeightsError(f"{path} is not the JSON config of a python -m dinov2.export folder ({error})") \
            from None
    if not isinstance(config, dict):
        raise BackboneWeightsError(f"{path} holds a {type(config).__name__}: expected the JSON object of a python -m "
                                   "dinov2.export folder")
    return config


def weights_digest(data: bytes) -> str:
    """The sha256 of an export's ``model.safetensors`` bytes, recorded in its ``config.json``."""
    return hashlib.sha256(data).hexdigest()


def load_export(folder: Path, map_location: Any = "cpu") -> DinoVisionTransformer:
    """The backbone of an export folder, strictly loaded, in eval mode. The weights must be those its
    ``config.json`` was written for (its ``weights_sha256``): a kill between the two files of a re-export leaves
    new weights beside the old config, which :class:`BackboneWeightsError` names instead of loading."""
    from safetensors.torch import load

    config = read_export_config(folder)
    data = (folder / EXPORT_WEIGHTS).read_bytes()
    expected = config.get("weights_sha256")
    if expected is not None and weights_digest(data) != expected:
        raise BackboneWeightsError(f"{folder / EXPORT_WEIGHTS} is not the file {folder / EXPORT_CONFIG} describes "
                                   "(an export interrupted between its two files): run python -m dinov2.export "
                                   "again")
    try:
        model = BackboneSpec.from_dict(config).build()
        tensors = load(data)
        model.load_state_dict({key: value.to(map_location) for key, value in tensors.items()}, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError, SafetensorError) as error:  # a damaged or foreign export
        raise BackboneWeightsError(f"{folder / EXPORT_WEIGHTS} does not load as the backbone {folder / EXPORT_CONFIG} "
                                   f"describes ({type(error).__name__}: {squeezed(error, 160)})") \
            from None
    return model.eval()


def load_weights_folder(folder: Path, map_location: Any = "cpu") -> DinoVisionTransformer:
    """The backbone of a weights folder, by what its ``config.json`` says: transformers (``model_type``), timm
    (``architecture``: the folder's weights are a timm state dict) or this project's export."""
    config = read_export_config(folder)
    if "model_type" in config:
        return load_transformers_backbone(folder, config, map_location)
    if "architecture" in config:
        weights = transformers_weights_file(folder)
        state = load_torch_file(weights, f"timm's {config['architecture']} weights", map_location)
        return load_bare_backbone(state, source=str(weights))
    return load_export(folder, map_location)


def load_backbone(
    source: PathLike, config: Optional[DictConfig] = None, map_location: Any = "cpu", arch: Optional[str] = None,
    patch_size: Optional[int] = None,
) -> Union[DinoVisionTransformer, ResNetBackbone]:
    """The evaluated backbone (DINO-style runs: the EMA teacher; contrastive runs: the student) of a run directory,
    encoder export or full checkpoint, or the backbone of an export, transformers or timm folder or a bare state
    dict (upstream's or timm's, ``.pth`` or ``.safetensors``), in eval mode.
    ``arch`` / ``patch_size`` check a bare state dict's shape."""
    path = Path(source)
    folder = export_folder(path)
    if folder is not None:
        return _as_asked(load_weights_folder(folder, map_location), arch, patch_size, folder)
    if path.is_dir():
        path = newest_encoder_export(path)
    if not path.is_file():
        raise FileNotFoundError(f"{source} is neither a run directory, an export folder nor a checkpoint file")
    state = load_torch_file(path, BACKBONE_SOURCE, map_location)
    if not isinstance(state, dict):
        raise BackboneWeightsError(f"{path} holds {describe_contents(state)}: expected {BACKBONE_SOURCE}")
    if not is_training_file(state) and is_bare_backbone(state):
        return load_bare_backbone(state, arch, patch_size, source=str(path))
    if config is None:
        config = _config_for(path, state)
    backbone, _ = build_model_from_cfg(config, only_teacher=True)
    backbone.load_state_dict(backbone_state_dict(state, path, evaluated_encoder(config.method.name)), strict=True)
    return _as_asked(backbone.eval(), arch, patch_size, path)


def _as_asked(model: Union[DinoVisionTransformer, ResNetBackbone], arch: Optional[str], patch_size: Optional[int],
              path: Path) -> Union[DinoVisionTransformer, ResNetBackbone]:
    """``model`` when it has the ``arch`` / ``patch_size`` asked for (None: any); a file that records its
    architecture is never rebuilt as another, so a mismatch is an error rather than a request silently ignored."""
    if arch is None and patch_size is None:
        return model
    if not isinstance(model, DinoVisionTransformer):
        raise BackboneWeightsError(f"{path} holds a {type(model).__name__} ({getattr(model, 'arch', '?')}), not the "
                                   f"ViT asked for (arch {arch}, patch size {patch_size})")
    spec = spec_of_model(model)
    if (arch or spec.arch) != spec.arch or (patch_size or spec.patch_size) != spec.patch_size:
        raise BackboneWeightsError(
            f"{path} holds a {spec.arch} with patch size {spec.patch_size}, not the {arch or spec.arch} with patch "
            f"size {patch_size or spec.patch_size} asked for: the architecture of a file that records it is read "
            f"from it (leave --arch and --patch-size out, or give the weights meant)")
    return model


def _config_for(path: Path, state: dict[str, Any]) -> DictConfig:
    if isinstance(state.get("config"), str) and state["config"]:
        return config_from_yaml(state["config"])
    for folder in (path.parent, *path.parents):
        candidate = folder / CONFIG_FILENAME
        if candidate.is_file():
            return config_from_yaml(candidate.read_text())
    raise BackboneWeightsError(f"{path} holds {describe_contents(state)} with no training config, and no "
                               f"{CONFIG_FILENAME} is above it: expected {BACKBONE_SOURCE}")
