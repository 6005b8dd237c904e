"""Compare a clean tree with its noisy and denoised copies: mean PSNR of each, and of the best Gaussian blur.

    python Neighbor2Neighbor/evaluate_psnr.py --clean data/mnist5k/val --noisy NOISY/val --denoised DENOISED/val
        [--blur-sigmas 0.5 0.75 1 1.25 1.5 2] [--limit N] [--out result.json]
    python Neighbor2Neighbor/evaluate_psnr.py --clean data/mnist5k/val --noisy noisy:gauss100:data/mnist5k:val ...

Images are paired by relative path (extension aside). The blur baseline smooths each noisy image with a
Gaussian of every sigma in --blur-sigmas and reports the sigma with the highest mean PSNR against the clean
images: a reference that knows the clean data, which a useful denoiser should beat. PSNR is averaged over images.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter
from tqdm import tqdm

from utils.atomic import atomic_write_json, writable_folder
from utils.cli import EXIT_BAD_INPUT, add_quiet
from utils.image_io import ImageReadError, to_unit
from utils.dataset_index import TreeLike
from utils.image_tree import ImageTree, open_tree, tree_argument
from utils.metrics import psnr
from utils.noise import quantize_like

DEFAULT_BLUR_SIGMAS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 2.0, 2.5)


def _stem_index(root: ImageTree) -> dict[str, str]:
    return {str(Path(relpath).with_suffix("")): relpath for relpath in root.iter_relpaths()}


def paired_images(clean: ImageTree, other: ImageTree, limit: int | None = None) -> list[tuple[str, str]]:
    """(clean relpath, other relpath) for every clean image; raises ``ValueError`` naming missing copies."""
    for root in (clean, other):
        if not root.is_dir():
            raise FileNotFoundError(f"folder {root.folder} does not exist{root.missing_hint()}")
    others = _stem_index(other)
    pairs, missing = [], []
    for stem, relpath in list(_stem_index(clean).items())[:limit]:
        if stem in others:
            pairs.append((relpath, others[stem]))
        else:
            missing.append(relpath)
    if missing:
        raise ValueError(f"{len(missing)} image(s) of {clean} have no copy in {other}, e.g. {missing[:3]}")
    if not pairs:
        raise ValueError(f"folder {clean} holds no images")
    return pairs


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of an H x W x C image of any depth (per channel), rounded back to that depth."""
    smoothed = gaussian_filter(to_unit(image), sigma=(sigma, sigma, 0), mode="reflect")
    return quantize_like(smoothed, image.dtype, "round")


def evaluate(
    clean: TreeLike, noisy: TreeLike | None, denoised: TreeLike | None,
    blur_sigmas: tuple[float, ...] = DEFAULT_BLUR_SIGMAS,
    limit: int | None = None, progress: bool = True,
) -> dict[str, object]:
    """Mean PSNRs of the noisy copies, the denoised copies and the best blur of the noisy copies."""
    clean = open_tree(clean)
    noisy, denoised = (open_tree(t) if t is not None else None for t in (noisy, denoised))
    result: dict[str, object] = {"clean": str(clean)}
    if denoised is not None:
        pairs = paired_images(clean, denoised, limit)
        values = [psnr(clean.read_pixels(a), denoised.read_pixels(b))
                  for a, b in tqdm(pairs, desc="denoised", unit="img", disable=not progress, leave=False)]
        result.update(denoised=str(denoised), images=len(pairs), denoised_psnr=float(np.mean(values)))
    if noisy is not None:
        pairs = paired_images(clean, noisy, limit)
        noisy_values, blur_values = [], np.zeros((len(pairs), len(blur_sigmas)))
        for i, (a, b) in enumerate(tqdm(pairs, desc="noisy + blur", unit="img", disable=not progress, leave=False)):
            reference, image = clean.read_pixels(a), noisy.read_pixels(b)
            noisy_values.append(psnr(reference, image))
            blur_values[i] = [psnr(reference, blur(image, sigma)) for sigma in blur_sigmas]
        per_sigma = blur_values.mean(axis=0)
        best = int(per_sigma.argmax())
        result.update(noisy=str(noisy), images=len(pairs), noisy_psnr=float(np.mean(noisy_values)),
                      best_blur_psnr=float(per_sigma[best]), best_blur_sigma=float(blur_sigmas[best]),
                      blur_psnr_by_sigma={f"{s:g}": float(v) for s, v in zip(blur_sigmas, per_sigma)})
    return result


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: prints the PSNRs and optionally writes them as JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clean", type=tree_argument, required=True, help="clean images")
    parser.add_argument("--noisy", type=tree_argument, default=None,
                        help="noisy copies, stored or noisy:SETTING:ROOT[:SUB] (also used for the blur baseline)")
    parser.add_argument("--denoised", type=tree_argument, default=None, help="denoised copies")
    parser.add_argument("--blur-sigmas", type=float, nargs="+", default=list(DEFAULT_BLUR_SIGMAS))
    parser.add_argument("--limit", type=int, default=None, help="only the first N clean images")
    parser.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    add_quiet(parser)
    args = parser.parse_args(argv)
    if args.noisy is None and args.denoised is None:
        parser.error("give --noisy, --denoised or both")
    if min(args.blur_sigmas) <= 0:
        parser.error(f"--blur-sigmas must be positive, got {args.blur_sigmas}")
    try:
        if args.out is not None:
            writable_folder(args.out.parent)
        result = evaluate(args.clean, args.noisy, args.denoised, tuple(args.blur_sigmas), args.limit, not args.quiet)
        for key in ("noisy_psnr", "best_blur_psnr", "denoised_psnr"):
            if key in result:
                extra = f" (sigma {result['best_blur_sigma']:g})" if key == "best_blur_psnr" else ""
                print(f"{key:<15} {result[key]:.2f} dB{extra}")
        if args.out is not None:
            atomic_write_json(args.out, result)
    except (ValueError, OSError, ImageReadError) as error:  # bad input; an unwritable or full output folder
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
