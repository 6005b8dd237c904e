"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.imagetrees import make_tree
from utils.make_toy_dataset import build_toy_dataset

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest -n N: N workers share the cores, so each computes on one thread (torch's default of every core per
    # process would oversubscribe them); a test's numbers are compared only with numbers of the same process
    torch.set_num_threads(1)


@pytest.fixture
def tiny_tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "clean")


@pytest.fixture(scope="session")
def digit_tree(tmp_path_factory) -> Path:
    """20 embedded digits (2 per class) as an ImageFolder tree, shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("digits")
    build_toy_dataset(root, limit=2)
    return root
