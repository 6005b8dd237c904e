"""Build the data of the own-data demo from what installed packages ship: scientific images as 16-bit, one channel.

    python utils/make_demo_data.py [--output-dir data/own_data_demo] [--tile 32] [--digits-per-class 125]
                                   [--tiles-per-image N]

Writes two clean trees (the demo noises them, as a user's data would come noisy):

* ``OUT/tiles/<image>/<row>_<col>.tif``: an unlabeled tree of TILE x TILE tiles of scikit-image's scientific
  images (``hubble_deep_field``, ``retina``, ``moon``, ``cell``, ``immunohistochemistry``, ``microaneurysms``,
  ``coins``), halved in size so that structures span a tile;
* ``OUT/digits16/{train,val}/<digit>/<index>.png``: a labelled tree of the embedded MNIST digits (the first
  DIGITS_PER_CLASS of each class, 20 % in val), padded to 32 x 32.

The sources are 8-bit; each becomes grey float, is blurred (sigma 0.7 px, which spreads its 256 levels over the
whole range in between) and is stored on 65535 levels, so the trees hold genuinely 16-bit images. Reruns skip
finished files; every file is written atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from utils.atomic import atomic_write_text
from utils.cli import add_output_dir, add_quiet, fail
from utils.embedded_mnist import DIGIT_NAMES, DIGITS_PER_CLASS, load_mnist5k, pad_to, stratified_split
from utils.image_io import save_pixels_atomic

DEFAULT_OUT = Path("data/own_data_demo")
SCIENTIFIC_IMAGES = {  # name: scale before tiling
    "hubble_deep_field": 0.5, "retina": 0.5, "moon": 0.5, "cell": 0.5, "immunohistochemistry": 0.5,
    "microaneurysms": 1.0, "coins": 0.5,
}
BLUR_SIGMA = 0.7


def to_sixteen_bit(image: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """An 8-bit image (grey or RGB) as a blurred, rescaled uint16 grey image H x W x 1."""
    from skimage.color import rgb2gray
    from skimage.filters import gaussian
    from skimage.transform import rescale

    grey = rgb2gray(image) if image.ndim == 3 else image.astype(np.float64) / 255.0
    if scale != 1.0:
        grey = rescale(grey, scale, anti_aliasing=True)
    grey = gaussian(grey, sigma=BLUR_SIGMA)
    return np.rint(np.clip(grey, 0.0, 1.0) * 65535.0).astype(np.uint16)[:, :, None]


def build_tiles(out: Path, tile: int, per_image: int | None = None, progress: bool = True) -> int:
    """Write the unlabeled tile tree (at most ``per_image`` tiles of each image, spread over it); returns the
    number of tiles."""
    import skimage.data

    count = 0
    for name, scale in tqdm(SCIENTIFIC_IMAGES.items(), desc="tiles", unit="image", disable=not progress):
        image = to_sixteen_bit(getattr(skimage.data, name)(), scale)
        rows, cols = image.shape[0] // tile, image.shape[1] // tile
        cells = [(row, col) for row in range(rows) for col in range(cols)]
        if per_image is not None:
            cells = cells[::max(1, len(cells) // per_image)][:per_image]
        for row, col in cells:
            path = out / name / f"{row:02d}_{col:02d}.tif"
            if not path.exists():
                save_pixels_atomic(image[row * tile:(row + 1) * tile, col * tile:(col + 1) * tile], path)
            count += 1
    return count


def build_digits(out: Path, per_class: int, progress: bool = True) -> dict[str, int]:
    """Write the labelled 16-bit digit tree; returns the images per split."""
    images, labels = load_mnist5k()
    keep = np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)]))
    images, labels = pad_to(images[keep], 32), labels[keep]
    train, val = stratified_split(labels, 0.2, seed=0)
    atomic_write_text(out / "labels.txt", "".join(f"{d},{DIGIT_NAMES[d]}\n" for d in range(10)))
    for split, indices in (("train", train), ("val", val)):
        for i in tqdm(indices, desc=f"digits {split}", unit="img", disable=not progress, leave=False):
            path = out / split / str(labels[i]) / f"{i:05d}.png"
            if not path.exists():
                save_pixels_atomic(to_sixteen_bit(images[i]), path)  # a 16-bit PNG, as many instruments write
    return {"train": len(train), "val": len(val)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_output_dir(parser, "where the two trees go (default: %(default)s)", "--out", required=False,
                   default=DEFAULT_OUT)
    parser.add_argument("--tile", type=int, default=32, help="tile side in pixels (default %(default)s)")
    parser.add_argument("--digits-per-class", type=int, default=125,
                        help="digits of each class (default %(default)s)")
    parser.add_argument("--tiles-per-image", type=int, default=None,
                        help="at most N tiles of each image (default: all)")
    add_quiet(parser)
    args = parser.parse_args(argv)
    if args.tile < 8:
        parser.error(f"--tile must be at least 8, got {args.tile}")
    if args.tiles_per_image is not None and args.tiles_per_image < 1:
        parser.error(f"--tiles-per-image must be at least 1, got {args.tiles_per_image}")
    if not 5 <= args.digits_per_class <= DIGITS_PER_CLASS:
        parser.error(f"--digits-per-class must lie in [5, {DIGITS_PER_CLASS}], got {args.digits_per_class}")
    try:
        tiles = build_tiles(args.output_dir / "tiles", args.tile, args.tiles_per_image, not args.quiet)
        digits = build_digits(args.output_dir / "digits16", args.digits_per_class, not args.quiet)
    except OSError as error:  # an unwritable or full output folder
        fail(str(error))
    print(f"{args.output_dir}: {tiles} unlabeled 16-bit tiles; digits16 {digits['train']} train / {digits['val']} "
          "val 16-bit images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
