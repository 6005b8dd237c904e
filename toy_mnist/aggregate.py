"""Summarise the finished repetitions of a toy run: results.json, results.md and probe_accuracy.png.

    python -m toy_mnist.aggregate OUT
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from toy_mnist.experiment import ARMS, RESULT_NAME
from utils.atomic import atomic_write_bytes, atomic_write_json
from utils.cli import fail
from utils.figures import pyplot, save_png

PAPER_ACCURACY = {"noisy": 64.55, "curriculum": 83.05}
ARM_LABELS = {
    "clean": "clean (probe on clean images)",
    "noisy": "noisy (probe on noisy images)",
    "curriculum": "clean then noisy (probe on noisy images)",
}


def load_repetitions(out: Path) -> list[dict]:
    """The ``result.json`` of every finished repetition under ``out``, by seed."""
    paths = sorted(out.glob(f"seed_*/{RESULT_NAME}"))
    if not paths:
        raise FileNotFoundError(f"no finished repetition (seed_*/{RESULT_NAME}) under {out}")
    return sorted((json.loads(p.read_text()) for p in paths), key=lambda r: r["seed"])


def summarise(repetitions: list[dict]) -> dict:
    """Mean and standard deviation (n - 1 in the denominator) of each arm's probe accuracy, plus wall times."""
    arms = {}
    for arm in ARMS:
        values = [r["accuracy"][arm] for r in repetitions]
        arms[arm] = {
            "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values),
            "values": values,
            "paper": PAPER_ACCURACY.get(arm),
        }
    rep_wall = [sum(r["arm_wall_s"].values()) for r in repetitions]
    first = repetitions[0]
    return {
        "data_source": first["data_source"],
        "budget": first["budget"],
        "devices": sorted({r["device"] for r in repetitions}),
        "seeds": [r["seed"] for r in repetitions],
        "arms": arms,
        "wall_s_per_repetition": {"mean": statistics.fmean(rep_wall), "min": min(rep_wall), "max": max(rep_wall)},
        "paper_accuracy": PAPER_ACCURACY,
    }


def markdown_table(summary: dict) -> str:
    """The measured table next to the paper's figures."""
    n = len(summary["seeds"])
    budget = summary["budget"]
    lines = [
        f"Data: {summary['data_source']}. Budget: {budget['mode']} ({budget['pretrain_epochs']} pre-training epochs, "
        f"curriculum switch after {budget['switch_epoch']}, {budget['probe_epochs']} probe epochs). "
        f"{n} repetition(s), seeds {summary['seeds'][0]}..{summary['seeds'][-1]}, device {', '.join(summary['devices'])}; "
        f"{summary['wall_s_per_repetition']['mean']:.0f} s per repetition on average.",
        "",
        "| arm | linear-probe accuracy (mean ± std) | paper |",
        "| --- | --- | --- |",
    ]
    for arm in ARMS:
        stats = summary["arms"][arm]
        paper = f"{stats['paper']:.2f} %" if stats["paper"] is not None else "-"
        lines.append(f"| {ARM_LABELS[arm]} | {stats['mean']:.2f} ± {stats['std']:.2f} % | {paper} |")
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> None:
    """Per-repetition probe accuracy per arm, mean ± std, and the paper's figures as crosses."""
    figure, axes = pyplot().subplots(figsize=(5.5, 4))
    for position, arm in enumerate(ARMS):
        stats = summary["arms"][arm]
        axes.scatter([position] * stats["n"], stats["values"], color="tab:blue", alpha=0.4, s=14)
        axes.errorbar(position + 0.15, stats["mean"], yerr=stats["std"], fmt="o", color="black", capsize=4)
        if stats["paper"] is not None:
            axes.scatter(position + 0.3, stats["paper"], marker="x", color="tab:red", s=50)
    axes.scatter([], [], marker="x", color="tab:red", label="paper")
    axes.errorbar([], [], yerr=[], fmt="o", color="black", label="mean ± std")
    axes.set_xticks(range(len(ARMS)), ["clean", "noisy", "clean->noisy"])
    axes.set_ylabel("linear-probe test accuracy (%)")
    axes.set_title(f"Toy MLP, {summary['arms']['clean']['n']} repetition(s)")
    axes.legend(loc="lower left")
    save_png(figure, path)


def aggregate(out: Path) -> dict:
    """Write results.json, results.md and probe_accuracy.png into ``out`` and return the summary."""
    summary = summarise(load_repetitions(out))
    atomic_write_json(out / "results.json", summary)
    atomic_write_bytes(out / "results.md", markdown_table(summary).encode("utf-8"))
    plot(summary, out / "probe_accuracy.png")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the output folder of toy_mnist.run / mlp_exp.sh")
    args = parser.parse_args(argv)
    try:
        summary = aggregate(args.out)
    except FileNotFoundError as error:
        fail(str(error))
    print(markdown_table(summary), end="")
    print(f"wrote {args.out / 'results.json'}, results.md and probe_accuracy.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
