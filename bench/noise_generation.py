"""Benchmark: images per second of utils/generate_noise.py against the paper's way of making noisy copies.

    python bench/noise_generation.py [--images 48] [--settings gauss100 shot3] [--num-workers 2]

The baseline does what the paper's script does: one process, images in sequence, one NumPy generator per
setting consumed in order, float64 arithmetic, PNG at PIL's default compression. Both run on the same JPEG
photographs (scikit-image's samples, cropped to ImageNet-like sizes) in this process; the script prints both
rates, their ratio, and the mean PSNR of both outputs against the clean images (the noise statistics must agree).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from utils.cli import add_num_workers
from utils.generate_noise import generate_noise
from utils.image_io import iter_image_files, load_rgb, png_relpath
from utils.metrics import psnr
from utils.noise import parse_noise

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina", "hubble_deep_field")


def make_photo_tree(root: Path, count: int, seed: int = 0) -> None:
    """Write ``count`` JPEG crops (about 375 x 500, like ImageNet) of scikit-image's sample photographs."""
    from skimage import data

    rng = np.random.default_rng(seed)
    photos = [np.asarray(Image.fromarray(getattr(data, name)()).convert("RGB")) for name in PHOTOS]
    for i in range(count):
        photo = photos[i % len(photos)]
        h, w = min(375, photo.shape[0]), min(500, photo.shape[1])
        top, left = rng.integers(0, photo.shape[0] - h + 1), rng.integers(0, photo.shape[1] - w + 1)
        path = root / "train" / f"c{i % 4}" / f"img_{i:04d}.JPEG"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo[top:top + h, left:left + w]).save(path, quality=90)


def paper_baseline(src: Path, settings: list[str], out_prefix: Path) -> None:
    """Sequential generation as the paper's script does it (fixed: each setting gets its own folder)."""
    for setting in settings:
        spec = parse_noise(setting)
        rng = np.random.default_rng(42)
        for rel in iter_image_files(src):
            x = np.asarray(Image.open(src / rel).convert("RGB")) / 255.0
            if spec.family == "gauss":
                y = x + rng.normal(0, spec.level / 255.0, x.shape)
            elif spec.family == "shot":
                y = rng.poisson(spec.level * x) / spec.level
            else:
                y = x + x * rng.normal(0, spec.level, x.shape)
            out = Path(f"{out_prefix}-{setting}") / png_relpath(rel)
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray((np.clip(y, 0, 1) * 255).astype(np.uint8)).save(out)


def mean_psnr(src: Path, noisy_root: Path) -> float:
    return float(np.mean([psnr(load_rgb(src / rel), load_rgb(noisy_root / png_relpath(rel)))
                          for rel in iter_image_files(src)]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--settings", nargs="+", default=["gauss100", "shot3"])
    add_num_workers(parser, 2, "processes of generate_noise.py (default %(default)s)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_photo_tree(tmp / "src", args.images)
        total = args.images * len(args.settings)
        start = time.perf_counter()
        paper_baseline(tmp / "src", args.settings, tmp / "baseline")
        baseline_seconds = time.perf_counter() - start
        start = time.perf_counter()
        generate_noise(tmp / "src", args.settings, tmp / "ours", workers=args.num_workers, progress=False)
        ours_seconds = time.perf_counter() - start
        print(f"{total} images ({args.images} photographs x {len(args.settings)} settings), {args.num_workers} workers")
        print(f"baseline (paper's script): {total / baseline_seconds:8.1f} images/s")
        print(f"generate_noise.py:         {total / ours_seconds:8.1f} images/s")
        print(f"speed-up: {baseline_seconds / ours_seconds:.2f}x")
        for setting in args.settings:
            base = mean_psnr(tmp / "src", Path(f"{tmp / 'baseline'}-{setting}"))
            ours = mean_psnr(tmp / "src", Path(f"{tmp / 'ours'}-{setting}"))
            print(f"{setting}: mean PSNR baseline {base:.3f} dB, ours {ours:.3f} dB (difference {ours - base:+.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
