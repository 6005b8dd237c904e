"""The paper's noise models, as pure functions of (seed, noise setting, relative path).

All models act on RGB values in [0, 1], independently per pixel and channel (x is the clean value):

* ``gauss<sigma>``   y = x + N(0, (sigma / 255)^2)            (sigma on the 0-255 scale)
* ``shot<lambda>``   y = Poisson(lambda * x) / lambda          (smaller lambda: stronger noise)
* ``speckle<c>``     y = x + x * N(0, c^2)
* ``pg<lambda>_<sigma>``  y = Poisson(lambda * x) / lambda + N(0, (sigma / 255)^2)   (a sensor: shot noise plus
                     Gaussian read noise; for synthetic studies on scientific data, beyond the paper)
* ``identity``       y = x                                     (clean control)

then y is clipped to [0, 1]. Stored images are ``uint8(255 * y)`` truncated (the paper's behaviour) or
rounded (``quantization="round"``). Every image draws its noise from a generator seeded by
(seed, canonical setting, relative path), so the result never depends on worker count, order or machine.
The same functions serve dataset generation, on-the-fly noisy evaluation and the toy experiment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import TYPE_CHECKING, Iterable

import numpy as np

from utils.image_io import to_unit
from utils.seeding import numpy_generator

if TYPE_CHECKING:  # torch is optional for the data-preparation tools
    import torch

PAPER_NOISE_SETTINGS: tuple[str, ...] = (
    "gauss50", "gauss100", "gauss255",
    "shot10", "shot3", "shot1",
    "speckle0.4", "speckle0.7", "speckle1.0",
)
QUANTIZATION_MODES = ("truncate", "round")
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_SETTING_PATTERN = re.compile(rf"^(gauss|shot|speckle){_NUMBER}$")
_POISSON_GAUSSIAN_PATTERN = re.compile(rf"^pg{_NUMBER}_{_NUMBER}$")


@dataclass(frozen=True)
class NoiseSpec:
    """One noise setting: a family (``gauss``, ``shot``, ``speckle``, ``pg`` or ``identity``) and its level
    (``pg``: the Poisson rate, with the Gaussian read noise's sigma on the 0-255 scale in ``read_sigma``)."""

    family: str
    level: float = 0.0
    read_sigma: float = 0.0
    spelling: str = field(default="", compare=False)  # as the user wrote it (``speckle1.0``); not part of the value

    @property
    def name(self) -> str:
        """The setting as it was spelled (trees and labels keep the user's spelling), else its canonical name."""
        return self.spelling or self.canonical

    @property
    def canonical(self) -> str:
        """Canonical name used for seeding (``speckle1.0`` and ``speckle1`` are the same setting)."""
        if self.family == "pg":
            return f"pg{self.level:g}_{self.read_sigma:g}"
        return "identity" if self.family == "identity" else f"{self.family}{self.level:g}"


def parse_noise(setting: str) -> NoiseSpec:
    """Parse a setting name such as ``gauss100``, ``shot3``, ``speckle0.4``, ``pg10_5`` or ``identity``.

    Raises ``ValueError`` naming the setting and the accepted forms.
    """
    if setting in ("identity", "clean"):
        return NoiseSpec("identity", spelling=setting)
    sensor = _POISSON_GAUSSIAN_PATTERN.match(setting)
    if sensor is not None:
        rate, read_sigma = float(sensor.group(1)), float(sensor.group(2))
        if rate <= 0:
            raise ValueError(f"noise setting {setting!r}: the Poisson rate lambda must be positive")
        return NoiseSpec("pg", rate, read_sigma, spelling=setting)
    match = _SETTING_PATTERN.match(setting)
    if match is None:
        raise ValueError(
            f"unknown noise setting {setting!r}: expected gauss<sigma>, shot<lambda>, speckle<c>, "
            f"pg<lambda>_<sigma> or identity (the paper's are {' '.join(PAPER_NOISE_SETTINGS)})"
        )
    family, level = match.group(1), float(match.group(2))
    if family == "shot" and level <= 0:
        raise ValueError(f"noise setting {setting!r}: the Poisson rate lambda must be positive")
    return NoiseSpec(family, level, spelling=setting)


def expand_noise_settings(settings: Iterable[str]) -> list[NoiseSpec]:
    """Expand ``all`` to the paper's nine settings, parse every one (once: callers pass the parsed settings on) and
    drop repeated spellings (order kept)."""
    expanded: dict[str, NoiseSpec] = {}
    for setting in settings:
        for name in PAPER_NOISE_SETTINGS if setting == "all" else (setting,):
            if name not in expanded:
                expanded[name] = parse_noise(name)
    return list(expanded.values())


def relpath_key(relpath: str | PurePath) -> str:
    """The path text that seeds an image's noise: POSIX separators, no leading ``./``."""
    return PurePath(relpath).as_posix()


def noise_generator(seed: int, spec: NoiseSpec, relpath: str | PurePath) -> np.random.Generator:
    """The generator that draws the noise of the image at ``relpath`` (relative to its tree's root)."""
    return numpy_generator("noise", seed, spec.canonical, relpath_key(relpath))


def sample_noisy(
    x: np.ndarray, spec: NoiseSpec, rng: np.random.Generator, clip: bool = True
) -> np.ndarray:
    """Apply ``spec`` to float values ``x`` in [0, 1]; returns float32, clipped to [0, 1] unless ``clip=False``."""
    x = np.asarray(x, dtype=np.float32)
    if spec.family == "identity":
        y = x.copy()
    elif spec.family == "gauss":
        y = x + rng.standard_normal(x.shape, dtype=np.float32) * np.float32(spec.level / 255.0)
    elif spec.family == "shot":
        y = (rng.poisson(x.astype(np.float64) * spec.level) / spec.level).astype(np.float32)
    elif spec.family == "speckle":
        y = x + x * rng.standard_normal(x.shape, dtype=np.float32) * np.float32(spec.level)
    elif spec.family == "pg":  # the shot noise is drawn first, then the read noise, from the same generator
        y = (rng.poisson(x.astype(np.float64) * spec.level) / spec.level).astype(np.float32)
        y += rng.standard_normal(x.shape, dtype=np.float32) * np.float32(spec.read_sigma / 255.0)
    else:
        raise ValueError(f"unknown noise family {spec.family!r}")
    return np.clip(y, 0.0, 1.0, out=y) if clip else y


def quantize(y: np.ndarray, mode: str = "truncate") -> np.ndarray:
    """Map values in [0, 1] to uint8: ``truncate`` floors ``255 * y`` (the paper), ``round`` rounds it."""
    scaled = np.clip(y, 0.0, 1.0) * np.float32(255.0)
    if mode == "round":
        scaled = np.rint(scaled)
    elif mode != "truncate":
        raise ValueError(f"unknown quantization {mode!r}: expected one of {QUANTIZATION_MODES}")
    return scaled.astype(np.uint8)


def add_noise(
    image: np.ndarray, spec: NoiseSpec, rng: np.random.Generator, quantization: str = "truncate"
) -> np.ndarray:
    """Noise a uint8 image (H x W x C) and return a uint8 image of the same shape."""
    if image.dtype != np.uint8:
        raise TypeError(f"add_noise expects a uint8 image, got {image.dtype}")
    if spec.family == "identity":
        return image.copy()
    return quantize(sample_noisy(image.astype(np.float32) / np.float32(255.0), spec, rng), quantization)


def noisy_image(
    image: np.ndarray, spec: NoiseSpec, seed: int, relpath: str | PurePath, quantization: str = "truncate"
) -> np.ndarray:
    """The noisy copy of ``image`` stored at ``relpath``: a pure function of its arguments (``spec``: a setting
    parsed once, by :func:`parse_noise`, where it entered)."""
    return add_noise(image, spec, noise_generator(seed, spec, relpath), quantization)


def quantize_like(y: np.ndarray, dtype: np.dtype, mode: str = "truncate") -> np.ndarray:
    """Values in [0, 1] at the depth ``dtype``: uint8 as :func:`quantize`, uint16 on 65535 levels by the same rule
    (truncated, or rounded), float32 as they are."""
    if dtype == np.uint8:
        return quantize(y, mode)
    if dtype == np.uint16:
        scaled = np.clip(y, 0.0, 1.0).astype(np.float64) * 65535.0
        if mode not in QUANTIZATION_MODES:
            raise ValueError(f"unknown quantization {mode!r}: expected one of {QUANTIZATION_MODES}")
        return (np.rint(scaled) if mode == "round" else scaled).astype(np.uint16)
    return np.clip(y, 0.0, 1.0).astype(np.float32)


def noisy_pixels(
    pixels: np.ndarray, spec: NoiseSpec, seed: int, relpath: str | PurePath, quantization: str = "truncate"
) -> np.ndarray:
    """The noisy copy of pixels of any depth (see :mod:`utils.image_io`): 8-bit exactly :func:`noisy_image`;
    16-bit and float noised in float in [0, 1] and kept at their depth."""
    if pixels.dtype == np.uint8:
        return noisy_image(pixels, spec, seed, relpath, quantization)
    if spec.family == "identity":
        return pixels.copy()
    y = sample_noisy(to_unit(pixels), spec, noise_generator(seed, spec, relpath))
    return quantize_like(y, pixels.dtype, quantization)


def add_noise_torch(
    x: "torch.Tensor", spec: NoiseSpec, generator: "torch.Generator | None" = None, clip: bool = True
) -> "torch.Tensor":
    """Apply ``spec`` to a float tensor in [0, 1] on its own device (batches, the toy experiment)."""
    import torch

    if spec.family == "identity":
        y = x.clone()
    elif spec.family == "gauss":
        y = x + torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) * (spec.level / 255.0)
    elif spec.family == "shot":
        y = torch.poisson(x * spec.level, generator=generator) / spec.level
    elif spec.family == "speckle":
        y = x + x * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) * spec.level
    elif spec.family == "pg":
        y = torch.poisson(x * spec.level, generator=generator) / spec.level
        y = y + torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) * (spec.read_sigma / 255.0)
    else:
        raise ValueError(f"unknown noise family {spec.family!r}")
    return y.clamp_(0.0, 1.0) if clip else y


def gaussian_spec_from_std(std: float) -> NoiseSpec:
    """A Gaussian setting from a standard deviation on the [0, 1] scale (the toy uses 0.4)."""
    return NoiseSpec("gauss", std * 255.0)

