"""Means with 95 % Student-t intervals: of the mean, or of one more value (a prediction range)."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
from scipy import stats


def t_interval(values: Sequence[float], of: str = "mean") -> dict[str, Optional[float]]:
    """Mean, std (n - 1) and a 95 % t interval: of the mean (``of="mean"``: half-width t x std / sqrt(n)) or of one
    more value (``of="value"``, the prediction range: t x std x sqrt(1 + 1/n)); None bounds below 2 values."""
    array = np.asarray(values, dtype=np.float64)
    return interval_of(len(array), float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else None, of)


def interval_of(n: int, mean: float, std: Optional[float], of: str) -> dict[str, Optional[float]]:
    """The block of :func:`t_interval` from ``n`` values' mean and std."""
    if n < 2 or std is None:
        return {"n": n, "mean": mean, "std": None, "low": None, "high": None}
    spread = math.sqrt(1 + 1 / n) if of == "value" else 1 / math.sqrt(n)
    half = float(stats.t.ppf(0.975, n - 1)) * std * spread
    return {"n": n, "mean": mean, "std": std, "low": mean - half, "high": mean + half}
