"""Linear probe of a frozen backbone with the DINOv2 protocol, and honest head selection.

    python -m dinov2.eval.linear --pretrained-weights RUN/eval/training_<it>/teacher_checkpoint.pth \
        --train-dataset ROOT/train --val-dataset ROOT/val --output-dir OUT [--augment] [--method M --noise-label N]
    python -m dinov2.eval.linear --run-dir RUN ...      # every encoder export of a run, skipping done ones

A grid of linear heads (n_last_blocks {1, 4} x avgpool {no, yes} x 13 learning rates scaled by batch/256) is
trained together with SGD (momentum 0.9, cosine schedule, no weight decay). By default the frozen features are
extracted once (centre crops) and every epoch reuses them; ``--augment`` re-extracts the training images every
epoch with RandomResizedCrop + flip, as the paper's numbers were made. The head is selected on a seeded,
stratified held-out part of the training set and then scored once on val (``final``); the paper-compatible
best-over-the-grid-on-val number is written too, as ``best_on_val``. k-NN (k 10 and 20) runs on the same
cached features. One JSON result per checkpoint: OUT/linear_training_<it>.json.
"""

from __future__ import annotations

from dinov2.eval.arguments import build_parser
from dinov2.eval.runner import run_cli


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    args = build_parser("linear", __doc__).parse_args(argv)
    return run_cli(args, protocol="linear")


if __name__ == "__main__":
    raise SystemExit(main())
