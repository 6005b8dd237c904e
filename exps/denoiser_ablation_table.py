"""The denoiser ablation's table and figure: each denoised tree's PSNR against the gain of NC / NCT over DINOv2.

    python exps/denoiser_ablation_table.py OUT [--denoisers n2n zs_n2n blur none] [--output-dir OUT/report]

Reads what ``exps/denoiser_ablation.sh`` wrote: ``OUT/denoisers/<denoiser>/psnr.json`` (the denoised val images'
PSNR against the clean ones, measured after the fact) and the result files of ``OUT/seed_<s>/eval/``. A gain is
an arm's top-1 (linear probe: the head chosen on held-out training images, last checkpoint; k-NN: largest k)
minus DINOv2's on the noisy images, paired by seed; with several seeds it is the mean and its 95 % t interval.
Writes ``denoiser_ablation.{md,csv,json,png}``, and with robustness results (``ROBUSTNESS=1``)
``denoiser_ablation_robustness.{md,csv}``: each arm's clean top-1 and noise-family areas over the seeds.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from exps.report import collect_results, final_scores, interval_cell, write_table
from utils.atomic import atomic_write_json
from utils.cli import EXIT_BAD_INPUT, add_output_dir
from utils.figures import pyplot, save_png
from utils.statistics import t_interval

DENOISERS = ("n2n", "zs_n2n", "blur", "none")
NAMES = {"n2n": "Neighbor2Neighbor", "zs_n2n": "Zero-Shot Noise2Noise", "blur": "Gaussian blur (self-calibrated)",
         "none": "none (noisy images)"}
ARMS = (("n2n_dinov2", "denoiser + DINOv2"), ("nc", "NC"), ("nct", "NCT"))
METRICS = ("linear", "knn")
SEED_FOLDER = re.compile(r"^seed_(\d+)$")
MEAN_AREA_GAIN = "mean area - DINOv2's"


def seed_results(root: Path, denoisers: list[str]) -> dict[int, dict[str, list[dict]]]:
    """{seed: {"dinov2": results, <denoiser>: results}} from ``ROOT/seed_<s>/eval`` (each result file read once)."""
    seeds: dict[int, dict[str, list[dict]]] = {}
    for folder in sorted(root.iterdir()) if root.is_dir() else ():
        match = SEED_FOLDER.match(folder.name)
        if not match or not (folder / "eval" / "dinov2_noisy").is_dir():
            continue
        folders = {"dinov2": folder / "eval" / "dinov2_noisy", **{d: folder / "eval" / d for d in denoisers}}
        seeds[int(match.group(1))] = {key: collect_results([path]) for key, path in folders.items() if path.is_dir()}
    if not seeds:
        raise FileNotFoundError(f"{root} holds no seed_<s>/eval/dinov2_noisy folder of results")
    return seeds


def seed_scores(results: dict[int, dict[str, list[dict]]]) -> dict[int, dict[str, dict]]:
    """{seed: {"dinov2": scores, <denoiser>: {arm: scores}}}: the probes' final top-1."""
    return {seed: {key: final_scores(found).get("dinov2", {}) if key == "dinov2" else final_scores(found)
                   for key, found in by_key.items()} for seed, by_key in results.items()}


def complete_seeds(seeds: dict[int, dict[str, dict]], denoisers: list[str]) -> list[int]:
    """The seeds whose every arm has been probed (a recipe still running has the others), so that every cell of
    the table is over the same seeds."""
    def done(scores: dict[str, dict], denoiser: str) -> bool:
        arms = [arm for arm, _ in ARMS if denoiser != "none" or arm != "n2n_dinov2"]
        return all(set(METRICS) <= set(scores.get(denoiser, {}).get(arm, {})) for arm in arms)
    return [seed for seed, scores in seeds.items()
            if set(METRICS) <= set(scores["dinov2"]) and all(done(scores, d) for d in denoisers)]


def robustness_over_seeds(results: dict[int, dict[str, list[dict]]]) -> dict[str, dict[str, dict]]:
    """{"dinov2" or "<denoiser>:<arm>": {column: t interval over the seeds}} of the robustness results (logistic
    regression top-1 on clean val, each noise family's area, and the mean of the areas minus DINOv2's, paired by
    seed); empty without robustness results."""
    values: dict[str, dict[str, dict[int, float]]] = {}
    for seed, by_key in results.items():
        for key, found in by_key.items():
            for result in (r for r in found if r["protocol"] == "robustness"):
                columns = values.setdefault(key if key == "dinov2" else f"{key}:{result['method']}", {})
                scores = result["results"]
                columns.setdefault("clean", {})[seed] = scores["clean"]["logreg"]
                for family, area in scores["areas"]["logreg"].items():
                    columns.setdefault(f"area {family}", {})[seed] = area
                columns.setdefault("mean area", {})[seed] = float(np.mean(list(scores["areas"]["logreg"].values())))
    base = values.get("dinov2", {}).get("mean area", {})
    for key, columns in values.items():
        paired = [area - base[seed] for seed, area in columns["mean area"].items() if seed in base]
        if key != "dinov2" and paired:
            columns[MEAN_AREA_GAIN] = dict(enumerate(paired))
    return {key: {column: t_interval(list(v.values())) for column, v in columns.items()}
            for key, columns in values.items()}


def gains(seeds: dict[int, dict[str, dict]], denoiser: str, arm: str, metric: str) -> Optional[dict]:
    """The arm's gain over DINOv2, paired by seed: the t interval block, or None where it was not measured."""
    paired = [s[denoiser][arm][metric] - s["dinov2"][metric] for s in seeds.values()
              if metric in s.get(denoiser, {}).get(arm, {}) and metric in s["dinov2"]]
    return t_interval(paired) if paired else None


def summarise(root: Path, denoisers: list[str]) -> dict:
    """Every denoiser's PSNR and gains, and DINOv2's own scores."""
    results = seed_results(root, denoisers)
    seeds = seed_scores(results)
    complete = complete_seeds(seeds, denoisers)
    if not complete:
        raise FileNotFoundError(f"{root}: no seed has every arm probed yet (seeds found: {sorted(seeds)})")
    skipped = sorted(set(seeds) - set(complete))
    if skipped:
        print(f"seed(s) {', '.join(map(str, skipped))} left out: not every arm is probed yet")
    results = {seed: results[seed] for seed in complete}
    seeds = {seed: seeds[seed] for seed in complete}
    rows = {}
    for denoiser in denoisers:
        psnr_file = root / "denoisers" / denoiser / "psnr.json"
        if not psnr_file.is_file():
            raise FileNotFoundError(f"{psnr_file} is missing: run exps/denoiser_ablation.sh for {denoiser}")
        psnr = json.loads(psnr_file.read_text())
        rows[denoiser] = {"psnr": psnr["denoised_psnr"], "noisy_psnr": psnr["noisy_psnr"],
                          "gains": {f"{arm}:{metric}": gains(seeds, denoiser, arm, metric)
                                    for arm, _ in ARMS for metric in METRICS}}
    baseline = {metric: t_interval([s["dinov2"][metric] for s in seeds.values() if metric in s["dinov2"]])
                for metric in METRICS}
    return {"seeds": sorted(seeds), "dinov2": baseline, "denoisers": rows, "robustness": robustness_over_seeds(results),
            "per_seed": {str(seed): scores for seed, scores in seeds.items()}}


def _cell(block: Optional[dict], sign: str = "+") -> str:
    """:func:`exps.report.interval_cell` of a gain (``sign="+"``) or a level (``sign=""``); "-" where unmeasured."""
    return "-" if block is None else interval_cell(block, sign)


def write_outputs(summary: dict, out: Path) -> Path:
    """The Markdown / CSV table, the JSON summary and the figure; returns the figure's path."""
    header = ["denoiser", "denoised PSNR (dB)"] + [f"{label} - DINOv2, {metric}" for _, label in ARMS
                                                   for metric in ("linear", "k-NN")]
    rows = [[NAMES[d], f"{row['psnr']:.2f}"] + [_cell(row["gains"][f"{arm}:{metric}"]) for arm, _ in ARMS
                                                for metric in METRICS]
            for d, row in summary["denoisers"].items()]
    n = len(summary["seeds"])
    base = summary["dinov2"]
    write_table(out, "denoiser_ablation",
                f"Gain over DINOv2 on the noisy images (top-1 points; {n} seed{'s' if n != 1 else ''}"
                f"{', mean [95 % interval]' if n > 1 else ''}); DINOv2 itself: linear {base['linear']['mean']:.1f}, "
                f"k-NN {base['knn']['mean']:.1f} %", header, rows)
    atomic_write_json(out / "denoiser_ablation.json", summary)
    write_robustness_table(summary, out)
    return plot(summary, out / "denoiser_ablation.png")


def write_robustness_table(summary: dict, out: Path) -> bool:
    """``denoiser_ablation_robustness.{md,csv}``: every scored arm's clean top-1 and family areas, mean [95 %
    interval] over the seeds; False (nothing written) without robustness results."""
    blocks = summary["robustness"]
    if not blocks:
        return False
    order = lambda c: (c != "clean", c in ("mean area", MEAN_AREA_GAIN), c == MEAN_AREA_GAIN, c)  # noqa: E731
    columns = sorted({column for block in blocks.values() for column in block}, key=order)
    arms = dict(ARMS)
    rows = []
    for key, block in blocks.items():
        denoiser, _, arm = key.partition(":")
        name = "DINOv2 on noisy images" if key == "dinov2" else f"{arms.get(arm, arm)}, {NAMES[denoiser]}"
        rows.append([name] + [_cell(block.get(c), "+" if c == MEAN_AREA_GAIN else "") for c in columns])
    seeds = max(b["n"] for block in blocks.values() for b in block.values())
    write_table(out, "denoiser_ablation_robustness", "Robustness without a denoiser at inference: logistic "
                "regression top-1 (%) on clean val and each noise family's area (mean top-1 over its PSNR span; the "
                f"mean of the areas minus DINOv2's paired by seed), over {seeds} seed(s)", ["arm"] + columns, rows)
    return True


def plot(summary: dict, path: Path) -> Path:
    """Gain against denoised PSNR, one panel per metric, one marker per arm (set a little apart along PSNR so that
    the arms of one denoiser do not hide each other), each denoiser named once at the foot of its points."""
    plt = pyplot()
    figure, axes = plt.subplots(1, len(METRICS), figsize=(5.5 * len(METRICS), 4.2), squeeze=False)
    for axis, metric in zip(axes[0], METRICS):
        for (arm, label), marker, dodge in zip(ARMS, "o^s", (-0.07, 0.0, 0.07)):
            points = [(row["psnr"] + dodge, row["gains"][f"{arm}:{metric}"]) for row in summary["denoisers"].values()
                      if row["gains"][f"{arm}:{metric}"] is not None]
            if points:
                errors = [0.0 if p[1]["low"] is None else p[1]["mean"] - p[1]["low"] for p in points]
                axis.errorbar([p[0] for p in points], [p[1]["mean"] for p in points], yerr=errors, fmt=marker,
                              capsize=3, label=label)
        for index, (denoiser, row) in enumerate(summary["denoisers"].items()):  # alternate heights: close PSNRs
            axis.annotate(denoiser, (row["psnr"], 0.0), xycoords=("data", "axes fraction"),
                          xytext=(0, 4 + 10 * (index % 2)), textcoords="offset points", ha="center", fontsize=8)
        axis.axhline(0.0, color="grey", linewidth=0.8)
        axis.set_xlabel("denoised val PSNR (dB)")
        axis.set_ylabel(f"{'linear' if metric == 'linear' else 'k-NN'} top-1 gain over DINOv2 (points)")
        axis.legend(fontsize=8)
    return save_png(figure, path)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: exit status 2 when results are missing (named on stderr)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="the OUT of exps/denoiser_ablation.sh")
    parser.add_argument("--denoisers", nargs="+", choices=DENOISERS, default=list(DENOISERS))
    add_output_dir(parser, "where the table and figure go (default ROOT/report)", required=False)
    args = parser.parse_args(argv)
    try:
        summary = summarise(args.root, args.denoisers)
        figure = write_outputs(summary, args.output_dir or args.root / "report")
    except (FileNotFoundError, KeyError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"{figure.with_suffix('.md')}, {figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
