"""The table of exps/adapt.sh: clean and noisy k-NN and linear top-1 of the starting backbone, of the adaptation
without the anchor and of the anchored one, with the change from the start.

    python exps/adapt_table.py OUT/eval --out OUT/adapt.md      # also writes OUT/adapt.json

Reads ``EVAL/<arm>_<clean|noisy>/linear_*.json`` (the newest checkpoint of each folder; the linear probe's result
carries its k-NN). k-NN is the weighted vote of the ``--k`` nearest neighbours (default 20, upstream's).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from dinov2.eval.results import ResultError, iter_result_files, load_result
from utils.atomic import atomic_write_json, atomic_write_text
from utils.cli import EXIT_BAD_INPUT, one_line

ARMS = (("start", "start (before)"), ("no_anchor", "adapted, no anchor"), ("anchored", "adapted, anchored"))
DATA = ("clean", "noisy")


def newest_linear_result(folder: Path) -> dict:
    """The linear-probe result of the newest checkpoint in ``folder``; ``FileNotFoundError`` naming it if none."""
    results = [load_result(path) for path in iter_result_files(folder) if path.name.startswith("linear_")]
    if not results:
        raise FileNotFoundError(f"{folder} holds no linear-probe result (linear_*.json)")
    return max(results, key=lambda result: result.get("iteration") or 0)


def adaptation_scores(eval_dir: Path, k: int = 20) -> dict[str, dict[str, float]]:
    """``{arm: {"clean_knn": ..., "clean_linear": ..., "noisy_knn": ..., "noisy_linear": ...}}`` in percent."""
    scores: dict[str, dict[str, float]] = {}
    for arm, _ in ARMS:
        scores[arm] = {}
        for data in DATA:
            result = newest_linear_result(eval_dir / f"{arm}_{data}")["results"]
            knn = result.get("knn", {}).get("k", {}).get(str(k))
            if knn is None:
                raise ValueError(f"{eval_dir / f'{arm}_{data}'}: its result has no k-NN at k={k} (probed with "
                                 "--no-knn, or other --nb-knn)")
            scores[arm][f"{data}_knn"] = float(knn["top1"])
            scores[arm][f"{data}_linear"] = float(result["final"]["top1"])
    return scores


def markdown_table(scores: dict[str, dict[str, float]], k: int = 20) -> str:
    """One row per arm; the adapted rows show their change from the start in brackets."""
    columns = [f"{data}_{kind}" for data in DATA for kind in ("knn", "linear")]
    titles = [f"{data} {'k-NN (k=' + str(k) + ')' if kind == 'knn' else 'linear'} top-1 (%)"
              for data in DATA for kind in ("knn", "linear")]
    lines = ["| backbone | " + " | ".join(titles) + " |", "| --- |" + " --- |" * len(columns)]
    start = scores["start"]
    for arm, label in ARMS:
        cells = []
        for column in columns:
            value = scores[arm][column]
            cells.append(f"{value:.1f}" if arm == "start" else f"{value:.1f} ({value - start[column]:+.1f})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    """Command-line entry point: exit status 2 when a result is missing or damaged."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("eval_dir", type=Path, help="exps/adapt.sh's OUT/eval")
    parser.add_argument("--out", type=Path, required=True, help="markdown table (a .json beside it)")
    parser.add_argument("--k", type=int, default=20, help="the k-NN column's k")
    args = parser.parse_args(argv)
    try:
        scores = adaptation_scores(args.eval_dir, args.k)
    except (OSError, ValueError, KeyError, ResultError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    table = markdown_table(scores, args.k)
    atomic_write_text(args.out, table)
    atomic_write_json(args.out.with_suffix(".json"), scores)
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
