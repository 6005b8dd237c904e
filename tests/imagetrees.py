"""Tiny image trees made by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, size: tuple[int, int] = (20, 14), mode: str = "RGB", seed: int = 0) -> Path:
    """Write a random image of ``size`` (width, height) in PIL ``mode``; the format follows the extension."""
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    image = rgb.convert(mode)
    if path.suffix.lower() in (".jpg", ".jpeg") and mode not in ("RGB", "L", "CMYK"):
        image = rgb
    image.save(path)
    return path


def make_tree(root: Path, classes: int = 2, per_class: int = 3, splits: tuple[str, ...] = ("train", "val"),
              labels: bool = True) -> Path:
    """A small ImageFolder tree with mixed extensions, modes and sizes."""
    variants = [(".png", "RGB", (20, 14)), (".JPEG", "RGB", (17, 23)), (".jpg", "L", (16, 16)),
                (".png", "RGBA", (12, 9)), (".jpg", "CMYK", (15, 11)), (".bmp", "P", (10, 10))]
    seed = 0
    for split in splits:
        for c in range(classes):
            for i in range(per_class):
                extension, mode, size = variants[(c * per_class + i) % len(variants)]
                write_image(root / split / f"n{c:03d}" / f"{split}_{c}_{i}{extension}", size, mode, seed)
                seed += 1
    if labels:
        (root / "labels.txt").write_text("".join(f"n{c:03d},class number {c}\n" for c in range(classes)))
    return root
