"""Denoising at native resolution: reflect-pad to a multiple of 32, overlapping tiles for large images."""

from __future__ import annotations

import numpy as np
import torch

from Neighbor2Neighbor.arch_unet import SIZE_MULTIPLE, memory_format
from Neighbor2Neighbor.padding import apply_padded
from utils.device import autocast
from utils.image_io import to_unit


def check_tiling(tile: int, overlap: int) -> None:
    """A tile must be a positive multiple of 32 larger than twice the overlap (``tile=0`` disables tiling)."""
    if tile == 0:
        return
    if tile < 0 or tile % SIZE_MULTIPLE:
        raise ValueError(f"--tile must be 0 or a positive multiple of {SIZE_MULTIPLE}, got {tile}")
    if overlap < 0 or tile <= 2 * overlap:
        raise ValueError(f"--tile-overlap must be in [0, tile/2), got {overlap} for tile {tile}")


def denoise_tiled(model: torch.nn.Module, x: torch.Tensor, tile: int, overlap: int) -> torch.Tensor:
    """Denoise ``x`` (N x C x H x W) tile by tile; each tile sees ``overlap`` extra pixels of context per side."""
    height, width = x.shape[-2:]
    step = tile - 2 * overlap
    out: torch.Tensor | None = None
    for top in range(0, height, step):
        for left in range(0, width, step):
            bottom, right = min(top + step, height), min(left + step, width)
            top_ctx, left_ctx = max(0, top - overlap), max(0, left - overlap)
            context = x[..., top_ctx:min(height, bottom + overlap), left_ctx:min(width, right + overlap)]
            piece = apply_padded(model, context)
            if out is None:
                out = torch.empty(x.shape[:2] + (height, width), dtype=piece.dtype, device=x.device)
            inner = piece[..., top - top_ctx:bottom - top_ctx, left - left_ctx:right - left_ctx]
            out[..., top:bottom, left:right] = inner
    assert out is not None
    return out


@torch.no_grad()
def denoise_tensor(
    model: torch.nn.Module, x: torch.Tensor, precision: str = "fp32", tile: int = 0, overlap: int = 0
) -> torch.Tensor:
    """Denoise a float batch in [0, 1] (N x C x H x W, any H and W) and return float32, unclipped."""
    x = x.contiguous(memory_format=memory_format(x.device))
    with autocast(x.device, precision):
        if tile and max(x.shape[-2:]) > tile:
            out = denoise_tiled(model, x, tile, overlap)
        else:
            out = apply_padded(model, x)
    return out.float()


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Float N x C x H x W in [0, 1] -> uint8 N x H x W x C, clipped and rounded half up."""
    scaled = torch.floor(x.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8)
    return scaled.permute(0, 2, 3, 1).cpu().numpy()


def denoise_uint8(
    model: torch.nn.Module, images: np.ndarray, device: torch.device, precision: str = "fp32",
    tile: int = 0, overlap: int = 0,
) -> np.ndarray:
    """Denoise a stack of equal-size uint8 images (N x H x W x C) and return uint8 of the same shape."""
    x = torch.tensor(images).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    return to_uint8(denoise_tensor(model, x, precision, tile, overlap))


def denoise_pixels(
    model: torch.nn.Module, images: np.ndarray, device: torch.device, precision: str = "fp32",
    tile: int = 0, overlap: int = 0,
) -> np.ndarray:
    """Denoise a stack of equal-size images of any depth (N x H x W x C) and return them at that depth: 8-bit as
    :func:`denoise_uint8`, 16-bit rounded half up on 65535 levels, float clipped to [0, 1]."""
    if images.dtype == np.uint8:
        return denoise_uint8(model, images, device, precision, tile, overlap)
    x = torch.from_numpy(np.ascontiguousarray(to_unit(images))).to(device).permute(0, 3, 1, 2)
    out = denoise_tensor(model, x, precision, tile, overlap).clamp_(0.0, 1.0)
    if images.dtype == np.uint16:
        out = torch.floor(out.double() * 65535.0 + 0.5).to(torch.int32)
        return out.permute(0, 2, 3, 1).cpu().numpy().astype(np.uint16)
    return out.permute(0, 2, 3, 1).cpu().numpy().astype(np.float32)
