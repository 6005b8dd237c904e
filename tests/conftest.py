"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.imagetrees import make_tree


@pytest.fixture
def tiny_tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "clean")
