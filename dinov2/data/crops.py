"""One crop of the DINOv2 multi-crop recipe as explicit random draws, applicable to several aligned images.

Every random choice (box, flip, jitter order and factors, grayscale, blur sigma, solarize) is drawn once from
torch's global RNG into a :class:`CropDraw`, then applied; applying the same draw to a noisy image and its
denoised copy gives pixel-aligned crops. The distribution matches upstream's torchvision pipeline:
``RandomResizedCrop(bicubic) -> flip(0.5) -> ColorJitter(0.4, 0.4, 0.2, 0.1) w.p. 0.8 -> grayscale(0.2) ->
GaussianBlur(kernel 9, sigma U(0.1, 2)) w.p. blur_p -> solarize(128) w.p. solarize_p -> ToTensor -> Normalize``
with upstream's flip and jitter probabilities by default (``crops.hflip_probability`` and
``crops.color_jitter_probability`` change them). With ``as_uint8`` a crop stops before ``ToTensor``: its uint8
pixels travel through the loader's shared memory and pinned buffers (a quarter of float32's bytes) and
:func:`normalize_crops` makes them the same float32 values on the device.

Images of more than 8 bits (16-bit, float: see utils/image_io.py) come as float tensors ``[C, H, W]`` in [0, 1]
and take the same draws through torchvision's tensor operations (solarize at 128 / 255, blur by
``TF.gaussian_blur``), ending as normalised float32 crops whatever ``as_uint8`` says: their levels are kept.
Single-channel images (PIL mode ``L`` or ``[1, H, W]`` tensors, for ``student.in_chans=1``) stay single-channel:
saturation and hue leave them unchanged, grayscale keeps one channel, and they are normalised with
:data:`dinov2.utils.normalization.GREY_MEAN` / ``GREY_STD``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from dinov2.utils.normalization import IMAGENET_MEAN, IMAGENET_STD, channel_normalization

IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD = IMAGENET_MEAN, IMAGENET_STD
JITTER_RANGES = ((0.6, 1.4), (0.6, 1.4), (0.8, 1.2), (-0.1, 0.1))  # ColorJitter(0.4, 0.4, 0.2, 0.1)
JITTER_PROBABILITY = 0.8
FLIP_PROBABILITY = 0.5
GRAYSCALE_PROBABILITY = 0.2
BLUR_KERNEL_SIZE = 9
BLUR_SIGMA_RANGE = (0.1, 2.0)
SOLARIZE_THRESHOLD = 128
CROP_RATIO_RANGE = (3.0 / 4.0, 4.0 / 3.0)


def make_normalize_transform(channels: int = 3) -> transforms.Compose:
    """PIL image -> float tensor normalised with the mean and std of ``channels``-channel inputs."""
    mean, std = channel_normalization(channels)
    return transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean=mean, std=std)])


def normalize_crops(crops: torch.Tensor) -> torch.Tensor:
    """uint8 crops ``[..., C, H, W]`` (C = 3 or 1) -> float32 normalised with that channel count's mean and std, on
    their device: the operations of ``ToTensor`` then ``Normalize`` in their order, so the values are those of the
    float pipeline."""
    channels = int(crops.shape[-3])
    mean, std = (torch.tensor(values, dtype=torch.float32, device=crops.device).view(channels, 1, 1)
                 for values in channel_normalization(channels))
    return crops.to(torch.float32).div(255).sub_(mean).div_(std)


@dataclass(frozen=True)
class CropDraw:
    """The random outcome of one crop: applying it is deterministic."""

    box: tuple[int, int, int, int]  # top, left, height, width in the source image
    flip: bool
    jitter: tuple[tuple[int, ...], float, float, float, float] | None  # order, brightness, contrast, saturation, hue
    grayscale: bool
    blur_sigma: float | None
    solarize: bool


def gaussian_blur(image: Image.Image, sigma: float, kernel_size: int = BLUR_KERNEL_SIZE) -> Image.Image:
    """torchvision's ``GaussianBlur(kernel_size, sigma)`` (reflect padding, rounded to uint8) in NumPy.

    The same separable kernel as torchvision, but without its tensor round trip, which costs milliseconds per
    small crop; results agree with torchvision to within one grey level.
    """
    half = (kernel_size - 1) / 2.0
    taps = np.exp(-0.5 * (np.linspace(-half, half, kernel_size) / sigma) ** 2)
    taps = (taps / taps.sum()).astype(np.float32)
    pixels = np.asarray(image, dtype=np.float32)
    pad = kernel_size // 2
    if min(pixels.shape[:2]) <= pad:
        raise ValueError(f"cannot blur a {image.size} image with a {kernel_size}-tap kernel")
    padded = np.pad(pixels, ((pad, pad), (pad, pad)) + ((0, 0),) * (pixels.ndim - 2), mode="reflect")
    height, width = pixels.shape[:2]
    rows = sum(taps[k] * padded[k:k + height] for k in range(kernel_size))
    blurred = sum(taps[k] * rows[:, k:k + width] for k in range(kernel_size))
    return Image.fromarray(np.clip(np.rint(blurred), 0, 255).astype(np.uint8), mode=image.mode)


def image_channels(image: Image.Image | torch.Tensor) -> int:
    """The channel count of a PIL image (its bands) or a ``[C, H, W]`` tensor."""
    return len(image.getbands()) if isinstance(image, Image.Image) else int(image.shape[-3])


def _size(image: Image.Image | torch.Tensor) -> tuple[int, int]:
    """(width, height) of a PIL image or a ``[C, H, W]`` tensor."""
    return image.size if isinstance(image, Image.Image) else (int(image.shape[-1]), int(image.shape[-2]))


def _coin(probability: float) -> bool:
    # Always consume one number so later draws do not depend on earlier outcomes.
    return bool(torch.rand(1).item() < probability)


class CropRecipe:
    """How to draw and apply one kind of crop (global crop 1, global crop 2 or a local crop)."""

    def __init__(
        self, size: int, scale: Sequence[float], blur_probability: float, solarize_probability: float = 0.0,
        jitter_probability: float = JITTER_PROBABILITY, flip_probability: float = FLIP_PROBABILITY,
        as_uint8: bool = False,
    ):
        if size < 1:
            raise ValueError(f"crop size must be positive, got {size}")
        if len(scale) != 2 or not 0.0 < scale[0] <= scale[1] <= 1.0:
            raise ValueError(f"crop scale must be (min, max) with 0 < min <= max <= 1, got {tuple(scale)}")
        for name, p in (("blur", blur_probability), ("solarize", solarize_probability),
                        ("colour jitter", jitter_probability), ("flip", flip_probability)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} probability must lie in [0, 1], got {p}")
        self.size = int(size)
        self.scale = (float(scale[0]), float(scale[1]))
        self.blur_probability = float(blur_probability)
        self.solarize_probability = float(solarize_probability)
        self.jitter_probability = float(jitter_probability)
        self.flip_probability = float(flip_probability)
        self.as_uint8 = bool(as_uint8)

    def draw(self, image: Image.Image) -> CropDraw:
        """Draw every random choice of one crop of ``image`` from torch's global RNG."""
        box = transforms.RandomResizedCrop.get_params(image, list(self.scale), list(CROP_RATIO_RANGE))
        flip = _coin(self.flip_probability)
        jitter = None
        if _coin(self.jitter_probability):
            order, b, c, s, h = transforms.ColorJitter.get_params(*JITTER_RANGES)
            jitter = (tuple(int(i) for i in order), float(b), float(c), float(s), float(h))
        grayscale = _coin(GRAYSCALE_PROBABILITY)
        blur_sigma = None
        if _coin(self.blur_probability):
            blur_sigma = float(torch.empty(1).uniform_(*BLUR_SIGMA_RANGE).item())
        solarize = _coin(self.solarize_probability)
        return CropDraw(tuple(int(v) for v in box), flip, jitter, grayscale, blur_sigma, solarize)

    def apply(self, image: Image.Image | torch.Tensor, draw: CropDraw) -> torch.Tensor:
        """Apply ``draw`` to ``image`` and return the normalised ``[C, size, size]`` tensor (its uint8 pixels with
        ``as_uint8``, for a PIL image); C is the image's channel count (3, or 1 for a grey image)."""
        deep = isinstance(image, torch.Tensor)
        channels = image_channels(image)
        mean, std = channel_normalization(channels)
        top, left, height, width = draw.box
        image = TF.resized_crop(image, top, left, height, width, [self.size, self.size],
                                interpolation=InterpolationMode.BICUBIC, antialias=True)
        if draw.flip:
            image = TF.hflip(image)
        if draw.jitter is not None:
            order, brightness, contrast, saturation, hue = draw.jitter
            adjust = (lambda im: TF.adjust_brightness(im, brightness), lambda im: TF.adjust_contrast(im, contrast),
                      lambda im: TF.adjust_saturation(im, saturation), lambda im: TF.adjust_hue(im, hue))
            for index in order:
                image = adjust[index](image)
        if draw.grayscale:
            image = TF.rgb_to_grayscale(image, num_output_channels=channels)
        if deep:
            image = image.clamp(0.0, 1.0)  # bicubic resampling overshoots; PIL clips 8-bit pixels the same way
            if draw.blur_sigma is not None:
                image = TF.gaussian_blur(image, [BLUR_KERNEL_SIZE] * 2, [draw.blur_sigma] * 2)
            if draw.solarize:
                image = TF.solarize(image, SOLARIZE_THRESHOLD / 255.0)
            return TF.normalize(image, mean, std)
        if draw.blur_sigma is not None:
            image = gaussian_blur(image, draw.blur_sigma)
        if draw.solarize:
            image = TF.solarize(image, SOLARIZE_THRESHOLD)
        return TF.pil_to_tensor(image) if self.as_uint8 else TF.normalize(TF.to_tensor(image), mean, std)

    def __call__(self, *images: Image.Image | torch.Tensor) -> list[torch.Tensor]:
        """One draw applied to every image (all must have the first image's size)."""
        first = images[0]
        for other in images[1:]:
            if _size(other) != _size(first):
                raise ValueError(f"aligned images must have the same size, got {_size(first)} and {_size(other)}")
        draw = self.draw(first)
        return [self.apply(image, draw) for image in images]
