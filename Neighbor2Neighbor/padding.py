"""Reflect padding to the U-Net's size multiple, for images of any size (even smaller than the padding)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from Neighbor2Neighbor.arch_unet import SIZE_MULTIPLE


def padded_size(size: int, multiple: int = SIZE_MULTIPLE) -> int:
    """The smallest multiple of ``multiple`` that is at least ``size``."""
    return -(-size // multiple) * multiple


def reflect_pad(x: torch.Tensor, bottom: int, right: int) -> torch.Tensor:
    """Reflect-pad the last two dims of ``x`` on the bottom and right.

    ``F.pad`` in reflect mode needs a pad smaller than the side, so large pads (a 16 px sub-image padded to 32)
    are applied in several reflections; a side of one pixel is replicated instead.
    """
    while bottom > 0 or right > 0:
        height, width = x.shape[-2:]
        step_bottom = min(bottom, height - 1) if height > 1 else 0
        step_right = min(right, width - 1) if width > 1 else 0
        if step_bottom == 0 and step_right == 0:
            return F.pad(x, (0, right, 0, bottom), mode="replicate")
        x = F.pad(x, (0, step_right, 0, step_bottom), mode="reflect")
        bottom, right = bottom - step_bottom, right - step_right
    return x


def pad_to_multiple(x: torch.Tensor, multiple: int = SIZE_MULTIPLE) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad an N x C x H x W batch so H and W are multiples of ``multiple``; returns (padded, (H, W))."""
    height, width = x.shape[-2:]
    return reflect_pad(x, padded_size(height, multiple) - height, padded_size(width, multiple) - width), (height, width)


def apply_padded(model: torch.nn.Module, x: torch.Tensor, multiple: int = SIZE_MULTIPLE) -> torch.Tensor:
    """Run ``model`` on ``x`` of any size: reflect-pad to a multiple of ``multiple``, then crop back."""
    padded, (height, width) = pad_to_multiple(x, multiple)
    return model(padded)[..., :height, :width]
