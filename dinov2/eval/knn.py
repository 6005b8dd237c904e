"""Weighted k-NN classification on L2-normalised class tokens (the DINO protocol).

Each test sample takes its k most cosine-similar training samples; neighbour j votes for its class with
weight ``exp(sim_j / T)`` (T = 0.07); the class scores give top-1 and top-5 accuracy.

    python -m dinov2.eval.knn --pretrained-weights CKPT --train-dataset ROOT/train --val-dataset ROOT/val \
        --output-dir OUT [--nb-knn 10 20] [--temperature 0.07]
"""

from __future__ import annotations

from dinov2.eval.arguments import build_parser
from dinov2.eval.runner import run_cli


def main(argv: list[str] | None = None) -> int:
    """Command line: the linear probe's checkpoint, data, label and run arguments, k-NN only."""
    args = build_parser("knn", __doc__).parse_args(argv)
    return run_cli(args, protocol="knn")


if __name__ == "__main__":
    raise SystemExit(main())
