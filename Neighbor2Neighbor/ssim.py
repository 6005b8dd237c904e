"""Structural similarity (SSIM) with an 11x11 Gaussian window (sigma 1.5), per channel, as in MATLAB's ssim."""

from __future__ import annotations

import torch
import torch.nn.functional as F

WINDOW_SIZE = 11
WINDOW_SIGMA = 1.5
K1, K2 = 0.01, 0.03


def gaussian_window(size: int = WINDOW_SIZE, sigma: float = WINDOW_SIGMA) -> torch.Tensor:
    """A normalised 2-D Gaussian window (size x size, float64)."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    profile = torch.exp(-coords.square() / (2 * sigma**2))
    window = torch.outer(profile, profile)
    return window / window.sum()


def ssim(clean: torch.Tensor, test: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM of each image of a batch (N x C x H x W) -> (N,), computed in float64.

    Statistics are taken over valid window positions only (no padding), each channel separately, then averaged.
    Images smaller than the window are compared with a window clipped to their size.
    """
    if clean.shape != test.shape or clean.dim() != 4:
        raise ValueError(f"ssim needs two N x C x H x W tensors of one shape, got {tuple(clean.shape)} "
                         f"and {tuple(test.shape)}")
    x, y = clean.double(), test.double()
    channels = x.shape[1]
    size = min(WINDOW_SIZE, x.shape[-2], x.shape[-1])
    window = gaussian_window(size).to(x.device).expand(channels, 1, size, size)

    def local_mean(values: torch.Tensor) -> torch.Tensor:
        return F.conv2d(values, window, groups=channels)

    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x.square()
    var_y = local_mean(y * y) - mu_y.square()
    cov = local_mean(x * y) - mu_x * mu_y
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2))
    return ssim_map.mean(dim=(1, 2, 3))
