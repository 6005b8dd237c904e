"""Shared fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.imagetrees import make_tree
from utils.make_toy_dataset import build_toy_dataset

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest -n N: N workers share the cores, so each computes on one thread (torch's default of every core per
    # process would oversubscribe them); a test's numbers are compared only with numbers of the same process. The
    # commands a test runs inherit one thread too, unless it sets its own (a recipe would otherwise take every core
    # while the other worker computes)
    torch.set_num_threads(1)
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop at once, saying what to do, unless this checkout is the installed project the tests' commands import."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    repo = Path(__file__).resolve().parents[1]
    check = subprocess.run([sys.executable, str(repo / "utils" / "installed_checkout.py"), str(repo)], cwd="/",
                           capture_output=True, text=True)
    if check.returncode != 0:
        pytest.exit(f"the tests run this checkout's commands: {check.stderr.strip()}", returncode=4)


@pytest.fixture
def tiny_tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "clean")


@pytest.fixture(scope="session")
def digit_tree(tmp_path_factory) -> Path:
    """20 embedded digits (2 per class) as an ImageFolder tree, shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("digits")
    build_toy_dataset(root, limit=2)
    return root
