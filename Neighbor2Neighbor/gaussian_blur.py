"""A Gaussian blur as the curriculum's denoiser, its sigma chosen from the noisy images alone.

    python -m Neighbor2Neighbor.gaussian_blur --data-dir NOISY_ROOT/train --output-dir OUT
        [--images 64 --sigmas 0.3 0.5 ... --seed 0]

How sigma is chosen without clean images (Noise2Self, Batson & Royer 2019, through scikit-image's
``calibrate_denoiser``): the blur is made J-invariant by predicting each pixel from a copy of the image in which
that pixel (one of every 4x4 grid) is replaced by its neighbours' mean. Such a prediction's error is independent
of the pixel's own noise, so its mean squared difference from the *noisy* image is its error on the clean image
plus the noise variance, a constant: the sigma that minimises it over ``--images`` seeded training images is the
one kept. OUT receives ``last.pt`` (read by ``denoise.py --weights`` like a trained U-Net) and
``calibration.json`` (every sigma's self-supervised loss); a rerun with the same options does nothing.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F
from skimage.restoration import calibrate_denoiser
from torch import nn
from tqdm import tqdm

from utils.atomic import atomic_torch_save, atomic_write_json
from utils.cli import EXIT_BAD_INPUT, add_output_dir, add_quiet
from utils.image_io import ImageReadError, to_unit
from utils.image_tree import ImageTree, tree_argument
from utils.seeding import numpy_generator

ARCH = "gaussian_blur"
TRUNCATE = 4.0  # kernel radius in sigmas, as scipy.ndimage.gaussian_filter
DEFAULT_SIGMAS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.2, 1.5, 2.0, 2.5, 3.0)
CALIBRATION = "calibration.json"


class GaussianBlur(nn.Module):
    """Blur each channel with a Gaussian of ``sigma`` pixels (edges replicated, as scikit-image's default)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, sigma: float = 1.0) -> None:
        super().__init__()
        if in_channels != out_channels or not sigma > 0:
            raise ValueError(f"a blur keeps the channels and needs sigma > 0: got {in_channels} -> "
                             f"{out_channels}, sigma {sigma}")
        self.in_channels = self.out_channels = in_channels
        radius = max(1, int(TRUNCATE * sigma + 0.5))  # scipy.ndimage.gaussian_filter's radius
        offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
        kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
        self.register_buffer("sigma", torch.tensor(float(sigma)))  # in the state dict, so in the weights' digest
        self.register_buffer("kernel", (kernel / kernel.sum()).float())

    def config(self) -> dict[str, int | float | str]:
        """What is needed to rebuild the blur (``weights.load_denoiser``)."""
        return {"arch": ARCH, "in_channels": self.in_channels, "out_channels": self.out_channels,
                "sigma": float(self.sigma)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels, radius = x.shape[1], self.kernel.numel() // 2
        kernel = self.kernel.to(x.dtype)
        x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
        x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
        return F.conv2d(x, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def blur_image(image: np.ndarray, sigma: float, channel_axis: int = -1) -> np.ndarray:
    """:class:`GaussianBlur` on one H x W x C float image (the signature scikit-image's calibration calls)."""
    x = torch.from_numpy(np.moveaxis(image, channel_axis, -1).astype(np.float32)).permute(2, 0, 1)[None]
    with torch.no_grad():
        out = GaussianBlur(x.shape[1], x.shape[1], sigma)(x)
    return np.moveaxis(out[0].permute(1, 2, 0).numpy(), -1, channel_axis)


def self_supervised_losses(images: list[np.ndarray], sigmas: list[float], progress: bool = False) -> list[float]:
    """Each sigma's J-invariant self-supervised loss (mean squared difference from the noisy image), averaged
    over ``images`` (H x W x C floats in [0, 1])."""
    totals = np.zeros(len(sigmas))
    for image in tqdm(images, desc="calibrating", unit="img", disable=not progress, leave=False):
        _, (tested, losses) = calibrate_denoiser(
            image, blur_image, {"sigma": list(sigmas), "channel_axis": [-1]}, approximate_loss=False,
            extra_output=True)
        by_sigma = {params["sigma"]: loss for params, loss in zip(tested, losses)}
        totals += [by_sigma[sigma] for sigma in sigmas]
    return (totals / len(images)).tolist()


def calibration_images(root: ImageTree, count: int, seed: int) -> list[np.ndarray]:
    """``count`` seeded images of ``root`` (all of them when it holds fewer), as floats in [0, 1]."""
    relpaths = sorted(root.iter_relpaths())
    if not relpaths:
        raise ValueError(f"--data-dir {root} holds no images")
    chosen = numpy_generator("blur-calibration", seed).permutation(len(relpaths))[:count]
    return [to_unit(root.read_pixels(relpaths[i])).astype(np.float32) for i in sorted(chosen)]


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(prog="python -m Neighbor2Neighbor.gaussian_blur", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=tree_argument, required=True,
                        help="noisy images (recursive), stored or noisy:SETTING:ROOT[:SUB]; never clean ones")
    add_output_dir(parser, "where last.pt and calibration.json are written")
    parser.add_argument("--images", type=int, default=64, help="seeded images the sigma is chosen on")
    parser.add_argument("--sigmas", type=float, nargs="+", default=list(DEFAULT_SIGMAS), help="candidate sigmas")
    parser.add_argument("--seed", type=int, default=0, help="seed of the images' draw")
    add_quiet(parser)
    return parser


def calibration_settings(args: argparse.Namespace) -> dict:
    """The options that decide the chosen sigma (a rerun with the same ones does nothing)."""
    return {"data_dir": str(args.data_dir), "images": args.images, "sigmas": list(args.sigmas), "seed": args.seed}


def calibrate(args: argparse.Namespace) -> dict:
    """Choose sigma, write OUT/last.pt and OUT/calibration.json; returns the calibration record."""
    settings = calibration_settings(args)
    images = calibration_images(args.data_dir, args.images, args.seed)
    losses = self_supervised_losses(images, list(args.sigmas), progress=not args.quiet)
    sigma = args.sigmas[int(np.argmin(losses))]
    blur = GaussianBlur(images[0].shape[-1], images[0].shape[-1], sigma)
    record = {**settings, "sigma": sigma, "self_supervised_loss": losses, "images_used": len(images)}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    atomic_torch_save({"model": blur.state_dict(), "model_config": blur.config(), "calibration": record},
                      args.output_dir / "last.pt")
    atomic_write_json(args.output_dir / CALIBRATION, record)  # written last: its presence means done
    return record


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: exit status 2 for bad input (named on stderr)."""
    args = build_parser().parse_args(argv)
    try:
        if args.images < 1 or min(args.sigmas) <= 0:
            raise ValueError("--images must be positive and every --sigmas value above 0")
        done = args.output_dir / CALIBRATION
        if done.is_file() and (args.output_dir / "last.pt").is_file():
            record = json.loads(done.read_text())
            if all(record.get(key) == value for key, value in calibration_settings(args).items()):
                print(f"{done}: sigma {record['sigma']} already chosen")
                return 0
        record = calibrate(args)
    except (ValueError, OSError, ImageReadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"{args.output_dir}: sigma {record['sigma']} (self-supervised loss "
          f"{min(record['self_supervised_loss']):.6f} over {record['images_used']} images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
