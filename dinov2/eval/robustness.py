"""One probe scored across noise types and levels: how well a frozen backbone's features hold up on noisy inputs.

    python -m dinov2.eval.robustness --pretrained-weights W --train-dataset ROOT/train --clean-val ROOT/val \
        --noises all --output-dir OUT [--crop-size 224] [--nb-knn 20] [--psnr-images 200]

One logistic-regression head is fitted on the cached features of the training tree (all its labels; C chosen on a
held-out part of it, ``dinov2/eval/label_efficient.py``) and weighted k-NN uses the same features as its bank.
Both score the clean val images and every listed noise setting (``all``: the paper's nine; any ``gauss``,
``shot``, ``speckle`` or ``pg`` setting) noised on the fly with the trees' seeded noise (``noisy:SETTING:ROOT:val``,
the same noisy images every run). Each setting's PSNR is the mean over the first ``--psnr-images`` val images.
Per noise family, the area under accuracy-versus-PSNR is given as the mean accuracy over the family's PSNR span
(trapezoids divided by the span, in %; a family of one setting gives its accuracy). Writes
``OUT/robustness_<checkpoint>.{json,md,png}``; the JSON is an evaluation result (protocol ``robustness``, see
``dinov2/eval/results.py``) that ``exps/report.py`` tabulates.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from dinov2.eval.arguments import (add_logistic_regression_arguments, add_noise_label, add_run_arguments,
                                   add_weights_arguments)
from dinov2.eval.backbone import checkpoint_info, load_frozen_backbone
from dinov2.eval.knn_classifier import DEFAULT_TEMPERATURE, knn_accuracies
from dinov2.eval.label_efficient import fit_on_all_labels, top1_of, unit_features
from dinov2.eval.noise_curves import curves_by_family, family_areas
from dinov2.eval.results import make_result, write_result
from dinov2.eval.runner import FrozenBackbone, label, load_splits, split_of, valid_result_exists
from dinov2.hub import export_folder
from utils.atomic import atomic_write_text
from utils.cli import EXIT_BAD_INPUT, add_num_workers, one_line
from utils.dataset_index import DatasetError, TreeLike, load_split
from utils.device import resolve_device, resolve_precision
from utils.figures import pyplot, save_png
from utils.image_io import ImageReadError
from utils.image_tree import ImageTree, open_tree, tree_argument
from utils.metrics import psnr
from utils.noise import expand_noise_settings


def mean_psnr(clean: dict[str, np.ndarray], noisy: ImageTree) -> float:
    """Mean PSNR (dB) of the noisy tree's images against ``clean`` (``{relpath: pixels}``, read once per run)."""
    return float(np.mean([psnr(pixels, noisy.read_pixels(rel)) for rel, pixels in clean.items()]))


def score(backbone: FrozenBackbone, model, train, val_root: TreeLike, k: int, temperature: float,
          num_classes: int) -> tuple[float, float]:
    """(logistic regression top-1, k-NN top-1) on the val tree ``val_root`` (``ROOT/<split>``)."""
    tree, split = split_of(val_root)
    index = load_split(tree, split)
    features = backbone.features(index, index.samples, f"{split} features of {tree.folder.name}")
    cls = features.class_tokens[:, -1]
    knn = knn_accuracies(train.class_tokens[:, -1], train.labels, cls, features.labels, [k], temperature,
                         num_classes)[str(k)]["top1"]
    return top1_of(model, unit_features(cls), features.labels.numpy()), knn


def plot(table: dict, clean: dict, out: Path) -> Path:
    """Accuracy against PSNR, a line per noise family, the clean accuracy dashed; logistic regression and k-NN."""
    figure, axes = pyplot().subplots(1, 2, figsize=(10, 3.8), squeeze=False)
    for axis, (key, title) in zip(axes[0], (("logreg", "logistic regression top-1 (%)"), ("knn", "k-NN top-1 (%)"))):
        for family, points in curves_by_family(table, key).items():
            axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=family)
        axis.axhline(clean[key], linestyle="--", color="grey", label="clean")
        axis.set_xlabel("PSNR of the val images (dB)")
        axis.set_ylabel(title)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    return save_png(figure, out)


def markdown(table: dict, clean: dict, areas: dict) -> str:
    """The table of every setting and the families' areas."""
    lines = ["| val images | PSNR (dB) | logistic regression top-1 (%) | k-NN top-1 (%) |", "| --- | --- | --- | --- |",
             f"| clean | - | {clean['logreg']:.1f} | {clean['knn']:.1f} |"]
    lines += [f"| {s} | {r['psnr']:.1f} | {r['logreg']:.1f} | {r['knn']:.1f} |" for s, r in table.items()]
    lines += ["", "| noise family | area: logistic regression (%) | area: k-NN (%) |", "| --- | --- | --- |"]
    lines += [f"| {f} | {areas['logreg'][f]:.1f} | {areas['knn'][f]:.1f} |" for f in areas["logreg"]]
    return "\n".join(lines) + "\n"


def robustness_request(args: argparse.Namespace, checkpoint: Path, precision: str) -> dict:
    """The options that change this evaluation's result (a rerun with the same ones keeps it; see request.py)."""
    return {"protocol_name": "robustness", "checkpoint": str(Path(checkpoint).resolve()),
            "train_dataset": str(args.train_dataset), "clean_val": str(args.clean_val),
            "noises": [spec.name for spec in args.noises],
            "crop_size": args.crop_size, "resize_size": args.resize_size, "batch_size": args.batch_size,
            "precision": precision, "method": args.method, "noise": args.noise, "nb_knn": args.nb_knn,
            "temperature": args.temperature, "logreg_c": list(args.logreg_c),
            "holdout_fraction": args.holdout_fraction, "psnr_images": args.psnr_images, "seed": args.seed}


def evaluate(args: argparse.Namespace) -> Path:
    """Fit once on the training tree, score the clean val and every noise setting (``args.noises``, parsed by
    :func:`~utils.noise.expand_noise_settings`); returns the JSON path (kept, without work, when it holds the result
    of the same request)."""
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    info = checkpoint_info(Path(args.pretrained_weights))
    stem = args.output_dir / f"robustness_{info.tag}"
    request = robustness_request(args, info.path, str(precision))
    if valid_result_exists(stem.with_suffix(".json"), info.path, args.overwrite, request):
        return stem.with_suffix(".json")
    module = load_frozen_backbone(args.pretrained_weights, device, args.arch, args.patch_size)
    backbone = FrozenBackbone(args, module, device, precision, 1)
    train_index, clean_index = load_splits(args.train_dataset, args.clean_val)
    train = backbone.features(train_index, train_index.samples, "train features")
    model, c, _ = fit_on_all_labels(train.class_tokens[:, -1], train.labels, args.logreg_c, args.holdout_fraction,
                                    args.seed)
    classes = len(train_index.classes)
    clean_root, split = split_of(args.clean_val)
    logreg, knn = score(backbone, model, train, str(args.clean_val), args.nb_knn, args.temperature, classes)
    clean = {"logreg": logreg, "knn": knn}
    clean_tree = open_tree(clean_root.folder)
    clean_pixels = {rel: clean_tree.read_pixels(rel) for rel, _ in clean_index.samples[:args.psnr_images]}
    table = {}
    for spec in args.noises:
        noisy_root = clean_tree.noised(spec)  # seeded as the stored noisy copy of the clean tree
        logreg, knn = score(backbone, model, train, noisy_root / split, args.nb_knn, args.temperature, classes)
        table[spec.name] = {"psnr": mean_psnr(clean_pixels, noisy_root), "logreg": logreg, "knn": knn}
    areas = {key: family_areas(table, key) for key in ("logreg", "knn")}
    settings = {"train_dataset": str(args.train_dataset), "clean_val": str(args.clean_val), "logreg_C": c,
                "logreg_c_searched": list(args.logreg_c), "holdout_fraction": args.holdout_fraction,
                "nb_knn": args.nb_knn, "knn_temperature": args.temperature, "psnr_images": len(clean_pixels),
                "crop_size": args.crop_size, "seed": args.seed}
    write_result(make_result("robustness", str(info.path), settings, {"clean": clean, "noises": table, "areas": areas},
                             method=label(args.method, info.config, "method"),
                             noise=label(args.noise, info.config, "noise"),
                             iteration=info.iteration, epoch=info.epoch, request=request), stem.with_suffix(".json"))
    atomic_write_text(stem.with_suffix(".md"), markdown(table, clean, areas))
    if table:
        plot(table, clean, stem.with_suffix(".png"))
    return stem.with_suffix(".json")


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_weights_arguments(parser)
    parser.add_argument("--train-dataset", type=tree_argument, required=True, help="ROOT/train the head is fitted on")
    parser.add_argument("--clean-val", type=tree_argument, required=True, help="ROOT/val of the clean tree")
    parser.add_argument("--noises", nargs="+", default=["all"], help="noise settings of the val images ('all': nine)")
    parser.add_argument("--method", default=None, help="the result's method label (else the run config's)")
    add_noise_label(parser, "the training data's noise")
    parser.add_argument("--crop-size", type=int, default=224)
    parser.add_argument("--resize-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=128)
    add_num_workers(parser, 4)
    parser.add_argument("--nb-knn", type=int, default=20)
    parser.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE)
    parser.add_argument("--psnr-images", type=int, default=200, help="val images whose mean PSNR labels a setting")
    add_logistic_regression_arguments(parser.add_argument_group("logistic regression"))
    add_run_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    try:
        if args.pretrained_weights is None or args.run_dir is not None:
            raise ValueError("give --pretrained-weights (one checkpoint; a run directory means its newest export), "
                             "not --run-dir")
        if not Path(args.pretrained_weights).exists() and export_folder(Path(args.pretrained_weights)) is None:
            raise FileNotFoundError(f"--pretrained-weights {args.pretrained_weights}: no such file or folder")
        args.noises = expand_noise_settings(args.noises)  # parsed once, before any work
        path = evaluate(args)
    except (ValueError, FileNotFoundError, DatasetError, ImageReadError, OSError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"{args.pretrained_weights} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
