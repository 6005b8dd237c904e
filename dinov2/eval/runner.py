"""Shared command line and per-checkpoint driver of the linear probe and k-NN evaluations."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from dinov2.eval.backbone import (
    PRECISIONS, autocast_context, checkpoint_info, config_value, iter_checkpoints, load_frozen_backbone,
    resolve_device,
)
from dinov2.eval.features import FeatureSet, ImageListDataset, extract_features, make_loader
from dinov2.eval.knn import DEFAULT_KS, DEFAULT_TEMPERATURE, knn_accuracies
from dinov2.eval.linear import ProbeSettings, augmented_epochs, holdout_split, run_linear_probe
from dinov2.eval.linear_heads import AVGPOOL_OPTIONS, BASE_LEARNING_RATES, N_LAST_BLOCKS
from dinov2.eval.results import ResultError, load_result, make_result, write_result
from dinov2.eval.transforms import (
    DEFAULT_AUGMENT_SCALE, DEFAULT_HFLIP_PROBABILITY, make_eval_transform, make_train_augment_transform,
)
from utils.dataset_index import DatasetError, SplitIndex, load_split


def _bool(text: str) -> bool:
    if text.lower() in ("true", "yes", "1"):
        return True
    if text.lower() in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by ``dinov2.eval.linear`` and ``dinov2.eval.knn``."""
    source = parser.add_argument_group("checkpoints (exactly one)")
    source.add_argument("--pretrained-weights", type=Path, help="teacher export, full checkpoint or run dir (newest)")
    source.add_argument("--run-dir", type=Path, help="evaluate every eval/training_<it>/ export of this run")
    data = parser.add_argument_group("data")
    data.add_argument("--train-dataset", type=Path, required=True, help="ROOT/train of an ImageFolder tree")
    data.add_argument("--val-dataset", type=Path, required=True, help="ROOT/val of an ImageFolder tree")
    data.add_argument("--crop-size", type=int, default=224, help="centre/random crop size (default 224)")
    data.add_argument("--resize-size", type=int, default=None, help="eval resize (default crop*256/224)")
    data.add_argument("--num-workers", type=int, default=4)
    labels = parser.add_argument_group("labels of the result (never parsed from file names)")
    labels.add_argument("--method", default=None, help="e.g. dinov2, n2n_dinov2, nc, nct (else the run config's)")
    labels.add_argument("--noise", default=None, help="e.g. gauss100 or identity (else the run config's)")
    labels.add_argument("--epoch-offset", type=float, default=0.0, help="added to the checkpoint's epoch")
    probe = parser.add_argument_group("linear probe")
    probe.add_argument("--augment", action="store_true", help="re-extract augmented train features every epoch")
    probe.add_argument("--augment-scale", type=float, nargs=2, default=list(DEFAULT_AUGMENT_SCALE),
                       metavar=("MIN", "MAX"), help="RandomResizedCrop area range of --augment (default 0.08 1)")
    probe.add_argument("--augment-hflip", type=float, default=DEFAULT_HFLIP_PROBABILITY, metavar="P",
                       help="horizontal-flip probability of --augment (default 0.5; 0 for digits or text)")
    probe.add_argument("--epochs", type=int, default=10, help="passes over the training images")
    probe.add_argument("--batch-size", type=int, default=128)
    probe.add_argument("--learning-rates", type=float, nargs="+", default=list(BASE_LEARNING_RATES),
                       help="base rates, scaled by batch_size/256")
    probe.add_argument("--n-last-blocks", type=int, nargs="+", default=list(N_LAST_BLOCKS))
    probe.add_argument("--avgpool", type=_bool, nargs="+", default=list(AVGPOOL_OPTIONS))
    probe.add_argument("--holdout-fraction", type=float, default=0.1, help="share of train used to pick the head")
    probe.add_argument("--seed", type=int, default=0)
    knn = parser.add_argument_group("k-NN")
    knn.add_argument("--nb-knn", type=int, nargs="+", default=list(DEFAULT_KS))
    knn.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE)
    knn.add_argument("--no-knn", action="store_true", help="linear probe only")
    run = parser.add_argument_group("run")
    run.add_argument("--output-dir", type=Path, required=True)
    run.add_argument("--device", default="auto")
    run.add_argument("--precision", default="auto", choices=PRECISIONS)
    run.add_argument("--overwrite", action="store_true", help="re-evaluate checkpoints that have a result")
    run.add_argument("--quiet", action="store_true", help="no progress bars")


def split_of(path: Path) -> tuple[Path, str]:
    """``ROOT/train`` -> (ROOT, "train")."""
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"{path} is not a folder (expected ROOT/<split> of an ImageFolder tree)")
    return path.parent, path.name


def load_splits(train_dataset: Path, val_dataset: Path) -> tuple[SplitIndex, SplitIndex]:
    """Both splits, checked to share the same classes in the same order."""
    train = load_split(*split_of(train_dataset))
    val = load_split(*split_of(val_dataset))
    if train.classes != val.classes:
        raise DatasetError(f"{val_dataset} and {train_dataset} have different class folders")
    return train, val


def settings_from_args(args: argparse.Namespace) -> ProbeSettings:
    """The probe settings of the command line, checked before any work."""
    if args.epochs < 1 or args.batch_size < 1:
        raise ValueError("--epochs and --batch-size must be at least 1")
    if args.augment:
        make_train_augment_transform(args.crop_size, tuple(args.augment_scale), args.augment_hflip)
    return ProbeSettings(epochs=args.epochs, batch_size=args.batch_size,
                         base_learning_rates=tuple(args.learning_rates), n_last_blocks=tuple(args.n_last_blocks),
                         avgpool_options=tuple(args.avgpool), holdout_fraction=args.holdout_fraction,
                         seed=args.seed)


def _label(cli_value: Optional[str], config, key: str) -> Optional[str]:
    if cli_value is not None:
        return cli_value
    value = config_value(config, f"experiment.{key}")
    return None if value is None else str(value)


def evaluate_checkpoint(args: argparse.Namespace, checkpoint: Path, protocol: str, train: SplitIndex,
                        val: SplitIndex, device: torch.device) -> Optional[Path]:
    """Evaluate one checkpoint; returns the result path, or None when a valid result already exists."""
    info = checkpoint_info(checkpoint)
    out_path = args.output_dir / f"{protocol}_{info.tag}.json"
    if out_path.is_file() and not args.overwrite:
        try:
            load_result(out_path)
            print(f"skip {checkpoint}: {out_path} exists")
            return None
        except ResultError as error:
            print(f"re-evaluating {checkpoint}: {error}")
    started = time.perf_counter()
    settings = settings_from_args(args)
    backbone = load_frozen_backbone(checkpoint, device)
    n_blocks = max(settings.n_last_blocks) if protocol == "linear" else 1
    autocast = lambda: autocast_context(device, args.precision)  # noqa: E731
    eval_transform = make_eval_transform(args.crop_size, args.resize_size)
    loader = lambda ds: make_loader(ds, args.batch_size, args.num_workers)  # noqa: E731

    labels = [label for _, label in train.samples]
    fit_idx, holdout_idx = holdout_split(labels, settings.holdout_fraction, settings.seed)
    need_full_train = protocol == "knn" or not args.augment or not args.no_knn
    t0 = time.perf_counter()
    val_features = extract_features(backbone, loader(ImageListDataset(val.root, val.samples, eval_transform)),
                                    n_blocks, device, autocast, "val features", not args.quiet)
    train_features: Optional[FeatureSet] = None
    if need_full_train:
        train_features = extract_features(backbone, loader(ImageListDataset(train.root, train.samples,
                                                                            eval_transform)),
                                          n_blocks, device, autocast, "train features", not args.quiet)
        holdout_features = train_features.subset(torch.as_tensor(holdout_idx, dtype=torch.int64))
    elif len(holdout_idx) == 0:
        holdout_features = None
    else:
        holdout_samples = [train.samples[i] for i in holdout_idx]
        holdout_features = extract_features(backbone, loader(ImageListDataset(train.root, holdout_samples,
                                                                              eval_transform)),
                                            n_blocks, device, autocast, "holdout features", not args.quiet)
    extract_seconds = time.perf_counter() - t0

    results: dict = {}
    if protocol == "linear":
        embed_dim = int(val_features.class_tokens.shape[2])
        if args.augment:
            fit_samples = [train.samples[i] for i in fit_idx]
            dataset = ImageListDataset(train.root, fit_samples, make_train_augment_transform(
                args.crop_size, tuple(args.augment_scale), args.augment_hflip))
            batches = augmented_epochs(backbone, dataset, settings.batch_size, args.num_workers, n_blocks, device,
                                       autocast, settings.seed)
            results = run_linear_probe(settings, embed_dim, len(train.classes), device, None, holdout_features,
                                       val_features, batches, len(fit_samples), progress=not args.quiet)
        else:
            fit_features = train_features.subset(torch.as_tensor(fit_idx, dtype=torch.int64))
            results = run_linear_probe(settings, embed_dim, len(train.classes), device, fit_features,
                                       holdout_features, val_features, progress=not args.quiet)
    if protocol == "knn" or not args.no_knn:
        knn = {"k": knn_accuracies(train_features.class_tokens[:, -1], train_features.labels,
                                   val_features.class_tokens[:, -1], val_features.labels, args.nb_knn,
                                   args.temperature, len(train.classes), device),
               "temperature": args.temperature}
        results = {**results, "knn": knn} if protocol == "linear" else knn
    results["timing"] = {"extract_seconds": round(extract_seconds, 3),
                         "total_seconds": round(time.perf_counter() - started, 3)}
    run_settings = {
        "train_dataset": str(args.train_dataset), "val_dataset": str(args.val_dataset),
        "num_train": len(train), "num_val": len(val), "num_classes": len(train.classes),
        "num_fit": int(len(fit_idx)), "num_holdout": int(len(holdout_idx)),
        "crop_size": args.crop_size, "resize_size": eval_transform.transforms[0].size,
        "mode": "augment" if args.augment else "cached", "epochs": settings.epochs,
        **({"augment_scale": list(args.augment_scale), "augment_hflip": args.augment_hflip} if args.augment else {}),
        "batch_size": settings.batch_size, "base_learning_rates": list(settings.base_learning_rates),
        "lr_scaling": "lr * batch_size * world_size / 256", "world_size": settings.world_size,
        "n_last_blocks": list(settings.n_last_blocks), "avgpool": list(settings.avgpool_options),
        "holdout_fraction": settings.holdout_fraction, "seed": settings.seed, "optimizer": "SGD momentum 0.9, wd 0",
        "schedule": "cosine to 0 per iteration", "precision": args.precision, "device": str(device),
        "nb_knn": list(args.nb_knn), "knn_temperature": args.temperature,
    }
    result = make_result(protocol, str(checkpoint), run_settings, results,
                         method=_label(args.method, info.config, "method"),
                         noise=_label(args.noise, info.config, "noise"), iteration=info.iteration,
                         epoch=None if info.epoch is None else info.epoch + args.epoch_offset)
    return write_result(result, out_path)


def run_cli(args: argparse.Namespace, protocol: str) -> int:
    """Validate the inputs, then evaluate each checkpoint in turn (done ones are skipped)."""
    try:
        checkpoints = list(iter_checkpoints(args.pretrained_weights, args.run_dir))
        missing = [str(p) for p in checkpoints if not Path(p).is_file()]
        if missing:
            raise FileNotFoundError(f"checkpoint(s) not found: {', '.join(missing)}")
        settings_from_args(args)
        train, val = load_splits(args.train_dataset, args.val_dataset)
        device = resolve_device(args.device)
    except (FileNotFoundError, DatasetError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for checkpoint in checkpoints:
        path = evaluate_checkpoint(args, checkpoint, protocol, train, val, device)
        if path is not None:
            print(f"{checkpoint} -> {path}")
    return 0
