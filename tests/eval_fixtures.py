"""Tiny checkpoints and image trees shared by the evaluation tests (helpers only, no test here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dinov2.models import build_model_from_cfg
from dinov2.utils.checkpoint import write_encoder_export
from dinov2.utils.config import config_to_yaml, load_config
from utils.image_io import save_png_atomic

TINY_OVERRIDES = ("student.arch=vit_tiny_4blocks", "student.patch_size=8", "crops.global_crops_size=32",
                  "train.OFFICIAL_EPOCH_LENGTH=10")


def make_teacher_export(run_dir: Path, iteration: int, seed: int = 0) -> Path:
    """A randomly initialised tiny ViT written as ``RUN/eval/training_<it>/teacher_checkpoint.pth``."""
    cfg = load_config(overrides=TINY_OVERRIDES)
    torch.manual_seed(seed)
    teacher, _ = build_model_from_cfg(cfg, only_teacher=True)
    state = {f"backbone.{key}": value for key, value in teacher.state_dict().items()}
    return write_encoder_export(run_dir, iteration, "teacher", state, config_to_yaml(cfg))


def make_separable_tree(root: Path, num_classes: int, train_per_class: int, val_per_class: int,
                        size: int = 32, seed: int = 0) -> Path:
    """Classes that differ by their flat colour (linearly separable in any reasonable feature space)."""
    rng = np.random.default_rng(seed)
    palette = np.array([(230, 30, 30), (30, 200, 40), (40, 60, 230), (240, 240, 40), (200, 40, 220)])
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for c in range(num_classes):
            for i in range(count):
                pixels = palette[c] + rng.integers(-12, 13, size=(size, size, 3))
                save_png_atomic(np.clip(pixels, 0, 255).astype(np.uint8), root / split / f"class{c}" / f"{i:03d}.png")
    return root
