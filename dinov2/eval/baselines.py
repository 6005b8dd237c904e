"""Reference points for an evaluation: a backbone at its random initialisation, and k-NN on raw pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from dinov2.eval.knn_classifier import DEFAULT_TEMPERATURE, knn_accuracies
from dinov2.models import build_model_from_cfg
from dinov2.utils.checkpoint import write_encoder_export
from dinov2.utils.config import config_to_yaml
from utils.dataset_index import SplitIndex


def random_teacher_export(run_dir: Path, cfg: DictConfig, seed: int) -> Path:
    """The backbone of ``cfg`` at its random initialisation (``torch.manual_seed(seed)``), written as
    ``RUN/eval/training_0/teacher_checkpoint.pth`` so that every evaluation CLI reads it as a trained export."""
    torch.manual_seed(seed)
    teacher, _ = build_model_from_cfg(cfg, only_teacher=True)
    state = {f"backbone.{key}": value for key, value in teacher.state_dict().items()}
    return write_encoder_export(run_dir, 0, "teacher", state, config_to_yaml(cfg))


def _pixels(split: SplitIndex) -> tuple[torch.Tensor, torch.Tensor]:
    images = np.stack([split.root.read(relpath).reshape(-1) for relpath, _ in split.samples])
    return torch.from_numpy(images).float() / 255.0, torch.tensor([label for _, label in split.samples])


def raw_pixel_knn(train: SplitIndex, val: SplitIndex, k: int = 20,
                  temperature: float = DEFAULT_TEMPERATURE) -> dict[str, float]:
    """Top-1 / top-5 (%) of the weighted k-NN on raw RGB pixels in [0, 1] (cosine similarity, the same voting as
    on features); every image of both splits must have the same size."""
    (train_x, train_y), (val_x, val_y) = _pixels(train), _pixels(val)
    if train_x.shape[1] != val_x.shape[1]:
        raise ValueError(f"raw-pixel k-NN needs images of one size: {train.root} and {val.root} differ")
    return knn_accuracies(train_x, train_y, val_x, val_y, [k], temperature, len(train.classes))[str(k)]
