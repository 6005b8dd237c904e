"""Label-efficient evaluation of a frozen backbone on cached features: few-shot k-NN and logistic regression with
1, 10 and 100 labelled training images per class (seeded draws; mean, 95 % interval and every draw), and logistic
regression on all the training labels, its regularisation chosen on held-out training images (see
``dinov2/eval/label_efficient.py``). One result file per checkpoint, ``few_shot_<checkpoint>.json``.

    python -m dinov2.eval.few_shot --pretrained-weights CKPT --train-dataset ROOT/train --val-dataset ROOT/val \
        --output-dir OUT [--shots 1 10 100] [--draws 5] [--nb-knn 20] [--logreg-c 0.01 0.1 1 10 100 1000 10000]
"""

from __future__ import annotations

from dinov2.eval.arguments import build_parser
from dinov2.eval.runner import run_cli


def main(argv: list[str] | None = None) -> int:
    """Command line: the probes' checkpoint, data, label and run arguments, the shots and draws, k-NN's k."""
    args = build_parser("few_shot", __doc__).parse_args(argv)
    return run_cli(args, protocol="few_shot")


if __name__ == "__main__":
    raise SystemExit(main())
