"""Training curves of DINOv2 runs against the iteration, one line per run, from each run's metrics.jsonl: the total
loss, the entropy of the DINO targets and, when the run measured them, its health (effective rank of the class
tokens, online k-NN top-1 on noisy and clean held-out images); the alarm's verdicts are listed in the Markdown.

    python exps/training_curves.py RUN_DIR [RUN_DIR ...] --out curves.png [--markdown curves.md]

A branched run (NC, NCT) counts its iterations from the branch point, as its metrics.jsonl does. The target
entropy falls from log(K) as the teacher's prototypes specialise; a curve that stays flat at log(K), or collapses
to 0 at once, is a run that does not learn. An effective rank near 1 or k-NN at chance is a collapsed representation.
``--markdown`` writes the first and last values of each run and the alarm's verdicts (iteration: verdict).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from utils.atomic import atomic_write_text
from utils.cli import EXIT_BAD_INPUT
from utils.figures import pyplot, save_png
from utils.jsonl_log import read_jsonl

CURVES = (("total_loss", "total loss"), ("dino_target_entropy", "DINO target entropy (nats)"),
          ("effective_rank", "effective rank (RankMe)"), ("online_knn", "online k-NN top-1 (%)"),
          ("online_knn_clean", "online k-NN top-1, clean (%)"))
VERDICTS = "health"  # the key under which read_curves returns the alarm's verdicts


def read_curves(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """(iteration, value) of each curve of a run, and under ``VERDICTS`` (iteration, verdict) of the alarm;
    raises ``FileNotFoundError`` / ``ValueError`` naming the file."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: is {run_dir} a DINOv2 run directory?")
    records = read_jsonl(path)
    if not records:
        raise ValueError(f"{path} holds no record yet")
    curves = {key: [(int(r["iteration"]), float(r[key])) for r in records
                    if key in r and isinstance(r[key], (int, float)) and math.isfinite(r[key])]
              for key, _ in CURVES}
    curves[VERDICTS] = [(int(r["iteration"]), verdict["verdict"]) for r in records for verdict in r.get(VERDICTS, [])]
    return curves


def _measured(runs: dict[str, dict[str, list]]) -> list[tuple[str, str]]:
    """The curves some run has values of (the health curves only exist where the run measured them)."""
    return [(key, label) for key, label in CURVES if any(curves[key] for curves in runs.values())]


def plot_curves(runs: dict[str, dict[str, list[tuple[int, float]]]], out: Path) -> Path:
    """One panel per measured curve, one line per run."""
    shown = _measured(runs)
    figure, axes = pyplot().subplots(1, len(shown), figsize=(5.0 * len(shown), 3.4), squeeze=False)
    for axis, (key, label) in zip(axes[0], shown):
        for name, curves in runs.items():
            if curves[key]:
                steps, values = zip(*curves[key])
                axis.plot(steps, values, label=name, linewidth=1.2)
        axis.set_xlabel("iteration")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    return save_png(figure, out)


def curves_markdown(runs: dict[str, dict[str, list[tuple[int, float]]]]) -> str:
    """A table of the first and last value of each measured curve per run, and the alarm's verdicts."""
    shown = _measured(runs)
    header = "| run | iterations | " + " | ".join(f"{label}: first -> last" for _, label in shown) + " | alarm |"
    lines = [header, "| --- " * (3 + len(shown)) + "|"]
    for name, curves in runs.items():
        cells = []
        for key, _ in shown:
            values = curves[key]
            cells.append(f"{values[0][1]:.3f} -> {values[-1][1]:.3f}" if values else "-")
        iterations = max((curves[key][-1][0] + 1 for key, _ in CURVES if curves[key]), default=0)
        alarm = ", ".join(f"{iteration}: {verdict}" for iteration, verdict in curves[VERDICTS]) or "none"
        lines.append(f"| {name} | {iterations} | " + " | ".join(cells) + f" | {alarm} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", help="DINOv2 run directories")
    parser.add_argument("--out", type=Path, required=True, help="the figure (PNG)")
    parser.add_argument("--markdown", type=Path, default=None, help="also the first and last values as Markdown")
    args = parser.parse_args(argv)
    try:
        runs = {run.name: read_curves(run) for run in args.runs}
        plot_curves(runs, args.out)
        if args.markdown is not None:
            atomic_write_text(args.markdown, "## Training curves\n\n" + curves_markdown(runs))
    except (OSError, ValueError, KeyError) as error:  # a missing or damaged log; an unwritable output
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"wrote {args.out} ({len(runs)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
