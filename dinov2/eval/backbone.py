"""Frozen backbones for evaluation: which checkpoints to evaluate, their metadata, the frozen module."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from torch import nn

from dinov2.hub import BACKBONE_SOURCE, config_from_yaml, export_folder, load_backbone, read_export_config
from dinov2.utils.checkpoint import EXPORT_DIR_PATTERN, list_encoder_exports, newest_encoder_export
from utils.weights_file import load_torch_file


@dataclass
class CheckpointInfo:
    """Where a checkpoint is and what it says about itself (iteration, epoch, the run's config keys)."""

    path: Path
    iteration: Optional[int]
    epoch: Optional[float]
    config: Any  # DictConfig or None

    @property
    def tag(self) -> str:
        """A file-name tag that orders and identifies the checkpoint (``training_<it>`` when known)."""
        return f"training_{self.iteration}" if self.iteration is not None else self.path.stem


def checkpoint_info(path: Path) -> CheckpointInfo:
    """Read the iteration and config stored with an encoder export, full checkpoint or export folder (weights are
    mmapped); a bare state dict has neither."""
    path = Path(path)
    folder = export_folder(path)
    if folder is not None:
        exported = read_export_config(folder)
        config = config_from_yaml(exported["training_config"]) if exported.get("training_config") else None
        return _with_epoch(CheckpointInfo(folder, exported.get("iteration"), None, config))
    if path.is_dir():
        path = newest_encoder_export(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    state = load_torch_file(path, BACKBONE_SOURCE, "cpu", mmap=True)
    iteration = state.get("iteration") if isinstance(state, dict) else None
    if iteration is not None and "model" in state:
        # a full checkpoint stores the next iteration to run; results name the last finished one, as exports do
        iteration = int(iteration) - 1
    match = EXPORT_DIR_PATTERN.match(path.parent.name)
    if iteration is None and match:
        iteration = int(match.group(1))
    config = None
    if isinstance(state, dict) and isinstance(state.get("config"), str) and state["config"]:
        config = config_from_yaml(state["config"])
    return _with_epoch(CheckpointInfo(path, None if iteration is None else int(iteration), None, config))


def _with_epoch(info: CheckpointInfo) -> CheckpointInfo:
    if info.iteration is not None and info.config is not None:
        # exports are named after the last finished iteration (0-based), so iteration + 1 steps are done
        info.epoch = round((int(info.iteration) + 1) / int(info.config.train.OFFICIAL_EPOCH_LENGTH), 4)
    return info


def config_value(config: Any, dotted: str) -> Any:
    """``config.a.b`` or None when any part is missing (runs may carry optional experiment labels)."""
    node = config
    for part in dotted.split("."):
        if node is None:
            return None
        try:
            node = node.get(part) if hasattr(node, "get") else getattr(node, part, None)
        except Exception:  # a struct-mode config raises on unknown keys
            return None
    return node


def load_frozen_backbone(path: Path, device: torch.device, arch: Optional[str] = None,
                         patch_size: Optional[int] = None) -> nn.Module:
    """The teacher backbone (``dinov2.hub.load_backbone``; ``arch`` / ``patch_size`` check a bare state dict) on
    ``device``, in eval mode, without gradients."""
    backbone = load_backbone(path, arch=arch, patch_size=patch_size).to(device).eval()
    for parameter in backbone.parameters():
        parameter.requires_grad_(False)
    return backbone


def iter_checkpoints(pretrained_weights: Optional[Path], run_dir: Optional[Path]) -> Iterator[Path]:
    """The checkpoints to evaluate: one file (or a run's newest export), or every export of ``run_dir``."""
    if (pretrained_weights is None) == (run_dir is None):
        raise ValueError("give exactly one of --pretrained-weights and --run-dir")
    if run_dir is not None:
        yield from list_encoder_exports(run_dir)
    else:
        path = Path(pretrained_weights)
        yield newest_encoder_export(path) if path.is_dir() and export_folder(path) is None else path
