"""Benchmark: linear-probe wall time with cached features against ``--augment`` and ``--protocol paper``.

    python bench/linear_probe.py [--limit 60] [--epochs 20] [--pretrained-weights RUN_OR_EXPORT] [--threads 1]
        [--augment-scale 0.08 1] [--augment-hflip 0.5] [--modes cached augment paper]
        [--paper-epoch-length 1250] [--out outputs/bench/linear_probe.json]

The modes evaluate the same checkpoint on the same embedded MNIST subset (``utils/make_toy_dataset.py``,
``--limit`` digits per class, 32 px) in this process, with the full 52-head grid, the same epochs, batch size,
held-out selection and seed. The checkpoint is ``--pretrained-weights`` (a trained export or run directory) or,
by default, a randomly initialised ``vit_tiny_4blocks`` (patch 4, 32 px) written as an encoder export (LayerScale off:
with upstream's 1e-5 initial LayerScale an untrained ViT passes its input through almost unchanged and every
image gets nearly the same class token). The script prints both wall times, their ratio and both accuracies
(held-out-selected head, scored on val), and writes them to a JSON file. The paper's ImageNet-100 probe runs
about 32 passes over the training set; ``--epochs`` sets the passes here. ``--augment-scale`` and
``--augment-hflip`` set the augment mode's crop area and flip probability (upstream's 0.08-1 and 0.5 by default).
The paper mode is ``--protocol paper`` as the recipes run it: 10 epochs of ``--paper-epoch-length`` iterations
(1,250: 12,500 in all) at batch 128, val scored every epoch, no holdout; it reports the held-out-free ``final``
number and the paper's ``best_on_val`` (best over evaluations and heads). Ratios are against the cached mode.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from dinov2.eval.baselines import random_teacher_export
from dinov2.eval.results import load_result
from dinov2.eval.arguments import build_parser
from dinov2.eval.runner import evaluate_checkpoint, load_splits
from dinov2.utils.config import load_config
from utils.atomic import atomic_write_json
from utils.device import resolve_device, resolve_precision
from utils.make_toy_dataset import build_toy_dataset


def run_mode(checkpoint: Path, data: Path, out: Path, flags: list[str]) -> tuple[float, dict]:
    """One linear probe of ``checkpoint`` with the command-line ``flags``: its wall time and result."""
    argv = ["--pretrained-weights", str(checkpoint), "--train-dataset", str(data / "train"),
            "--val-dataset", str(data / "val"), "--output-dir", str(out), "--no-knn", *flags]
    args = build_parser("linear").parse_args(argv)
    train, val = load_splits(args.train_dataset, args.val_dataset)
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    start = time.perf_counter()
    path = evaluate_checkpoint(args, checkpoint, "linear", train, val, device, precision)
    return time.perf_counter() - start, load_result(path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=60, help="digits per class (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--arch", default="vit_tiny_4blocks")
    parser.add_argument("--patch-size", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (on a shared, oversubscribed CPU 1 avoids thread thrashing)")
    parser.add_argument("--pretrained-weights", type=Path, default=None,
                        help="a trained encoder export or run directory (default: a randomly initialised ViT)")
    parser.add_argument("--augment-scale", type=float, nargs=2, default=[0.08, 1.0], metavar=("MIN", "MAX"),
                        help="crop area range of the augment mode (default: upstream's 0.08 1)")
    parser.add_argument("--augment-hflip", type=float, default=0.5, help="flip probability of the augment mode")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                        help="which probes to time (cached always runs: it is the baseline)")
    parser.add_argument("--paper-epoch-length", type=int, default=1250,
                        help="iterations per epoch of the paper mode (default: the paper's %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/linear_probe.json"))
    return parser.parse_args(argv)


MODES = ("cached", "augment", "paper")


def mode_flags(args: argparse.Namespace, mode: str) -> list[str]:
    """The probe's command-line flags of ``mode``."""
    common = ["--crop-size", "32", "--num-workers", str(args.num_workers), "--device", args.device,
              "--seed", str(args.seed), "--quiet"]
    augment = ["--augment-scale", *map(str, args.augment_scale), "--augment-hflip", str(args.augment_hflip)]
    if mode == "paper":
        return [*common, *augment, "--protocol", "paper", "--epochs", "10", "--batch-size", "128",
                "--epoch-length", str(args.paper_epoch_length)]
    same_budget = ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
    return [*common, *same_budget, *(["--augment", *augment] if mode == "augment" else [])]


def mode_summary(seconds: float, result: dict, baseline_seconds: float) -> dict:
    """Wall time (and its ratio to the cached mode's), settings, val accuracy and selected head of one result."""
    results, settings = result["results"], result["settings"]
    return {"wall_seconds": round(seconds, 2), "x_cached": round(seconds / baseline_seconds, 2),
            "iterations": settings["iterations"], "batch_size": settings["batch_size"],
            **({"scale": settings["augment_scale"], "hflip": settings["augment_hflip"]} if "augment_scale" in settings
               else {}),
            "extract_seconds": results["timing"]["extract_seconds"], "head_training_seconds": results["train_seconds"],
            "final": results["final"], "best_on_val": {k: v for k, v in results["best_on_val"].items() if k != "label"},
            "selected": results["selected"]["name"]}


def make_report(args: argparse.Namespace, counts: dict, timed: dict[str, tuple[float, dict]]) -> dict:
    """Every mode side by side, each with its wall-time ratio to the cached mode."""
    baseline_seconds, baseline = timed["cached"]
    return {
        "data": f"embedded MNIST subset: {counts['train']} train / {counts['val']} val, 32 px",
        "backbone": str(args.pretrained_weights) if args.pretrained_weights else
                    f"randomly initialised {args.arch}, patch {args.patch_size}",
        "grid_heads": len(baseline["results"]["heads"]), "device": baseline["settings"]["device"],
        "torch_threads": torch.get_num_threads(),
        **{mode: mode_summary(seconds, result, baseline_seconds) for mode, (seconds, result) in timed.items()},
    }


def main(argv: list[str] | None = None) -> int:
    """Run both modes on the same checkpoint and data, print and write the comparison."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        counts = build_toy_dataset(tmp / "data", limit=args.limit)
        untrained = load_config(overrides=[f"student.arch={args.arch}", f"student.patch_size={args.patch_size}",
                                           "crops.global_crops_size=32", "student.layerscale=0.0"])
        checkpoint = args.pretrained_weights or random_teacher_export(tmp / "run", untrained, args.seed)
        modes = ["cached", *(mode for mode in MODES if mode in args.modes and mode != "cached")]
        timed = {mode: run_mode(checkpoint, tmp / "data", tmp / mode, mode_flags(args, mode)) for mode in modes}
    report = make_report(args, counts, timed)
    atomic_write_json(args.out, report)
    print(json.dumps(report, indent=2))
    for mode in modes:
        summary = report[mode]
        print(f"{mode}: {summary['wall_seconds']:.1f} s ({summary['x_cached']:.2f}x cached), {summary['iterations']} "
              f"iterations, top-1 final {summary['final']['top1']:.2f} / best on val "
              f"{summary['best_on_val']['top1']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
