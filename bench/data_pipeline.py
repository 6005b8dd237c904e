"""Benchmark: DINOv2 multi-crop loading per core, from a stored noisy PNG copy vs the clean JPEG noised on the fly.

    python bench/data_pipeline.py [--images 48] [--settings gauss100 shot3] [--config imagenet100_vits16.yaml]

Makes ImageNet-sized JPEGs (scikit-image's photographs cropped to about 375 x 500, as bench/noise_generation.py),
writes their stored noisy copy with utils/generate_noise.py, then times, in one process on one core (no loader
workers, one torch thread), the training dataset of the ImageNet-100 recipe (2 x 224 + 8 x 96 crops, the recipe's
augmentations, per-sample seeds) reading (a) the stored PNG copy and (b) ``noisy:SETTING:ROOT``. Each rate is
the best of --repeats passes. It prints images/s per core, the ratio b / a, the decode-only rates, and the cores
per GPU that the paper's 263 images/s (ViT-S/16 on one GPU) would need, and the bytes read per image (what the
storage must deliver at that rate); the two readers' pixels are checked equal. Files sit in the page cache here,
so storage bandwidth, which favours the smaller JPEGs, is not part of the timed rates.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from bench.noise_generation import make_photo_tree
from dinov2.data import ImageFolderDataset
from dinov2.train.data_setup import build_transform
from dinov2.utils.config import CONFIGS_DIR, load_config
from utils.dataset_index import load_split
from utils.generate_noise import generate_noise, output_root

PAPER_IMAGES_PER_S = 263.0  # the paper's ViT-S/16 ImageNet-100 training throughput on one GPU


def best_rate(count: int, work: Callable[[int], object], repeats: int) -> float:
    """Images per second of ``work(i)`` for i in range(count), the best of ``repeats`` passes."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(count):
            work(i)
        best = min(best, time.perf_counter() - start)
    return count / best


def measure(tree: str | Path, transform, repeats: int) -> tuple[float, float]:
    """(multi-crop items per s, decodes per s) of the train split of ``tree`` in this process."""
    dataset = ImageFolderDataset(tree, "train", transform=transform)
    crops = best_rate(len(dataset), lambda i: dataset[(i, 1000 + i)], repeats)
    decodes = best_rate(len(dataset), dataset.index.read_pil, repeats)
    return crops, decodes


def mean_file_kib(tree: Path) -> float:
    """Mean size of the image files of ``tree``'s train split, in KiB."""
    split = load_split(tree, "train")
    return float(np.mean([split.path(i).stat().st_size for i in range(len(split))])) / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--settings", nargs="+", default=["gauss100", "shot3"])
    parser.add_argument("--config", default="imagenet100_vits16.yaml", help="recipe in dinov2/configs/train")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    transform = build_transform(load_config(CONFIGS_DIR / "train" / args.config))
    print(f"{args.images} JPEGs of about 375 x 500, crops {transform.global_crops_size} x 2 + "
          f"{transform.local_crops_size} x {transform.local_crops_number}, one process, one torch thread")
    with tempfile.TemporaryDirectory() as tmp:
        clean = Path(tmp) / "clean"
        make_photo_tree(clean, args.images)
        generate_noise(clean, args.settings, Path(tmp) / "noisy", workers=0, progress=False)
        clean_crops, clean_decodes = measure(clean, transform, args.repeats)
        print(f"{'source':<32} {'crops img/s':>12} {'decode img/s':>13} {'cores/GPU @263':>15} {'KiB/img':>8}")
        print(f"{'clean JPEG (no noise)':<32} {clean_crops:>12.1f} {clean_decodes:>13.1f} "
              f"{PAPER_IMAGES_PER_S / clean_crops:>15.1f} {mean_file_kib(clean):>8.0f}")
        for setting in args.settings:
            stored, spelled = output_root(Path(tmp) / "noisy", setting), f"noisy:{setting}:{clean}"
            a, b = load_split(stored, "train"), load_split(spelled, "train")
            assert all(np.array_equal(np.asarray(a.read_pil(i)), np.asarray(b.read_pil(i))) for i in range(len(a)))
            rates = {name: measure(tree, transform, args.repeats) for name, tree in (("stored", stored),
                                                                                     ("on the fly", spelled))}
            for name, (crops, decodes) in rates.items():
                label = f"{setting} {'stored PNG' if name == 'stored' else 'JPEG + noise on the fly'}"
                kib = mean_file_kib(stored if name == "stored" else clean)
                print(f"{label:<32} {crops:>12.1f} {decodes:>13.1f} {PAPER_IMAGES_PER_S / crops:>15.1f} {kib:>8.0f}")
            ratio = rates["on the fly"][0] / rates["stored"][0]
            print(f"{setting}: on the fly / stored = {ratio:.2f}x (multi-crop items), "
                  f"{rates['on the fly'][1] / rates['stored'][1]:.2f}x (decode only); pixels identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
