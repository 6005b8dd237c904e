"""Statistics of the multi-seed miniature: per thread count, mean +- std per arm and paired differences with 95 %
intervals over the seeds; over every run, the expected values a new run is compared with.

    python exps/miniature_stats.py OUT [--output-dir OUT/report]

Reads the result files below ``OUT/threads_<t>/seed_<s>/eval/`` (written by ``exps/miniature.sh``), the denoiser's
``OUT/threads_<t>/n2n/psnr.json``, the settings ``OUT/threads_<t>/environment.json`` and ``OUT/baselines/``, and
writes ``miniature.{md,csv,json}`` and ``expected.json`` (see ``exps/expected_values.py``). For every arm, thread
count and seed the number is the last checkpoint's linear top-1 (the head selected on the held-out part of the
training set) and k-NN top-1 (largest k). Differences are paired by seed within a thread count (the arms of one
seed share its data order, augmentation and initialisation); their 95 % interval is mean +- t(0.975, n - 1) x std /
sqrt(n), an ordering is claimed only where the interval excludes zero, and it holds across thread counts only where
it does so, with the same sign, at every thread count.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
from pathlib import Path
from typing import Optional

from exps.expected_values import build_expected, settings_text, t_interval
from exps.report import collect_results, final_scores
from utils.atomic import atomic_write_json, atomic_write_text
from utils.cli import add_output_dir
from utils.environment import ENVIRONMENT_FILENAME, read

ARMS = ("dinov2", "n2n_dinov2", "nc", "nct")
ARM_NAMES = {"dinov2": "DINOv2 on noisy images", "n2n_dinov2": "N2N + DINOv2 (denoiser kept at inference)",
             "nc": "DINOv2 w/ NC (curriculum)", "nct": "DINOv2 w/ NCT (NC + denoised teacher)"}
DIFFERENCES = (("nc", "dinov2"), ("nct", "dinov2"), ("nct", "nc"), ("n2n_dinov2", "dinov2"))
METRICS = ("linear", "knn")
THREADS_FOLDER = re.compile(r"^threads_(\d+)$")
SEED_FOLDER = re.compile(r"^seed_(\d+)$")

Scores = dict[str, dict[str, float]]  # {method: {metric: top-1}}


def per_run_scores(root: Path) -> dict[int, dict[int, Scores]]:
    """{threads: {seed: scores}} from ``ROOT/threads_<t>/seed_<s>/eval``."""
    runs: dict[int, dict[int, Scores]] = {}
    for threads_dir in sorted(Path(root).iterdir()) if Path(root).is_dir() else ():
        threads = THREADS_FOLDER.match(threads_dir.name)
        for folder in sorted(threads_dir.iterdir()) if threads else ():
            seed = SEED_FOLDER.match(folder.name)
            if seed and (folder / "eval").is_dir():
                runs.setdefault(int(threads.group(1)), {})[int(seed.group(1))] = \
                    final_scores(collect_results([folder / "eval"]))
    if not runs:
        raise FileNotFoundError(f"{root} holds no threads_<t>/seed_<s>/eval folder of results")
    return {threads: runs[threads] for threads in sorted(runs)}


def summarise(seeds: dict[int, Scores]) -> dict:
    """Per-arm statistics and paired differences over the seeds of one thread count."""
    arms = {}
    for method in ARMS:
        arms[method] = {metric: t_interval([s[method][metric] for s in seeds.values() if metric in s.get(method, {})])
                        for metric in METRICS if any(metric in s.get(method, {}) for s in seeds.values())}
    differences = {}
    for first, second in DIFFERENCES:
        for metric in METRICS:
            paired = [s[first][metric] - s[second][metric] for s in seeds.values()
                      if metric in s.get(first, {}) and metric in s.get(second, {})]
            if paired:
                stats_ = t_interval(paired)
                stats_["excludes_zero"] = stats_["low"] is not None and (stats_["low"] > 0 or stats_["high"] < 0)
                differences[f"{first} - {second}: {metric}"] = stats_
    return {"seeds": sorted(seeds), "per_seed": {str(k): v for k, v in seeds.items()}, "arms": arms,
            "differences": differences}


def holds_everywhere(summaries: dict[int, dict], key: str) -> bool:
    """True when the difference ``key`` excludes zero, with one sign, at every thread count."""
    blocks = [summary["differences"].get(key) for summary in summaries.values()]
    if not blocks or any(block is None or not block["excludes_zero"] for block in blocks):
        return False
    return len({block["mean"] > 0 for block in blocks}) == 1


def summarise_threads(runs: dict[int, dict[int, Scores]]) -> dict:
    """Every thread count's summary, and which claimed differences hold at all of them."""
    summaries = {threads: summarise(seeds) for threads, seeds in runs.items()}
    keys = {key for summary in summaries.values() for key in summary["differences"]}
    return {"threads": sorted(runs), "by_threads": {str(t): summary for t, summary in summaries.items()},
            "holds_at_every_thread_count": sorted(key for key in keys if holds_everywhere(summaries, key))}


def _pm(block: Optional[dict]) -> str:
    if not block:
        return "-"
    return f"{block['mean']:.1f}" if block["std"] is None else f"{block['mean']:.1f} ± {block['std']:.1f}"


def _ci(block: dict) -> str:
    if block["low"] is None:
        return f"{block['mean']:+.1f} (one seed)"
    mark = " *" if block["excludes_zero"] else ""
    return f"{block['mean']:+.1f} [{block['low']:+.1f}, {block['high']:+.1f}]{mark}"


def _threads_label(threads: int, summary: dict) -> str:
    n = len(summary["seeds"])
    return f"{threads} thread{'s' if threads != 1 else ''}, {n} seed{'s' if n != 1 else ''}"


def markdown(summary: dict, baselines: list[dict]) -> str:
    """The arms table (mean ± std over seeds per thread count, baselines as rows), the paired-differences table
    (per thread count; * where the interval excludes zero) and the denoiser's PSNR and settings per thread count."""
    by_threads = {int(t): block for t, block in summary["by_threads"].items()}
    labels = {t: _threads_label(t, block) for t, block in by_threads.items()}
    columns = [(metric, t) for metric in METRICS for t in by_threads]
    names = {"linear": "linear top-1 (%)", "knn": "k-NN top-1 (%)"}
    lines = ["| method | " + " | ".join(f"{names[m]}: {labels[t]}" for m, t in columns) + " |",
             "| --- |" + " --- |" * len(columns)]
    first = next(iter(by_threads))
    for row in baselines:  # measured once (exps/miniature.sh: at its first thread count), shown in one column
        cells = [_pm(row.get(m)) if t == first else "" for m, t in columns]
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    for method in ARMS:
        cells = [_pm(by_threads[t]["arms"].get(method, {}).get(m)) for m, t in columns]
        lines.append(f"| {ARM_NAMES[method]} | " + " | ".join(cells) + " |")
    lines += ["", "| paired difference (points) | " + " | ".join(f"{names[m]}: {labels[t]}" for m, t in columns)
              + " | holds at every thread count |", "| --- |" + " --- |" * (len(columns) + 1)]
    for a, b in DIFFERENCES:
        cells = [_ci(by_threads[t]["differences"][f"{a} - {b}: {m}"])
                 if f"{a} - {b}: {m}" in by_threads[t]["differences"] else "-" for m, t in columns]
        holding = [names[m].split(" top-1")[0] for m in METRICS
                   if f"{a} - {b}: {m}" in summary["holds_at_every_thread_count"]]
        lines.append(f"| {a} - {b} | " + " | ".join(cells) + f" | {', '.join(holding) or 'no'} |")
    lines += ["", "\\* the interval excludes zero (mean ± t(0.975, n - 1) x std / sqrt(n) over the seeds). Baselines are "
              "measured once, whatever the column."]
    psnrs = summary.get("denoiser_psnr", {})
    if psnrs:
        lines += ["", "Denoiser PSNR on val: " + ", ".join(f"{t} thread(s) {v:.2f} dB" for t, v in psnrs.items())
                  + "."]
    for threads, settings in summary.get("settings", {}).items():
        lines += ["", f"Setting of the {threads}-thread runs:", settings_text(settings)]
    return "\n".join(lines) + "\n"


def baseline_rows(root: Path) -> list[dict]:
    """Baseline rows from ``ROOT/baselines/*.json`` (written by exps/miniature_baselines.py)."""
    rows = []
    for path in sorted((Path(root) / "baselines").glob("*.json")):
        rows.append(json.loads(path.read_text(encoding="utf-8")))
    return rows


def run_facts(root: Path, threads: list[int]) -> tuple[dict[str, float], dict[str, list]]:
    """Per thread count, the denoiser's val PSNR (``threads_<t>/n2n/psnr.json``) and the recorded settings."""
    psnrs, settings = {}, {}
    for t in threads:
        folder = Path(root) / f"threads_{t}"
        if (folder / "n2n" / "psnr.json").is_file():
            psnrs[str(t)] = json.loads((folder / "n2n" / "psnr.json").read_text())["denoised_psnr"]
        settings[str(t)] = read(folder / ENVIRONMENT_FILENAME)
    return psnrs, settings


def write_outputs(root: Path, runs: dict[int, dict[int, Scores]], out: Path) -> Path:
    """``miniature.md``, ``miniature.json``, a per-run ``miniature.csv`` and ``expected.json``."""
    summary = summarise_threads(runs)
    summary["denoiser_psnr"], summary["settings"] = run_facts(root, summary["threads"])
    baselines = baseline_rows(root)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "miniature.md", markdown(summary, baselines))
    atomic_write_json(out / "miniature.json", {**summary, "baselines": baselines})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["threads", "seed", "method", *METRICS])
    for threads, seeds in runs.items():
        for seed, methods in seeds.items():
            for method in ARMS:
                if method in methods:
                    writer.writerow([threads, seed, method, *(methods[method].get(m, "") for m in METRICS)])
    atomic_write_text(out / "miniature.csv", buffer.getvalue())
    flat = {f"threads={t} seed={s}": scores for t, seeds in runs.items() for s, scores in seeds.items()}
    every_setting = [setting for settings in summary["settings"].values() for setting in settings]
    atomic_write_json(out / "expected.json", build_expected(
        flat, {f"threads={t}": v for t, v in summary["denoiser_psnr"].items()}, every_setting, ARM_NAMES))
    return out / "miniature.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="the miniature's output folder (threads_<t>/seed_<s>/eval below it)")
    add_output_dir(parser, "default: ROOT/report", "--out", required=False, default=None)
    args = parser.parse_args(argv)
    try:
        runs = per_run_scores(args.root)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    path = write_outputs(args.root, runs, args.output_dir or args.root / "report")
    print(path.read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
