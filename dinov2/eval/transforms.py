"""Evaluation transforms: upstream's Resize 256 / CenterCrop 224 scaled to any crop size, and the probe's
random-resized-crop augmentation; both normalise ``channels``-channel inputs (3, or 1 for a single-channel
backbone: see :mod:`dinov2.utils.normalization`)."""

from __future__ import annotations

from typing import Optional

from torchvision import transforms

from dinov2.utils.normalization import IMAGENET_MEAN, IMAGENET_STD, channel_normalization

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "default_resize_size", "make_eval_transform",
           "make_train_augment_transform"]
_BICUBIC = transforms.InterpolationMode.BICUBIC


def default_resize_size(crop_size: int) -> int:
    """The resize that keeps upstream's 256/224 ratio (256 for 224 crops, 37 for 32 crops)."""
    return int(round(crop_size * 256 / 224))


def _check_sizes(crop_size: int, resize_size: int) -> None:
    if crop_size <= 0 or resize_size <= 0:
        raise ValueError(f"crop size {crop_size} and resize size {resize_size} must be positive")
    if resize_size < crop_size:
        raise ValueError(f"resize size {resize_size} is smaller than the crop size {crop_size}")


def _normalize(channels: int) -> transforms.Normalize:
    mean, std = channel_normalization(channels)
    return transforms.Normalize(mean, std)


def make_eval_transform(crop_size: int = 224, resize_size: Optional[int] = None,
                        channels: int = 3) -> transforms.Compose:
    """Resize (shorter side, bicubic), centre crop, ImageNet normalisation (of ``channels``-channel images)."""
    resize_size = resize_size or default_resize_size(crop_size)
    _check_sizes(crop_size, resize_size)
    return transforms.Compose([
        transforms.Resize(resize_size, interpolation=_BICUBIC),
        transforms.CenterCrop(crop_size),
        transforms.ToTensor(),
        _normalize(channels),
    ])


DEFAULT_AUGMENT_SCALE = (0.08, 1.0)
DEFAULT_HFLIP_PROBABILITY = 0.5


def make_train_augment_transform(crop_size: int = 224, scale: tuple[float, float] = DEFAULT_AUGMENT_SCALE,
                                 hflip_probability: float = DEFAULT_HFLIP_PROBABILITY,
                                 channels: int = 3) -> transforms.Compose:
    """The linear probe's training augmentation: RandomResizedCrop (bicubic) + horizontal flip.

    The defaults are upstream's (ImageNet photographs); small or orientation-bearing images such as digits may
    need a milder ``scale`` and no flip.
    """
    low, high = scale
    if not 0 < low <= high <= 1:
        raise ValueError(f"augment scale must satisfy 0 < min <= max <= 1, got {scale}")
    if not 0 <= hflip_probability <= 1:
        raise ValueError(f"horizontal-flip probability must be in [0, 1], got {hflip_probability}")
    return transforms.Compose([
        transforms.RandomResizedCrop(crop_size, scale=(low, high), interpolation=_BICUBIC),
        transforms.RandomHorizontalFlip(hflip_probability),
        transforms.ToTensor(),
        _normalize(channels),
    ])
