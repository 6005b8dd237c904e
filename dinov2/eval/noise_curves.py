"""Accuracy against the PSNR of noised images, per noise family: the curves and their areas, from the
``{setting: {"psnr": dB, <metric>: top-1}}`` tables of ``dinov2.eval.robustness`` (light: no torch, so the report
reads them without importing a model)."""

from __future__ import annotations

import numpy as np

from utils.noise import parse_noise


def curves_by_family(table: dict[str, dict], key: str) -> dict[str, list[tuple[float, float]]]:
    """``{family: [(psnr, table[setting][key]), ...] by increasing PSNR}`` of a ``{setting: row}`` table."""
    families: dict[str, list[tuple[float, float]]] = {}
    for setting, row in table.items():
        families.setdefault(parse_noise(setting).family, []).append((row["psnr"], row[key]))
    return {family: sorted(points) for family, points in sorted(families.items())}


def family_areas(table: dict[str, dict], key: str) -> dict[str, float]:
    """Per noise family, the mean of ``key`` over its PSNR span (trapezoids / span) of a ``{setting: row}`` table."""
    areas = {}
    for family, values in curves_by_family(table, key).items():
        x, y = np.array([v[0] for v in values]), np.array([v[1] for v in values])
        span = x[-1] - x[0]
        areas[family] = float(y[0]) if span <= 0 else float(((y[1:] + y[:-1]) / 2 * np.diff(x)).sum() / span)
    return areas
