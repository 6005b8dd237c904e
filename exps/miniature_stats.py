"""Statistics of the multi-seed miniature: mean +- std per arm and paired differences with 95 % intervals.

    python exps/miniature_stats.py OUT [--out OUT/report]

Reads the result files below ``OUT/seed_<s>/eval/`` (one folder per seed, written by ``exps/miniature.sh``) and
``OUT/baselines/`` and writes ``miniature.{md,csv,json}``. For every arm and seed the number is the last
checkpoint's linear top-1 (the head selected on the held-out part of the training set) and k-NN top-1 (largest
k). Differences are paired by seed (the arms of one seed share its data order, augmentation and initialisation);
their 95 % interval is mean +- t(0.975, n - 1) x std / sqrt(n), and an ordering is claimed only where the
interval excludes zero.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import sys
from pathlib import Path
from typing import Optional

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from scipy import stats

from exps.report import collect_results, linear_cells
from utils.atomic import atomic_write_json, atomic_write_text
from utils.cli import add_output_dir

ARMS = ("dinov2", "n2n_dinov2", "nc", "nct")
ARM_NAMES = {"dinov2": "DINOv2 on noisy images", "n2n_dinov2": "N2N + DINOv2 (denoiser kept at inference)",
             "nc": "DINOv2 w/ NC (curriculum)", "nct": "DINOv2 w/ NCT (NC + denoised teacher)"}
DIFFERENCES = (("nc", "dinov2"), ("nct", "dinov2"), ("nct", "nc"), ("n2n_dinov2", "dinov2"))
METRICS = ("linear", "knn")
SEED_FOLDER = re.compile(r"^seed_(\d+)$")


def final_scores(results: list[dict]) -> dict[str, dict[str, float]]:
    """{method: {"linear": top-1, "knn": top-1}} at each method's last evaluated checkpoint (the report's cells)."""
    cells = linear_cells(results)
    scores: dict[str, dict[str, float]] = {}
    for metric, table in (("linear", "linear_top1"), ("knn", "knn_top1")):
        for (method, _noise), value in cells.get(table, {}).items():
            scores.setdefault(method, {})[metric] = float(value)
    return scores


def per_seed_scores(root: Path) -> dict[int, dict[str, dict[str, float]]]:
    """{seed: {method: {metric: top-1}}} from ``ROOT/seed_<s>/eval``."""
    seeds = {}
    for folder in sorted(Path(root).iterdir()):
        match = SEED_FOLDER.match(folder.name)
        if match and (folder / "eval").is_dir():
            seeds[int(match.group(1))] = final_scores(collect_results([folder / "eval"]))
    if not seeds:
        raise FileNotFoundError(f"{root} holds no seed_<s>/eval folder of results")
    return seeds


def interval(values: list[float]) -> dict[str, Optional[float]]:
    """Mean, std (n - 1) and the 95 % t interval of the mean (None with fewer than 2 values)."""
    array = np.asarray(values, dtype=np.float64)
    n = len(array)
    mean = float(array.mean())
    if n < 2:
        return {"n": n, "mean": mean, "std": None, "low": None, "high": None}
    std = float(array.std(ddof=1))
    half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "low": mean - half, "high": mean + half}


def summarise(seeds: dict[int, dict[str, dict[str, float]]]) -> dict:
    """Per-arm statistics and paired differences over the seeds that have both arms."""
    arms = {}
    for method in ARMS:
        arms[method] = {metric: interval([s[method][metric] for s in seeds.values() if metric in s.get(method, {})])
                        for metric in METRICS if any(metric in s.get(method, {}) for s in seeds.values())}
    differences = {}
    for first, second in DIFFERENCES:
        for metric in METRICS:
            paired = [s[first][metric] - s[second][metric] for s in seeds.values()
                      if metric in s.get(first, {}) and metric in s.get(second, {})]
            if paired:
                stats_ = interval(paired)
                stats_["excludes_zero"] = stats_["low"] is not None and (stats_["low"] > 0 or stats_["high"] < 0)
                differences[f"{first} - {second}: {metric}"] = stats_
    return {"seeds": sorted(seeds), "per_seed": {str(k): v for k, v in seeds.items()}, "arms": arms,
            "differences": differences}


def _pm(block: Optional[dict]) -> str:
    if not block:
        return "-"
    return f"{block['mean']:.1f}" if block["std"] is None else f"{block['mean']:.1f} ± {block['std']:.1f}"


def _ci(block: dict) -> str:
    if block["low"] is None:
        return f"{block['mean']:+.1f} (one seed)"
    mark = " *" if block["excludes_zero"] else ""
    return f"{block['mean']:+.1f} [{block['low']:+.1f}, {block['high']:+.1f}]{mark}"


def markdown(summary: dict, baselines: list[dict]) -> str:
    """The arms table (mean ± std over seeds, baselines as rows) and the paired-differences table."""
    n = len(summary["seeds"])
    lines = [f"| method | linear top-1 (%), {n} seeds | k-NN top-1 (%), {n} seeds |", "| --- | --- | --- |"]
    for row in baselines:
        lines.append(f"| {row['name']} | {_pm(row.get('linear'))} | {_pm(row.get('knn'))} |")
    for method in ARMS:
        block = summary["arms"].get(method, {})
        lines.append(f"| {ARM_NAMES[method]} | {_pm(block.get('linear'))} | {_pm(block.get('knn'))} |")
    lines += ["", "| paired difference (points) | linear top-1: mean [95 % CI] | k-NN top-1: mean [95 % CI] |",
              "| --- | --- | --- |"]
    for first, second in DIFFERENCES:
        cells = [_ci(summary["differences"][f"{first} - {second}: {m}"])
                 if f"{first} - {second}: {m}" in summary["differences"] else "-" for m in METRICS]
        lines.append(f"| {first} - {second} | {cells[0]} | {cells[1]} |")
    lines.append("")
    lines.append("\\* the interval excludes zero.")
    return "\n".join(lines) + "\n"


def baseline_rows(root: Path) -> list[dict]:
    """Baseline rows from ``ROOT/baselines/*.json`` (written by exps/miniature_baselines.py)."""
    rows = []
    for path in sorted((Path(root) / "baselines").glob("*.json")):
        rows.append(json.loads(path.read_text(encoding="utf-8")))
    return rows


def write_outputs(summary: dict, baselines: list[dict], out: Path) -> Path:
    """``miniature.md``, ``miniature.json`` and a per-seed ``miniature.csv``."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "miniature.md", markdown(summary, baselines))
    atomic_write_json(out / "miniature.json", {**summary, "baselines": baselines})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["seed", "method", *METRICS])
    for seed, methods in summary["per_seed"].items():
        for method in ARMS:
            if method in methods:
                writer.writerow([seed, method, *(methods[method].get(m, "") for m in METRICS)])
    atomic_write_text(out / "miniature.csv", buffer.getvalue())
    return out / "miniature.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="the miniature's output folder (seed_<s>/eval below it)")
    add_output_dir(parser, "default: ROOT/report", "--out", required=False, default=None)
    args = parser.parse_args(argv)
    try:
        summary = summarise(per_seed_scores(args.root))
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    path = write_outputs(summary, baseline_rows(args.root), args.output_dir or args.root / "report")
    print(path.read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
