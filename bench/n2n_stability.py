"""How much the quick start's denoiser moves with the order of floating-point sums: the validation PSNR of
Neighbor2Neighbor recipes on the embedded digits at several thread counts and seeds.

    python bench/n2n_stability.py [--noise gauss100] [--threads 1 2] [--seeds 0 1] [--data-root data]
        [--recipe NAME="--epochs 1 --batch-size 16 --lr 1e-3" ...] [--output-dir outputs/bench/n2n_stability]

Each recipe (train.py options; the first one is the baseline) trains on DATA_ROOT/noisy_mnist5k-NOISE/train (made
as the quick start makes it when missing) once per thread count and seed, with OMP_NUM_THREADS set, and is scored
at its last epoch on the 1,000 clean val digits noised on the fly (``--val-noise NOISE``, the same noise for every
run). Printed per recipe: each run's PSNR, the spread (max - min over threads and seeds), its ratio to the
baseline's spread, and the training seconds per run. Finished runs are skipped, so a rerun continues; the runs are
sequential (time them on a free machine: the PSNR does not depend on the load, the seconds do). Writes
OUTPUT_DIR/n2n_stability.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
from utils.atomic import atomic_write_json

DEFAULT_RECIPES = {  # the quick start's denoiser before (the baseline) and after its stability was measured
    "before: width 48, 1 epoch": "--epochs 1 --batch-size 16 --lr 1e-3",
    "now: width 32, 3 ep, reg 0.5": "--epochs 3 --batch-size 16 --lr 1e-3 --increase-ratio 0.5 --n-feature 32",
}


def ensure_data(data_root: Path, noise: str) -> tuple[Path, Path]:
    """The embedded digits and their noisy copy, made with the quick start's commands when missing."""
    clean, noisy = data_root / "mnist5k", data_root / f"noisy_mnist5k-{noise}"
    if not (clean / "val").is_dir():
        subprocess.run([sys.executable, "utils/make_toy_dataset.py", "--output-dir", str(clean)], cwd=REPO, check=True)
    if not (noisy / "train").is_dir():
        subprocess.run([sys.executable, "utils/generate_noise.py", "--src", str(clean), "--noise", noise], cwd=REPO,
                       check=True)
    return clean, noisy


def train_run(folder: Path, options: str, threads: int, seed: int, clean: Path, noisy: Path, noise: str) -> dict:
    """One training run (skipped when finished): its last epoch's metrics record."""
    metrics = folder / "metrics.jsonl"
    command = [sys.executable, "Neighbor2Neighbor/train.py", "--data-dir", str(noisy / "train"), "--output-dir",
               str(folder), "--patch-size", "32", "--num-workers", "0", "--seed", str(seed), "--val-clean",
               str(clean / "val"), "--val-noise", noise, "--quiet", *shlex.split(options)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    subprocess.run(command, cwd=REPO, env=env, check=True)
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return {"val_psnr": records[-1]["val_psnr"], "noisy_psnr": records[-1].get("val_noisy_psnr"),
            "seconds": sum(record["seconds"] for record in records), "epochs": len(records)}


def parse_recipe(text: str) -> tuple[str, str]:
    name, sep, options = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--recipe expects NAME=OPTIONS, got {text!r}")
    return name, options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--noise", default="gauss100")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--recipe", type=parse_recipe, action="append", default=None,
                        help='NAME="train.py options" (repeatable; the first is the baseline)')
    parser.add_argument("--data-root", type=Path, default=Path("data"))
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/bench/n2n_stability"))
    args = parser.parse_args(argv)
    recipes = dict(args.recipe) if args.recipe else DEFAULT_RECIPES
    clean, noisy = ensure_data(args.data_root, args.noise)
    results: dict[str, dict] = {}
    for index, (name, options) in enumerate(recipes.items()):
        runs = {}
        for threads in args.threads:
            for seed in args.seeds:
                folder = args.output_dir / f"recipe_{index}" / f"threads{threads}_seed{seed}"
                runs[f"threads={threads} seed={seed}"] = train_run(folder, options, threads, seed, clean, noisy,
                                                                   args.noise)
        values = [run["val_psnr"] for run in runs.values()]
        results[name] = {"options": options, "runs": runs, "mean_psnr": sum(values) / len(values),
                         "spread_db": max(values) - min(values),
                         "seconds_per_run": sum(run["seconds"] for run in runs.values()) / len(runs)}
    baseline = next(iter(results.values()))["spread_db"]
    print(f"\n{'recipe':<28} {'PSNR per run (dB)':<40} {'mean':>6} {'spread':>7} {'vs base':>8} {'s/run':>7}")
    for name, result in results.items():
        psnrs = " ".join(f"{run['val_psnr']:.2f}" for run in result["runs"].values())
        ratio = result["spread_db"] / baseline if baseline > 0 else float("nan")
        print(f"{name:<28} {psnrs:<40} {result['mean_psnr']:6.2f} {result['spread_db']:7.2f} {ratio:7.2f}x "
              f"{result['seconds_per_run']:7.0f}")
    atomic_write_json(args.output_dir / "n2n_stability.json", {"noise": args.noise, "threads": args.threads,
                                                                "seeds": args.seeds, "recipes": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
