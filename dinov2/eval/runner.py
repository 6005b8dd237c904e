"""Per-checkpoint driver of the linear-probe and k-NN evaluations (the CLIs ``dinov2.eval.linear`` and ``.knn``).

For each checkpoint: skip it when a valid result exists, extract the frozen features the protocol needs, train
and score the linear heads (linear protocol), run k-NN, and write one JSON result with the run's settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ContextManager, Optional

import numpy as np
import torch
from torch import nn
from torchvision import transforms

from dinov2.eval.arguments import check_arguments
from dinov2.eval.backbone import checkpoint_info, config_value, iter_checkpoints, load_frozen_backbone
from dinov2.hub import export_folder
from dinov2.models.input_channels import input_channels
from dinov2.eval.features import FeatureSet, ImageListDataset, extract_features, make_loader
from dinov2.eval.knn_classifier import knn_accuracies
from dinov2.eval.label_efficient import few_shot_scores, logistic_regression_all
from dinov2.eval.linear_probe import ProbeDiverged, ProbeSettings, augmented_epochs, holdout_split, run_linear_probe
from dinov2.eval.request import check_same_request, evaluation_request
from dinov2.eval.results import ResultError, load_result, make_result, write_result
from dinov2.eval.transforms import make_eval_transform, make_train_augment_transform
from utils import distributed
from utils.cli import EXIT_BAD_INPUT, EXIT_FAILURE, check_outside, one_line
from utils.image_io import ImageReadError
from utils.run_lock import folder_lock
from utils.dataset_index import DatasetError, SplitIndex, TreeLike, is_labelled, load_split
from utils.image_tree import ImageTree, open_tree
from utils.device import autocast, resolve_device, resolve_precision


def split_of(path: TreeLike) -> tuple[ImageTree, str]:
    """``ROOT/train`` -> (ROOT, "train"), for a stored tree or one noised on the fly."""
    tree = open_tree(path)
    if not tree.is_dir():
        raise DatasetError(f"{tree.folder} is not a folder (expected ROOT/<split> of an ImageFolder tree)")
    return tree.parent, tree.name


def load_splits(train_dataset: TreeLike, val_dataset: TreeLike) -> tuple[SplitIndex, SplitIndex]:
    """Both splits, checked to be labelled and to share the same classes in the same order."""
    for dataset in (train_dataset, val_dataset):
        if not is_labelled(*split_of(dataset)):
            raise DatasetError(f"{dataset} has no class folders ({open_tree(dataset).name}/<class>/<image>): the "
                               f"probes need labelled images; an unlabeled tree serves pretraining and denoising only")
    train = load_split(*split_of(train_dataset))
    val = load_split(*split_of(val_dataset))
    if train.classes != val.classes:
        raise DatasetError(f"{val_dataset} and {train_dataset} have different class folders")
    return train, val


@dataclass
class FrozenBackbone:
    """A checkpoint's frozen backbone with what every feature extraction of the run shares."""

    args: argparse.Namespace
    module: nn.Module
    device: torch.device
    precision: str  # resolved: fp32, bf16 or fp16
    n_blocks: int
    channels: int = field(init=False)  # the images' channels: the backbone's (1 for a single-channel one)
    eval_transform: transforms.Compose = field(init=False)

    def __post_init__(self) -> None:
        self.channels = input_channels(self.module)
        self.eval_transform = make_eval_transform(self.args.crop_size, self.args.resize_size, self.channels)

    def autocast(self) -> ContextManager:
        """A fresh autocast context of the run's precision."""
        return autocast(self.device, self.precision)

    def features(self, split: SplitIndex, samples: list, desc: str) -> FeatureSet:
        """Centre-crop features of ``samples`` (a part of ``split``), in their order."""
        loader = make_loader(ImageListDataset(split.root, samples, self.eval_transform, self.channels),
                             self.args.batch_size, self.args.num_workers)
        return extract_features(self.module, loader, self.n_blocks, self.device, self.autocast, desc,
                                not self.args.quiet)


@dataclass
class ExtractedFeatures:
    """The frozen features of one checkpoint: val, the whole train split when needed, the held-out part."""

    val: FeatureSet
    train: Optional[FeatureSet]
    holdout: Optional[FeatureSet]
    seconds: float


def runs_knn(args: argparse.Namespace, protocol: str) -> bool:
    """k-NN runs alone, or after the linear probe unless ``--no-knn`` (the few-shot protocol runs its own)."""
    return protocol == "knn" or (protocol == "linear" and not args.no_knn)


def valid_result_exists(out_path: Path, checkpoint: Path, overwrite: bool, request: Optional[dict] = None) -> bool:
    """True when ``out_path`` holds a valid result of this ``request`` to keep; a damaged one is evaluated again,
    one of another request is refused (:class:`RequestMismatch`)."""
    if overwrite or not out_path.is_file():
        return False
    try:
        stored = load_result(out_path)
    except ResultError as error:
        print(f"re-evaluating {checkpoint}: {error}")
        return False
    if request is not None:
        check_same_request(stored, request, out_path)
    print(f"skip {checkpoint}: {out_path} exists")
    return True


def extract_protocol_features(backbone: FrozenBackbone, protocol: str, train: SplitIndex, val: SplitIndex,
                              holdout_idx: Optional[np.ndarray]) -> ExtractedFeatures:
    """Val features, and the train features the protocol needs.

    The whole train split is extracted for k-NN and for a cached probe; an augmented probe without k-NN only needs
    the held-out part, since its fit images are re-extracted every epoch.
    """
    started = time.perf_counter()
    val_features = backbone.features(val, val.samples, "val features")
    train_features = holdout = None
    if protocol != "linear" or runs_knn(backbone.args, protocol) or not backbone.args.augment:
        train_features = backbone.features(train, train.samples, "train features")
        if holdout_idx is not None:
            holdout = train_features.subset(torch.as_tensor(holdout_idx, dtype=torch.int64))
    elif len(holdout_idx):
        holdout = backbone.features(train, [train.samples[i] for i in holdout_idx], "holdout features")
    return ExtractedFeatures(val_features, train_features, holdout, time.perf_counter() - started)


def linear_results(backbone: FrozenBackbone, settings: ProbeSettings, train: SplitIndex, fit_idx: np.ndarray,
                   features: ExtractedFeatures) -> dict:
    """Train the head grid on the fit part (cached features, or augmented images every epoch) and score it."""
    args = backbone.args
    common = dict(settings=settings, embed_dim=int(features.val.class_tokens.shape[2]),
                  num_classes=len(train.classes), device=backbone.device, holdout_features=features.holdout,
                  val_features=features.val, progress=not args.quiet and distributed.rank() == 0)
    if not args.augment:
        fit_features = features.train.subset(torch.as_tensor(fit_idx, dtype=torch.int64))
        return run_linear_probe(fit_features=fit_features, **common)
    augment = make_train_augment_transform(args.crop_size, tuple(args.augment_scale), args.augment_hflip,
                                           backbone.channels)
    fit_samples = [train.samples[i] for i in fit_idx]
    batches = augmented_epochs(backbone.module, ImageListDataset(train.root, fit_samples, augment, backbone.channels),
                               settings.batch_size, args.num_workers, backbone.n_blocks, backbone.device,
                               backbone.autocast, settings.seed, distributed.rank(), settings.world_size)
    return run_linear_probe(fit_features=None, epoch_batches=batches, num_fit=len(fit_samples), **common)


def knn_results(args: argparse.Namespace, features: ExtractedFeatures, num_classes: int,
                device: torch.device) -> dict:
    """Weighted k-NN of val on the whole train split, last block's class tokens."""
    accuracies = knn_accuracies(features.train.class_tokens[:, -1], features.train.labels,
                                features.val.class_tokens[:, -1], features.val.labels, args.nb_knn,
                                args.temperature, num_classes, device)
    return {"k": accuracies, "temperature": args.temperature}


def label_efficient_results(args: argparse.Namespace, features: ExtractedFeatures, num_classes: int) -> dict:
    """Few-shot k-NN and logistic regression over seeded draws, and the regression on all the labels."""
    train, val = features.train.class_tokens[:, -1], features.val.class_tokens[:, -1]
    results = {"shots": few_shot_scores(train, features.train.labels, val, features.val.labels, num_classes,
                                        args.shots, args.draws, max(args.nb_knn), args.temperature, args.logreg_c,
                                        args.seed)}
    if not args.no_full:
        results["logreg_all"] = logistic_regression_all(train, features.train.labels, val, features.val.labels,
                                                        args.logreg_c, args.holdout_fraction, args.seed)
    return results


def run_settings(backbone: FrozenBackbone, train: SplitIndex, val: SplitIndex, protocol: str,
                 settings: Optional[ProbeSettings], split: Optional[tuple[np.ndarray, np.ndarray]]) -> dict:
    """Everything that defines the evaluation, as written into the result (the linear probe's or the few-shot
    protocol's part if any)."""
    args = backbone.args
    record = {
        "train_dataset": str(args.train_dataset), "val_dataset": str(args.val_dataset),
        "num_train": len(train), "num_val": len(val), "num_classes": len(train.classes),
        "crop_size": args.crop_size, "resize_size": backbone.eval_transform.transforms[0].size,
        "batch_size": args.batch_size,
    }
    if settings is not None:
        record.update(_probe_settings(args, settings, split))
    if protocol == "few_shot":
        record.update({"shots": list(args.shots), "draws": args.draws, "logreg_c": list(args.logreg_c),
                       "logreg_holdout_fraction": args.holdout_fraction, "seed": args.seed,
                       "features": "last block's class token, L2-normalised"})
    return {**record, "precision": backbone.precision, "device": str(backbone.device),
            "nb_knn": list(args.nb_knn), "knn_temperature": args.temperature}


def _probe_settings(args: argparse.Namespace, settings: ProbeSettings,
                    split: tuple[np.ndarray, np.ndarray]) -> dict:
    fit_idx, holdout_idx = split
    return {
        "num_fit": int(len(fit_idx)), "num_holdout": int(len(holdout_idx)), "protocol": args.probe_protocol,
        "mode": "augment" if args.augment else "cached", "epochs": settings.epochs,
        "epoch_length": settings.epoch_length or "one pass", "iterations": settings.total_iterations(len(fit_idx)),
        "eval_period": settings.eval_period,
        **({"augment_scale": list(args.augment_scale), "augment_hflip": args.augment_hflip} if args.augment else {}),
        "base_learning_rates": list(settings.base_learning_rates),
        "lr_scaling": "lr * batch_size * world_size / 256", "world_size": settings.world_size,
        "n_last_blocks": list(settings.n_last_blocks), "avgpool": list(settings.avgpool_options),
        "holdout_fraction": settings.holdout_fraction, "seed": settings.seed, "optimizer": "SGD momentum 0.9, wd 0",
        "schedule": "cosine to 0 per iteration",
    }


def probe_split(train: SplitIndex, settings: Optional[ProbeSettings]) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """The linear probe's (fit, held-out) indices into ``train``; None for k-NN, which uses the whole split."""
    if settings is None:
        return None
    return holdout_split([label for _, label in train.samples], settings.holdout_fraction, settings.seed)


def label(cli_value: Optional[str], config, key: str) -> Optional[str]:
    """A result's label: the command line's, else the run config's ``experiment.<key>``."""
    if cli_value is not None:
        return cli_value
    value = config_value(config, f"experiment.{key}")
    return None if value is None else str(value)


def check_backbone_fits(args: argparse.Namespace, module: nn.Module, n_blocks: int, checkpoint: Path) -> None:
    """ValueError naming the option when the crop or the probed blocks do not fit the checkpoint's backbone."""
    if args.crop_size % module.patch_size:
        raise ValueError(f"--crop-size {args.crop_size} is not a multiple of the patch size {module.patch_size} of "
                         f"{checkpoint}")
    if n_blocks > module.n_blocks:
        hint = " (a ResNet has one feature layer: pass --n-last-blocks 1)" if module.n_blocks == 1 else ""
        raise ValueError(f"--n-last-blocks {n_blocks} exceeds the {module.n_blocks} blocks of {checkpoint}{hint}")


def evaluate_checkpoint(args: argparse.Namespace, checkpoint: Path, protocol: str, train: SplitIndex,
                        val: SplitIndex, device: torch.device, precision: str) -> Optional[Path]:
    """Evaluate one checkpoint at a resolved ``precision``; returns the result path, or None when a valid result
    already exists."""
    info = checkpoint_info(checkpoint)
    out_path = args.output_dir / f"{protocol}_{info.tag}.json"
    settings = check_arguments(args, protocol)
    if settings is not None:  # under torchrun each rank takes its share of every global batch
        settings = dataclasses.replace(settings, world_size=distributed.world_size())
    request = evaluation_request(args, protocol, checkpoint, precision, settings)
    main_rank = distributed.rank() == 0
    if distributed.broadcast_object(main_rank and valid_result_exists(out_path, checkpoint, args.overwrite,
                                                                      request)):
        return None
    started = time.perf_counter()
    n_blocks = max(settings.n_last_blocks) if settings is not None else 1
    module = load_frozen_backbone(checkpoint, device, args.arch, args.patch_size)
    check_backbone_fits(args, module, n_blocks, checkpoint)
    backbone = FrozenBackbone(args, module, device, precision, n_blocks)
    split = probe_split(train, settings)
    features = extract_protocol_features(backbone, protocol, train, val, None if split is None else split[1])
    results = linear_results(backbone, settings, train, split[0], features) if settings is not None else {}
    if protocol == "few_shot":
        results = label_efficient_results(args, features, len(train.classes))
    if runs_knn(args, protocol):
        knn = knn_results(args, features, len(train.classes), device)
        results = {**results, "knn": knn} if protocol == "linear" else knn
    results["timing"] = {"extract_seconds": round(features.seconds, 3),
                         "total_seconds": round(time.perf_counter() - started, 3)}
    result = make_result(protocol, str(checkpoint), run_settings(backbone, train, val, protocol, settings, split), results,
                         method=label(args.method, info.config, "method"),
                         noise=label(args.noise, info.config, "noise"), iteration=info.iteration,
                         epoch=None if info.epoch is None else info.epoch + args.epoch_offset, request=request)
    if main_rank:  # every rank computed the same result
        write_result(result, out_path)
    distributed.barrier()
    return out_path


def run_cli(args: argparse.Namespace, protocol: str) -> int:
    """Validate the inputs, resolve device and precision once, then evaluate each checkpoint in turn (done ones
    are skipped)."""
    try:
        checkpoints = list(iter_checkpoints(args.pretrained_weights, args.run_dir))
        missing = [str(p) for p in checkpoints if not Path(p).is_file() and export_folder(Path(p)) is None]
        if missing:
            raise FileNotFoundError(f"checkpoint(s) not found: {', '.join(missing)}")
        check_arguments(args, protocol)
        check_outside(args.output_dir, {"--train-dataset": args.train_dataset.folder,
                                        "--val-dataset": args.val_dataset.folder})
        train, val = load_splits(args.train_dataset, args.val_dataset)
        device = distributed.setup(args.device).device if distributed.launched_world_size() > 1 else \
            resolve_device(args.device)
        precision = resolve_precision(args.precision, device)
    except (FileNotFoundError, DatasetError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    main_rank = distributed.rank() == 0
    try:
        # one evaluation of a protocol per output folder at a time; under torchrun rank 0 holds it and writes
        with folder_lock(args.output_dir, protocol, enabled=main_rank):
            for checkpoint in checkpoints:
                path = evaluate_checkpoint(args, checkpoint, protocol, train, val, device, precision)
                if path is not None and main_rank:
                    print(f"{checkpoint} -> {path}")
    except (ValueError, ImageReadError, OSError) as error:  # bad input, an unwritable folder
        print(f"error: {one_line(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ProbeDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        distributed.cleanup()
    return 0
