"""What an evaluation result was asked for, so that a rerun into the same folder never passes off an old result as
the new request's.

A result stores its ``request``: the checkpoint (resolved path) and every option that changes its numbers or labels
(data, crops, precision, the probe's and k-NN's settings, the method and noise labels); worker counts and progress
bars are left out. A rerun whose request differs from the stored one is refused (exit 2, naming the options that
differ) rather than recomputed: recomputing would overwrite a result another command made, which ``--overwrite``
does on purpose.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, Optional

from dinov2.eval.linear_probe import ProbeSettings

# request key -> the command-line option a user changes to change it
OPTION_NAMES = {
    "checkpoint": "--pretrained-weights / --run-dir", "train_dataset": "--train-dataset",
    "val_dataset": "--val-dataset", "crop_size": "--crop-size", "resize_size": "--resize-size",
    "batch_size": "--batch-size", "precision": "--precision", "method": "--method", "noise": "--noise-label",
    "epoch_offset": "--epoch-offset", "nb_knn": "--nb-knn", "temperature": "--temperature", "knn": "k-NN run (--no-knn)",
    "augment": "--augment / --protocol", "augment_scale": "--augment-scale", "augment_hflip": "--augment-hflip",
    "protocol": "--protocol", "epochs": "--epochs", "base_learning_rates": "--learning-rates",
    "n_last_blocks": "--n-last-blocks", "avgpool_options": "--avgpool", "holdout_fraction": "--holdout-fraction",
    "seed": "--seed", "world_size": "the number of torchrun ranks", "epoch_length": "--epoch-length",
    "eval_period": "--eval-period", "shots": "--shots", "draws": "--draws", "logreg_c": "--logreg-c",
    "full": "--no-full", "clean_val": "--clean-val", "noises": "--noises", "psnr_images": "--psnr-images",
}


class RequestMismatch(ValueError):
    """A result on disk was made by another request than this command's."""


def _plain(value: Any) -> Any:
    """JSON's view of a value (tuples become lists), so that a request compares equal to its stored copy."""
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def evaluation_request(args: argparse.Namespace, protocol: str, checkpoint: Path, precision: str,
                       settings: Optional[ProbeSettings]) -> dict:
    """The options of this evaluation of ``checkpoint`` that change its result (see the module docstring)."""
    request = {
        "protocol_name": protocol, "checkpoint": str(Path(checkpoint).resolve()),
        "train_dataset": str(args.train_dataset), "val_dataset": str(args.val_dataset),
        "crop_size": args.crop_size, "resize_size": args.resize_size, "batch_size": args.batch_size,
        "precision": precision, "method": args.method, "noise": args.noise, "epoch_offset": args.epoch_offset,
        "knn": protocol != "linear" or not args.no_knn, "nb_knn": list(args.nb_knn), "temperature": args.temperature,
    }
    if protocol == "few_shot":
        request.update({"shots": list(args.shots), "draws": args.draws, "logreg_c": list(args.logreg_c),
                        "holdout_fraction": args.holdout_fraction, "seed": args.seed, "full": not args.no_full})
    if settings is not None:
        request.update({key: _plain(value) for key, value in dataclasses.asdict(settings).items()})
        request.update({"protocol": args.probe_protocol, "augment": args.augment})
        if args.augment:
            request.update({"augment_scale": list(args.augment_scale), "augment_hflip": args.augment_hflip})
    return request


def check_same_request(stored: dict, request: dict, path: Path) -> None:
    """:class:`RequestMismatch` naming the differing options when ``stored`` (a result) was made by another request;
    a result written before requests were stored carries none and is kept."""
    previous = stored.get("request")
    if previous is None:
        return
    keys = sorted(set(previous) | set(request))
    differing = [key for key in keys if previous.get(key) != request.get(key)]
    if differing:
        details = "; ".join(f"{OPTION_NAMES.get(key, key)}: {previous.get(key)!r} there, {request.get(key)!r} now"
                            for key in differing)
        raise RequestMismatch(f"{path} holds the result of another request ({details}): pass --overwrite to replace "
                              "it, or choose another --output-dir")
