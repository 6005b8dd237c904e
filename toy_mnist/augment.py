"""The toy views' geometric augmentation, batched on tensors.

Same distribution of transforms as torchvision's
``RandomResizedCrop(28, scale=(0.8, 1.0))`` followed by
``RandomAffine(15, translate=(0.1, 0.1), scale=(0.95, 1.05), shear=10)`` applied image by image:

* crop: up to 10 tries of area fraction U(0.8, 1) and log-uniform aspect ratio in [3/4, 4/3], side lengths
  rounded to integers, integer offsets uniform over the valid positions, falling back to the whole image; the crop
  is resized back with bilinear interpolation (half-pixel centres, edge pixels clamped to the crop);
* affine: angle U(-15, 15) degrees, integer translation round(U(-2.8, 2.8)) pixels per axis, scale
  U(0.95, 1.05), x-shear U(-10, 10) degrees, about the image centre, nearest-neighbour sampling, zero fill.

Each image of the batch draws its own parameters; the parameters come from a CPU generator, so a given seed gives
the same transforms on every device. Sampling everything with two ``grid_sample`` calls per batch instead of a
Python loop over images is what makes CPU runs fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

CROP_SCALE = (0.8, 1.0)
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
CROP_ATTEMPTS = 10
AFFINE_DEGREES = 15.0
AFFINE_TRANSLATE = 0.1
AFFINE_SCALE = (0.95, 1.05)
AFFINE_SHEAR = 10.0


@dataclass
class CropParams:
    """Per-image crop boxes in pixels: top, left, height, width (each a [B] tensor)."""

    top: torch.Tensor
    left: torch.Tensor
    height: torch.Tensor
    width: torch.Tensor


@dataclass
class AffineParams:
    """Per-image affine parameters: angle and x-shear in degrees, translation in pixels, scale."""

    angle: torch.Tensor
    translate_x: torch.Tensor
    translate_y: torch.Tensor
    scale: torch.Tensor
    shear_x: torch.Tensor


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)


def sample_crop_params(n: int, size: int, generator: torch.Generator | None = None) -> CropParams:
    """Draw ``n`` RandomResizedCrop boxes for ``size x size`` images."""
    area = float(size * size)
    target_area = area * _uniform(n * CROP_ATTEMPTS, *CROP_SCALE, generator).view(n, CROP_ATTEMPTS)
    log_ratio = _uniform(n * CROP_ATTEMPTS, math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]), generator)
    aspect = torch.exp(log_ratio).view(n, CROP_ATTEMPTS)
    width = torch.round(torch.sqrt(target_area * aspect)).long()
    height = torch.round(torch.sqrt(target_area / aspect)).long()
    valid = (width > 0) & (width <= size) & (height > 0) & (height <= size)
    # The first valid attempt wins; rows without one fall back to the whole image (aspect 1 lies inside the range).
    first = torch.where(valid.any(dim=1), valid.long().argmax(dim=1), torch.full((n,), -1))
    rows = torch.arange(n)
    fallback = first < 0
    width = torch.where(fallback, size, width[rows, first.clamp(min=0)])
    height = torch.where(fallback, size, height[rows, first.clamp(min=0)])
    top = (torch.rand(n, generator=generator, dtype=torch.float64) * (size - height + 1)).floor().long()
    left = (torch.rand(n, generator=generator, dtype=torch.float64) * (size - width + 1)).floor().long()
    return CropParams(top, left, height, width)


def sample_affine_params(n: int, size: int, generator: torch.Generator | None = None) -> AffineParams:
    """Draw ``n`` RandomAffine parameter sets for ``size x size`` images."""
    max_shift = AFFINE_TRANSLATE * size
    angle = _uniform(n, -AFFINE_DEGREES, AFFINE_DEGREES, generator)
    translate_x = torch.round(_uniform(n, -max_shift, max_shift, generator))
    translate_y = torch.round(_uniform(n, -max_shift, max_shift, generator))
    scale = _uniform(n, *AFFINE_SCALE, generator)
    shear_x = _uniform(n, -AFFINE_SHEAR, AFFINE_SHEAR, generator)
    return AffineParams(angle, translate_x, translate_y, scale, shear_x)


def _pixel_centres(size: int, device: torch.device) -> torch.Tensor:
    return torch.arange(size, dtype=torch.float32, device=device) + 0.5


def _column(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    """[B] parameters as a float32 [B, 1] column on ``device`` (broadcasts against per-pixel rows)."""
    return values.to(device=device, dtype=torch.float32)[:, None]


def resized_crop(images: torch.Tensor, params: CropParams) -> torch.Tensor:
    """Crop each image [B, C, S, S] to its box and resize it back to S x S (bilinear, like ``resized_crop``)."""
    batch, _, size, _ = images.shape
    device = images.device
    centres = _pixel_centres(size, device)[None, :]
    width, height = _column(params.width, device), _column(params.height, device)
    # Output pixel u reads the crop at (u + 0.5) * crop / S - 0.5, clamped inside the crop as resize does.
    x = torch.minimum((centres * width / size - 0.5).clamp(min=0.0), width - 1) + _column(params.left, device)
    y = torch.minimum((centres * height / size - 0.5).clamp(min=0.0), height - 1) + _column(params.top, device)
    # grid_sample's coordinates (align_corners=False): pixel k spans [-1 + 2k/S, -1 + 2(k+1)/S].
    grid_x = ((2.0 * x + 1.0) / size - 1.0)[:, None, :].expand(batch, size, size)
    grid_y = ((2.0 * y + 1.0) / size - 1.0)[:, :, None].expand(batch, size, size)
    grid = torch.stack([grid_x, grid_y], dim=-1).to(images.dtype)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def inverse_affine_matrices(params: AffineParams) -> torch.Tensor:
    """[B, 2, 3] maps from output to input pixel coordinates, both relative to the image centre.

    The forward map is p -> scale * R(angle) @ Shear(shear_x) @ p + t with Shear = [[1, -tan], [0, 1]] (in image
    coordinates, y pointing down), the convention of torchvision's ``affine``.
    """
    angle, shear = torch.deg2rad(params.angle), torch.deg2rad(params.shear_x)
    cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
    # R @ Shear = [[a, b], [c, d]] has determinant 1, so its inverse is [[d, -b], [-c, a]].
    a, b = cos, -cos * tan - sin
    c, d = sin, -sin * tan + cos
    linear = torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2) / params.scale[:, None, None]
    shift = torch.stack([params.translate_x, params.translate_y], -1)
    offset = -(linear @ shift[:, :, None])
    return torch.cat([linear, offset], dim=-1)


def affine(images: torch.Tensor, params: AffineParams) -> torch.Tensor:
    """Apply each image's affine transform about the centre (nearest neighbour, zeros outside)."""
    batch, channels, size, _ = images.shape
    # grid_sample's [-1, 1] coordinates are pixel offsets from the centre divided by size / 2, so only the
    # translation column needs rescaling.
    theta = inverse_affine_matrices(params)
    theta[:, :, 2] /= size / 2.0
    theta = theta.to(device=images.device, dtype=images.dtype)
    grid = F.affine_grid(theta, [batch, channels, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def augment_batch(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """RandomResizedCrop then RandomAffine, with independent parameters per image of [B, C, S, S]."""
    if images.dim() != 4 or images.shape[-1] != images.shape[-2]:
        raise ValueError(f"augment_batch expects square images [B, C, S, S], got {tuple(images.shape)}")
    batch, size = images.shape[0], images.shape[-1]
    cropped = resized_crop(images, sample_crop_params(batch, size, generator))
    return affine(cropped, sample_affine_params(batch, size, generator))
