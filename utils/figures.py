"""Figures: matplotlib on its non-interactive backend, and PNG files written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from utils.atomic import atomic_write

FIGURE_DPI = 120


def pyplot() -> Any:
    """``matplotlib.pyplot`` with the Agg backend (no display needed), imported only when a figure is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(figure: Any, path: Path, dpi: int = FIGURE_DPI) -> Path:
    """Lay out ``figure``, write it to ``path`` as PNG (temporary file, then rename) and close it."""
    figure.tight_layout()
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=dpi)
    pyplot().close(figure)
    return Path(path)
