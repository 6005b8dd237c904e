"""Command line of the linear-probe, k-NN and few-shot evaluations: one parser per protocol, and the checks of its
values.

The protocols share the checkpoint, data, label and run arguments and the k-NN ones; only the linear probe has
the probe's arguments (and ``--no-knn``), only the few-shot protocol its shots and draws, so
``python -m dinov2.eval.knn --help`` lists nothing it ignores.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional

from dinov2.eval.knn_classifier import DEFAULT_KS, DEFAULT_TEMPERATURE
from dinov2.eval.label_efficient import DEFAULT_CS, DEFAULT_DRAWS, DEFAULT_SHOTS
from dinov2.eval.linear_heads import AVGPOOL_OPTIONS, BASE_LEARNING_RATES, N_LAST_BLOCKS
from dinov2.eval.linear_probe import ProbeSettings, check_holdout_fraction
from dinov2.eval.transforms import (
    DEFAULT_AUGMENT_SCALE, DEFAULT_HFLIP_PROBABILITY, make_train_augment_transform,
)
from dinov2.utils.choices import VIT_SIZES
from utils.cli import RenamedOption, add_num_workers
from utils.device import PRECISIONS
from utils.image_tree import tree_argument

PROTOCOLS = ("linear", "knn", "few_shot")
PAPER_EPOCH_LENGTH = 1250  # upstream's default "epoch" of the linear probe: 10 x 1,250 iterations at batch 128
# the linear probe's protocols: what each sets unless the command line gives the value
PROBE_PROTOCOLS = {
    "cached": {"augment": False, "holdout_fraction": 0.1, "epoch_length": None, "eval_period": None},
    "paper": {"augment": True, "holdout_fraction": 0.0, "epoch_length": PAPER_EPOCH_LENGTH,
              "eval_period": "epoch"},  # every --epoch-length iterations
}


def _bool(text: str) -> bool:
    if text.lower() in ("true", "yes", "1"):
        return True
    if text.lower() in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def build_parser(protocol: str, description: Optional[str] = None) -> argparse.ArgumentParser:
    """The parser of ``python -m dinov2.eval.<protocol>`` (``linear`` or ``knn``)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {protocol!r}; expected one of {PROTOCOLS}")
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_checkpoint_and_data_arguments(parser, protocol)
    if protocol == "linear":
        _add_linear_arguments(parser)
    if protocol == "few_shot":
        _add_few_shot_arguments(parser)
    _add_knn_arguments(parser, optional=protocol == "linear")
    add_run_arguments(parser)
    return parser


def add_weights_arguments(parser: argparse.ArgumentParser) -> None:
    """--pretrained-weights / --run-dir (exactly one) and the shape checks of a bare state dict: shared by every
    evaluation CLI."""
    source = parser.add_argument_group("checkpoints (exactly one of --pretrained-weights and --run-dir)")
    source.add_argument("--pretrained-weights", type=Path,
                        help="encoder export, full checkpoint, run dir (newest export), python -m dinov2.export "
                             "folder, or a bare backbone state dict such as upstream's dinov2_vits14_pretrain.pth")
    source.add_argument("--run-dir", type=Path, help="evaluate every eval/training_<it>/ export of this run")
    source.add_argument("--arch", choices=sorted(VIT_SIZES), default=None,
                        help="a bare state dict's architecture (read from its tensors; checked when given)")
    source.add_argument("--patch-size", type=int, default=None,
                        help="a bare state dict's patch size (read from its tensors; checked when given)")


def _add_checkpoint_and_data_arguments(parser: argparse.ArgumentParser, protocol: str) -> None:
    add_weights_arguments(parser)
    data = parser.add_argument_group("data")
    data.add_argument("--train-dataset", type=tree_argument, required=True,
                      help="ROOT/train of an ImageFolder tree, or noisy:SETTING:ROOT:train (noise added on the fly)")
    data.add_argument("--val-dataset", type=tree_argument, required=True,
                      help="ROOT/val of an ImageFolder tree, or noisy:SETTING:ROOT:val")
    data.add_argument("--crop-size", type=int, default=224, help="centre/random crop size (default 224)")
    data.add_argument("--resize-size", type=int, default=None, help="eval resize (default crop*256/224)")
    batch_help = "images per batch of feature extraction" + (" and of the probe's SGD" if protocol == "linear" else "")
    data.add_argument("--batch-size", type=int, default=128, help=f"{batch_help} (default 128)")
    add_num_workers(data, 4)
    labels = parser.add_argument_group("labels of the result (never parsed from file names)")
    labels.add_argument("--method", default=None, help="e.g. dinov2, n2n_dinov2, nc, nct (else the run config's)")
    add_noise_label(labels, "e.g. gauss100 or identity (else the run config's)")
    labels.add_argument("--epoch-offset", type=float, default=0.0, help="added to the checkpoint's epoch")


def add_noise_label(parser: Any, help_text: str, default: Optional[str] = None) -> None:
    """``--noise-label`` (``args.noise``): the noise setting a result is labelled with. Only retrieval's ``--noise``
    adds noise; here the images are read as given, so the older spelling ``--noise`` is refused saying so."""
    parser.add_argument("--noise-label", dest="noise", default=default,
                        help=f"{help_text}; a label only: the images are read as given (noisy:SETTING:ROOT noises "
                             "them on the fly)")
    parser.add_argument("--noise", action=RenamedOption, new_name="--noise-label",
                        why="it labels the result; the images are read as given (give noisy:SETTING:ROOT as the "
                            "tree to noise them on the fly)")


def _add_linear_arguments(parser: argparse.ArgumentParser) -> None:
    probe = parser.add_argument_group("linear probe")
    probe.add_argument("--protocol", dest="probe_protocol", choices=sorted(PROBE_PROTOCOLS), default="cached",
                       help="cached (default): centre-crop features extracted once, one pass per epoch, the head "
                            "chosen on a held-out part of train. paper: augmented images every step, epochs of "
                            f"{PAPER_EPOCH_LENGTH} iterations, val scored every epoch, no holdout, best on val over "
                            "evaluations and heads (the paper's numbers); the options below override either")
    probe.add_argument("--augment", action="store_true", help="re-extract augmented train features every epoch")
    probe.add_argument("--augment-scale", type=float, nargs=2, default=list(DEFAULT_AUGMENT_SCALE),
                       metavar=("MIN", "MAX"), help="RandomResizedCrop area range of --augment (default 0.08 1)")
    probe.add_argument("--augment-hflip", type=float, default=DEFAULT_HFLIP_PROBABILITY, metavar="P",
                       help="horizontal-flip probability of --augment (default 0.5; 0 for digits or text)")
    probe.add_argument("--epochs", type=int, default=10, help="epochs of the probe (default 10)")
    probe.add_argument("--epoch-length", type=int, default=None, metavar="ITERATIONS",
                       help=f"iterations per epoch (cached: one pass over the training images; paper: "
                            f"{PAPER_EPOCH_LENGTH})")
    probe.add_argument("--eval-period", type=int, default=None, metavar="ITERATIONS",
                       help="score val every this many iterations and keep the best (cached: only at the end; "
                            "paper: every epoch)")
    probe.add_argument("--learning-rates", type=float, nargs="+", default=list(BASE_LEARNING_RATES),
                       help="base rates, scaled by batch_size/256")
    probe.add_argument("--n-last-blocks", type=int, nargs="+", default=list(N_LAST_BLOCKS))
    probe.add_argument("--avgpool", type=_bool, nargs="+", default=list(AVGPOOL_OPTIONS))
    probe.add_argument("--holdout-fraction", type=float, default=None,
                       help="share of train used to pick the head (cached: 0.1; paper: 0, the head is picked on val)")
    probe.add_argument("--seed", type=int, default=0)


def _add_few_shot_arguments(parser: argparse.ArgumentParser) -> None:
    few = parser.add_argument_group("few-shot and logistic regression")
    few.add_argument("--shots", type=int, nargs="+", default=list(DEFAULT_SHOTS),
                     help="labelled training images per class of each few-shot setting (default 1 10 100)")
    few.add_argument("--draws", type=int, default=DEFAULT_DRAWS, help="seeded draws per setting (default 5)")
    add_logistic_regression_arguments(few)
    few.add_argument("--no-full", action="store_true", help="skip the logistic regression on all the labels")


def add_logistic_regression_arguments(group: argparse._ActionsContainer) -> None:
    """--logreg-c, --holdout-fraction and --seed of the logistic regressions on cached features (the few-shot and
    robustness protocols)."""
    group.add_argument("--logreg-c", type=float, nargs="+", default=list(DEFAULT_CS),
                       help="inverse L2 strengths searched by the logistic regressions")
    group.add_argument("--holdout-fraction", type=float, default=0.1,
                       help="share of train that chooses C of the regression on all labels (default 0.1)")
    group.add_argument("--seed", type=int, default=0)


def _add_knn_arguments(parser: argparse.ArgumentParser, optional: bool) -> None:
    knn = parser.add_argument_group("k-NN")
    knn.add_argument("--nb-knn", type=int, nargs="+", default=list(DEFAULT_KS))
    knn.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE)
    if optional:
        knn.add_argument("--no-knn", action="store_true", help="linear probe only")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """--output-dir, --device, --precision, --overwrite and --quiet: shared by every evaluation CLI."""
    run = parser.add_argument_group("run")
    run.add_argument("--output-dir", type=Path, required=True)
    run.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    run.add_argument("--precision", default="auto", choices=PRECISIONS,
                     help="autocast of the backbone; auto is bf16 on CUDA (fp16 without bf16), fp32 on CPU")
    run.add_argument("--overwrite", action="store_true", help="re-evaluate checkpoints that have a result")
    run.add_argument("--quiet", action="store_true", help="no progress bars")


def check_arguments(args: argparse.Namespace, protocol: str) -> Optional[ProbeSettings]:
    """Check the values before any work; the linear probe's settings (None for k-NN)."""
    if args.batch_size < 1:
        raise ValueError("--batch-size must be at least 1")
    if protocol == "few_shot":
        if min(args.shots) < 1 or args.draws < 1:
            raise ValueError(f"--shots and --draws must be at least 1, got {args.shots} and {args.draws}")
        if min(args.logreg_c) <= 0:
            raise ValueError(f"--logreg-c must be positive, got {args.logreg_c}")
        if not 0.0 < args.holdout_fraction < 1.0:
            raise ValueError(f"--holdout-fraction must lie in (0, 1), got {args.holdout_fraction}")
    return settings_from_args(args) if protocol == "linear" else None


def apply_probe_protocol(args: argparse.Namespace) -> None:
    """Fill the values of ``--protocol`` that the command line left unset (``--augment`` is only ever switched on)."""
    preset = PROBE_PROTOCOLS[args.probe_protocol]
    args.augment = args.augment or preset["augment"]
    for key in ("holdout_fraction", "epoch_length", "eval_period"):
        if getattr(args, key) is None:
            setattr(args, key, args.epoch_length if preset[key] == "epoch" else preset[key])


def settings_from_args(args: argparse.Namespace) -> ProbeSettings:
    """The probe settings of the linear probe's command line, checked before any work."""
    apply_probe_protocol(args)
    if args.epochs < 1 or args.batch_size < 1:
        raise ValueError("--epochs and --batch-size must be at least 1")
    for option, value in (("--epoch-length", args.epoch_length), ("--eval-period", args.eval_period)):
        if value is not None and value < 1:
            raise ValueError(f"{option} must be at least 1, got {value}")
    if not args.learning_rates or min(args.learning_rates) <= 0:
        raise ValueError(f"--learning-rates must be positive, got {args.learning_rates}")
    if min(args.n_last_blocks) < 1:
        raise ValueError(f"--n-last-blocks must be at least 1, got {args.n_last_blocks}")
    check_holdout_fraction(args.holdout_fraction)
    if args.augment:
        make_train_augment_transform(args.crop_size, tuple(args.augment_scale), args.augment_hflip)
    return ProbeSettings(epochs=args.epochs, batch_size=args.batch_size,
                         base_learning_rates=tuple(args.learning_rates), n_last_blocks=tuple(args.n_last_blocks),
                         avgpool_options=tuple(args.avgpool), holdout_fraction=args.holdout_fraction,
                         seed=args.seed, epoch_length=args.epoch_length, eval_period=args.eval_period)
