"""Baseline rows of the miniature's table: the recipe's backbone at initialisation, and k-NN on raw pixels.

    python exps/miniature_baselines.py --config-file RECIPE [--config-file OVERLAY] [--set KEY=VALUE ...]
        --data NOISY_ROOT --out OUT/baselines [--noise-label N] [--seed 0] [-- extra dinov2.eval.linear arguments]

Both are scored like the arms: the random backbone by ``dinov2.eval.linear`` (linear probe and k-NN, 32 px), raw
pixels by the same weighted k-NN (k = 20). Each row goes to ``OUT/<name>.json`` ({name, linear, knn}); a row that
exists is kept.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dinov2.eval.arguments import add_noise_label, build_parser
from dinov2.eval.baselines import random_teacher_export, raw_pixel_knn
from dinov2.eval.results import load_result
from dinov2.eval.runner import run_cli
from dinov2.utils.config import load_config
from exps.report import final_scores
from utils.atomic import atomic_write_json
from utils.cli import add_output_dir
from utils.dataset_index import load_split

KNN_K = 20


def _single(value: float) -> dict:
    return {"mean": float(value), "std": None}


def random_init_row(config_files: list[Path], overrides: list[str], data: Path, out: Path, noise: str, seed: int,
                    probe_args: list[str]) -> dict:
    """Linear probe and k-NN of the recipe's backbone at its random initialisation (seed ``seed``)."""
    run_dir = out / f"random_init_seed{seed}"
    if not (run_dir / "eval").is_dir():
        random_teacher_export(run_dir, load_config(config_files, overrides), seed)
    evals = out / f"random_init_seed{seed}_eval"
    argv = ["--pretrained-weights", str(run_dir), "--train-dataset", str(data / "train"),
            "--val-dataset", str(data / "val"), "--output-dir", str(evals), "--crop-size", "32",
            "--method", "random_init", "--noise-label", noise, "--num-workers", "0", "--quiet", *probe_args]
    if run_cli(build_parser("linear").parse_args(argv), "linear") != 0:
        raise SystemExit(f"error: the probe of {run_dir} failed")
    (path,) = evals.glob("linear_*.json")
    scores = final_scores([load_result(path)])["random_init"]  # the same selection as the arms'
    return {"name": f"baseline: backbone at initialisation (seed {seed})", "linear": _single(scores["linear"]),
            "knn": _single(scores["knn"])}


def raw_pixels_row(data: Path) -> dict:
    """k-NN (k = 20) on the raw RGB pixels of the same images."""
    top1 = raw_pixel_knn(load_split(data, "train"), load_split(data, "val"), KNN_K)["top1"]
    return {"name": "baseline: raw pixels (k-NN only)", "knn": _single(top1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", type=Path, action="append", required=True,
                        help="the arms' training recipe (repeat it for overlays, merged in order)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override of the recipe (e.g. student.arch=resnet18)")
    parser.add_argument("--data", type=Path, required=True, help="the tree the arms are probed on (ROOT/{train,val})")
    add_output_dir(parser, "where the baseline results go", "--out")
    add_noise_label(parser, "the results' noise label (default identity)", default="identity")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("probe_args", nargs="*", help="after --: extra dinov2.eval.linear arguments")
    args = parser.parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    rows = {"raw_pixels": lambda: raw_pixels_row(args.data),
            "random_init": lambda: random_init_row(args.config_file, args.overrides, args.data, args.output_dir,
                                                   args.noise, args.seed, args.probe_args)}
    for name, make in rows.items():
        path = args.output_dir / f"{name}.json"
        if not path.is_file():
            atomic_write_json(path, make())
        print(json.dumps(json.loads(path.read_text(encoding="utf-8"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
