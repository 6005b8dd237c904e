"""Denoising examples: one image per column, rows clean / noisy / denoised, PSNR (dB) under each noisy and
denoised panel; without ``--clean`` (your own noisy images, no clean copy), rows noisy / denoised.

    python Neighbor2Neighbor/plot_examples.py --clean CLEAN_ROOT --noisy NOISY_ROOT --denoised DENOISED_ROOT
        [--split val] [--images 8] [--out outputs/denoising_examples.png]
    python Neighbor2Neighbor/plot_examples.py --noisy MY_NOISY_TREE --denoised DENOISED_TREE [--images 8] ...

The roots are trees paired by relative path, extensions aside (copies are PNG files, TIFF for 16-bit and float
images). One image of each of the first ``--images`` classes is shown; of an unlabeled tree (or without --clean),
``--images`` images spread evenly over the noisy tree.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from utils.figures import pyplot, save_png
from utils.cli import EXIT_BAD_INPUT
from utils.dataset_index import TreeLike, is_labelled
from utils.image_io import ImageReadError, load_rgb
from utils.image_tree import ImageTree, open_tree, tree_argument
from utils.metrics import psnr
from utils.plot_noise_grid import pick_images

ROWS = ("clean", "noisy", "denoised")


def _copy_of(root: ImageTree, relpath: str, source: str) -> str:
    """The relative path of ``relpath``'s copy in ``root``: itself, or its PNG or TIFF copy."""
    stem = os.path.splitext(relpath)[0]
    candidates = [relpath] if root.on_the_fly else [relpath, f"{stem}.png", f"{stem}.tif"]
    for candidate in candidates:
        if root.path(candidate).is_file():
            return candidate
    named = root.path(candidates[0] if root.on_the_fly else f"{stem}.png")
    raise FileNotFoundError(f"{named} is missing{'' if root.on_the_fly else ' (or its .tif)'}: is {root} a copy of "
                            f"{source}?")


def plot_examples(clean_root: Path | None, noisy_root: TreeLike, denoised_root: TreeLike, relpaths: list[str],
                  out: Path) -> dict[str, list[float]]:
    """Draw the figure into ``out`` (PNG); ``relpaths`` are relative to the roots (``val/3/00012.png``): of the
    clean tree, or of the noisy one when ``clean_root`` is None (no PSNR then).

    Returns the PSNR of every noisy and denoised panel.
    """
    rows = ROWS if clean_root is not None else ROWS[1:]
    figure, axes = pyplot().subplots(len(rows), len(relpaths), figsize=(1.3 * len(relpaths), 1.5 * len(rows)),
                                     squeeze=False)
    psnrs: dict[str, list[float]] = {"noisy": [], "denoised": []}
    noisy_tree = open_tree(noisy_root)
    for col, rel in enumerate(relpaths):
        images = {}
        reference = None
        if clean_root is not None:
            images["clean"] = reference = load_rgb(clean_root / rel)
        else:
            rel = _copy_of(noisy_tree, rel, str(noisy_tree))
        for name, root in (("noisy", noisy_tree), ("denoised", open_tree(denoised_root))):
            copy = _copy_of(root, rel, str(clean_root or noisy_tree))
            images[name] = root.read(copy)
            if reference is None:
                reference = images[name]
            if images[name].shape[:2] != reference.shape[:2]:
                raise ValueError(f"{root.path(copy)} is {images[name].shape[:2]}, its source {reference.shape[:2]}")
            if clean_root is not None:
                psnrs[name].append(psnr(images["clean"], images[name]))
        for row, name in enumerate(rows):
            axis = axes[row][col]
            axis.imshow(images[name], interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if col == 0:
                axis.set_ylabel(name, fontsize=9)
            if name != "clean" and clean_root is not None:
                axis.set_xlabel(f"{psnrs[name][-1]:.1f} dB", fontsize=8)
    save_png(figure, out)
    return psnrs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clean", type=Path, default=None, help="clean tree (leave it out when there is none)")
    parser.add_argument("--noisy", type=tree_argument, required=True,
                        help="its noisy copy (stored, or noisy:SETTING:ROOT)")
    parser.add_argument("--denoised", type=tree_argument, required=True, help="the denoised copy of the noisy tree")
    parser.add_argument("--split", default="val")
    parser.add_argument("--images", type=int, default=8, help="columns: one image from each of the first N classes")
    parser.add_argument("--out", type=Path, default=Path("outputs/denoising_examples.png"))
    args = parser.parse_args(argv)
    try:
        source = args.clean if args.clean is not None else args.noisy
        if is_labelled(source, args.split):
            relpaths = pick_images(source, args.split, args.images)
        else:
            relpaths = spread_images(open_tree(source), args.images)
        psnrs = plot_examples(args.clean, args.noisy, args.denoised, relpaths, args.out)
    except (ValueError, OSError, ImageReadError) as error:  # bad trees; an unwritable output
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.clean is None:
        print(f"wrote {args.out} ({len(relpaths)} images)")
        return 0
    means = {name: sum(values) / len(values) for name, values in psnrs.items()}
    print(f"wrote {args.out} ({len(relpaths)} images; mean PSNR noisy {means['noisy']:.1f} dB, "
          f"denoised {means['denoised']:.1f} dB)")
    return 0


def spread_images(tree: ImageTree, count: int) -> list[str]:
    """``count`` images spread evenly over a tree's sorted images (of any layout)."""
    relpaths = list(tree.iter_relpaths())
    if not relpaths:
        raise ValueError(f"{tree} holds no image")
    step = max(1, len(relpaths) // max(count, 1))
    return relpaths[::step][:count]


if __name__ == "__main__":
    sys.exit(main())
