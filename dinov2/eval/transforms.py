"""Evaluation transforms: upstream's Resize 256 / CenterCrop 224 scaled to any crop size, and the probe's
random-resized-crop augmentation."""

from __future__ import annotations

from typing import Optional

from torchvision import transforms

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_BICUBIC = transforms.InterpolationMode.BICUBIC


def default_resize_size(crop_size: int) -> int:
    """The resize that keeps upstream's 256/224 ratio (256 for 224 crops, 37 for 32 crops)."""
    return int(round(crop_size * 256 / 224))


def _check_sizes(crop_size: int, resize_size: int) -> None:
    if crop_size <= 0 or resize_size <= 0:
        raise ValueError(f"crop size {crop_size} and resize size {resize_size} must be positive")
    if resize_size < crop_size:
        raise ValueError(f"resize size {resize_size} is smaller than the crop size {crop_size}")


def make_eval_transform(crop_size: int = 224, resize_size: Optional[int] = None) -> transforms.Compose:
    """Resize (shorter side, bicubic), centre crop, ImageNet normalisation."""
    resize_size = resize_size or default_resize_size(crop_size)
    _check_sizes(crop_size, resize_size)
    return transforms.Compose([
        transforms.Resize(resize_size, interpolation=_BICUBIC),
        transforms.CenterCrop(crop_size),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def make_train_augment_transform(crop_size: int = 224) -> transforms.Compose:
    """The linear probe's training augmentation: RandomResizedCrop (bicubic) + horizontal flip."""
    return transforms.Compose([
        transforms.RandomResizedCrop(crop_size, interpolation=_BICUBIC),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])
