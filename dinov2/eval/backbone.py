"""Frozen backbones for evaluation: which checkpoints a run has, their metadata, device and precision."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from torch import nn

from dinov2.hub import config_from_yaml, load_backbone
from dinov2.utils.checkpoint import TEACHER_EXPORT_NAME

_EXPORT_DIR = re.compile(r"^training_(\d+)$")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")


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


def list_teacher_exports(run_dir: Path) -> list[Path]:
    """Every ``DIR/eval/training_<it>/teacher_checkpoint.pth`` of a run, oldest first."""
    eval_dir = Path(run_dir) / "eval"
    if not eval_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} has no eval/ folder of teacher exports")
    found = []
    for entry in eval_dir.iterdir():
        match = _EXPORT_DIR.match(entry.name)
        if match and (entry / TEACHER_EXPORT_NAME).is_file():
            found.append((int(match.group(1)), entry / TEACHER_EXPORT_NAME))
    if not found:
        raise FileNotFoundError(f"{eval_dir} holds no training_<it>/{TEACHER_EXPORT_NAME}")
    return [path for _, path in sorted(found)]


def checkpoint_info(path: Path) -> CheckpointInfo:
    """Read the iteration and config stored with a teacher export or full checkpoint (weights are mmapped)."""
    path = Path(path)
    if path.is_dir():
        path = list_teacher_exports(path)[-1]
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    iteration = state.get("iteration") if isinstance(state, dict) else None
    match = _EXPORT_DIR.match(path.parent.name)
    if iteration is None and match:
        iteration = int(match.group(1))
    config = None
    if isinstance(state, dict) and isinstance(state.get("config"), str) and state["config"]:
        config = config_from_yaml(state["config"])
    epoch = None
    if iteration is not None and config is not None:
        epoch_length = int(config.train.OFFICIAL_EPOCH_LENGTH)
        # exports are named after the last finished iteration (0-based), so iteration + 1 steps are done
        epoch = round((int(iteration) + 1) / epoch_length, 4)
    return CheckpointInfo(path, None if iteration is None else int(iteration), epoch, config)


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


def load_frozen_backbone(path: Path, device: torch.device) -> nn.Module:
    """The teacher backbone (``dinov2.hub.load_backbone``) on ``device``, in eval mode, without gradients."""
    backbone = load_backbone(path).to(device).eval()
    for parameter in backbone.parameters():
        parameter.requires_grad_(False)
    return backbone


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return device


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision for the frozen backbone: ``auto`` is fp16 on CUDA (as upstream) and fp32 on CPU."""
    if precision not in PRECISIONS:
        raise ValueError(f"--precision {precision!r}: expected one of {PRECISIONS}")
    if precision == "auto":
        precision = "fp16" if device.type == "cuda" else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def iter_checkpoints(pretrained_weights: Optional[Path], run_dir: Optional[Path]) -> Iterator[Path]:
    """The checkpoints to evaluate: one file (or a run's newest export), or every export of ``run_dir``."""
    if (pretrained_weights is None) == (run_dir is None):
        raise ValueError("give exactly one of --pretrained-weights and --run-dir")
    if run_dir is not None:
        yield from list_teacher_exports(run_dir)
    else:
        path = Path(pretrained_weights)
        yield list_teacher_exports(path)[-1] if path.is_dir() else path
