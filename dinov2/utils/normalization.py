"""The input normalisation of the backbones, for 3-channel (RGB) and 1-channel (grey) images.

RGB images are normalised with ImageNet's per-channel mean and std, as DINOv2 and its released weights expect.
Single-channel images (``student.in_chans=1``) use the averages of those values, timm's convention for grey
inputs; :mod:`dinov2.models.input_channels` converts weights between the two exactly for grey images.
"""

from __future__ import annotations

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GREY_MEAN = (sum(IMAGENET_MEAN) / 3,)
GREY_STD = (sum(IMAGENET_STD) / 3,)
INPUT_CHANNELS = (1, 3)


def check_channels(channels: int) -> int:
    """``channels`` when it is an input channel count this project builds (1 or 3); ``ValueError`` otherwise."""
    if channels not in INPUT_CHANNELS:
        raise ValueError(f"input images have 1 (grey) or 3 (RGB) channels, not {channels}")
    return channels


def channel_normalization(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` per channel of inputs with ``channels`` channels (1 or 3)."""
    return (IMAGENET_MEAN, IMAGENET_STD) if check_channels(channels) == 3 else (GREY_MEAN, GREY_STD)
