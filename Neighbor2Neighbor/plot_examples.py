"""Denoising examples: one image per column, rows clean / noisy / denoised, PSNR (dB) under each noisy and
denoised panel.

    python Neighbor2Neighbor/plot_examples.py --clean CLEAN_ROOT --noisy NOISY_ROOT --denoised DENOISED_ROOT
        [--split val] [--images 8] [--out outputs/denoising_examples.png]

The three roots are ImageFolder trees paired by relative path (noisy and denoised images are PNG files at the
clean image's path with a ``.png`` suffix). One image of each of the first ``--images`` classes is shown.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.figures import pyplot, save_png
from utils.cli import EXIT_BAD_INPUT
from utils.dataset_index import TreeLike
from utils.image_io import ImageReadError, load_rgb, png_relpath
from utils.image_tree import open_tree, tree_argument
from utils.metrics import psnr
from utils.plot_noise_grid import pick_images

ROWS = ("clean", "noisy", "denoised")


def plot_examples(clean_root: Path, noisy_root: TreeLike, denoised_root: TreeLike, relpaths: list[str],
                  out: Path) -> dict[str, list[float]]:
    """Draw the figure into ``out`` (PNG); ``relpaths`` are relative to the roots (``val/3/00012.png``).

    Returns the PSNR of every noisy and denoised panel.
    """
    figure, axes = pyplot().subplots(len(ROWS), len(relpaths), figsize=(1.3 * len(relpaths), 1.5 * len(ROWS)),
                                squeeze=False)
    psnrs: dict[str, list[float]] = {"noisy": [], "denoised": []}
    for col, rel in enumerate(relpaths):
        clean = load_rgb(clean_root / rel)
        images = {"clean": clean}
        for name, root in (("noisy", open_tree(noisy_root)), ("denoised", open_tree(denoised_root))):
            copy = rel if root.on_the_fly else png_relpath(rel)  # stored copies are PNG files
            path = root.path(copy)
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: is {root} the {name} copy of {clean_root}?")
            images[name] = root.read(copy)
            if images[name].shape != clean.shape:
                raise ValueError(f"{path} is {images[name].shape[:2]}, its clean image {clean.shape[:2]}")
            psnrs[name].append(psnr(clean, images[name]))
        for row, name in enumerate(ROWS):
            axis = axes[row][col]
            axis.imshow(images[name], interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if col == 0:
                axis.set_ylabel(name, fontsize=9)
            if name != "clean":
                axis.set_xlabel(f"{psnrs[name][-1]:.1f} dB", fontsize=8)
    save_png(figure, out)
    return psnrs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clean", type=Path, required=True, help="clean ImageFolder tree")
    parser.add_argument("--noisy", type=tree_argument, required=True,
                        help="its noisy copy (stored, or noisy:SETTING:ROOT)")
    parser.add_argument("--denoised", type=tree_argument, required=True, help="the denoised copy of the noisy tree")
    parser.add_argument("--split", default="val")
    parser.add_argument("--images", type=int, default=8, help="columns: one image from each of the first N classes")
    parser.add_argument("--out", type=Path, default=Path("outputs/denoising_examples.png"))
    args = parser.parse_args(argv)
    try:
        relpaths = pick_images(args.clean, args.split, args.images)
        psnrs = plot_examples(args.clean, args.noisy, args.denoised, relpaths, args.out)
    except (ValueError, FileNotFoundError, ImageReadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    means = {name: sum(values) / len(values) for name, values in psnrs.items()}
    print(f"wrote {args.out} ({len(relpaths)} images; mean PSNR noisy {means['noisy']:.1f} dB, "
          f"denoised {means['denoised']:.1f} dB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
