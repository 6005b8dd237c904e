"""The paper's noise-grid figure: one image per row, the clean image then each noise setting, PSNR under each.

    python utils/plot_noise_grid.py --src ROOT [--noise all] [--images 4] [--split val] [--seed 42]
                                    [--out outputs/noise_grid.png]

The noisy images are computed with the same pure function as ``generate_noise.py`` (same seed and relative
path), so the figure shows exactly the images stored in the noisy trees.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from utils.cli import EXIT_BAD_INPUT
from utils.dataset_index import load_split
from utils.figures import pyplot, save_png
from utils.image_io import load_rgb
from utils.metrics import psnr
from utils.noise import expand_noise_settings, noisy_image


def pick_images(root: Path, split: str, count: int) -> list[str]:
    """The first image of each of the first ``count`` classes (one class per row), as relative paths."""
    index = load_split(root, split)
    first_of_class: dict[int, str] = {}
    for rel, label in index.samples:
        first_of_class.setdefault(label, rel)
    return [first_of_class[label] for label in sorted(first_of_class)][:count]


def plot_noise_grid(root: Path, settings: list[str], relpaths: list[str], out: Path, seed: int = 42,
                    quantization: str = "truncate") -> dict[str, list[float]]:
    """Draw the grid into ``out`` (PNG) and return the PSNR of every noisy panel, per setting."""
    specs = expand_noise_settings(settings)
    rows, cols = len(relpaths), len(specs) + 1
    figure, axes = pyplot().subplots(rows, cols, figsize=(1.6 * cols, 1.75 * rows), squeeze=False)
    psnrs: dict[str, list[float]] = {spec.name: [] for spec in specs}
    for row, rel in enumerate(relpaths):
        clean = load_rgb(root / rel)
        panels = [("clean", clean, None)]
        for spec in specs:
            noisy = noisy_image(clean, spec, seed, rel, quantization)
            psnrs[spec.name].append(psnr(clean, noisy))
            panels.append((spec.name, noisy, psnrs[spec.name][-1]))
        for col, (title, image, value) in enumerate(panels):
            axis = axes[row][col]
            axis.imshow(image, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(title, fontsize=9)
            axis.set_xlabel("" if value is None else f"{value:.1f} dB", fontsize=8)
    save_png(figure, out)
    return psnrs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, required=True, help="clean ImageFolder tree")
    parser.add_argument("--noise", nargs="+", default=["all"], help="settings (default: the paper's nine)")
    parser.add_argument("--images", type=int, default=4, help="rows: one image from each of the first N classes")
    parser.add_argument("--split", default="val")
    parser.add_argument("--seed", type=int, default=42, help="the seed given to generate_noise.py")
    parser.add_argument("--out", type=Path, default=Path("outputs/noise_grid.png"))
    args = parser.parse_args(argv)
    try:
        relpaths = pick_images(args.src, args.split, args.images)
        psnrs = plot_noise_grid(args.src, args.noise, relpaths, args.out, args.seed)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    means = ", ".join(f"{s} {sum(v) / len(v):.1f} dB" for s, v in psnrs.items())
    print(f"wrote {args.out} ({len(relpaths)} images; mean PSNR: {means})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
