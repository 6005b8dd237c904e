"""Image trees to read from: a folder of stored images, or a clean folder with noise applied at read time.

Every flag and config key that takes an image tree accepts either spelling:

* ``PATH``: the images stored under ``PATH`` (clean, a stored noisy copy, a denoised copy).
* ``noisy:SETTING[,seed=N][,quantization=truncate|round]:ROOT[:SUB]``: the clean tree ``ROOT`` with noise
  ``SETTING`` applied when an image is read, bit-identical to the stored copy that
  ``python utils/generate_noise.py --src ROOT --noise SETTING [--seed N] [--quantization Q]`` writes (seed 42 and
  truncation by default, as there). ``:SUB`` addresses a folder inside that tree (``noisy:gauss100:data/x:train``
  is the ``train`` folder of the noisy copy of ``data/x``); ``noisy:gauss100:data/x/train`` is instead the noisy
  copy of the tree ``data/x/train`` (its noise is seeded by paths relative to ``data/x/train``).

Noise is a pure function of (seed, setting, path relative to ROOT), so nothing is stored: a stored noisy copy of
ImageNet-1k takes hundreds of GB of PNG files (noisy pixels do not compress), one read on the fly takes none.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, replace
from pathlib import Path, PurePath, PurePosixPath
from typing import Iterator

import numpy as np
from PIL import Image

from utils.image_io import (SCIENTIFIC_EXTENSIONS, ImageHeader, as_rgb8, extension, iter_image_files, read_image_header,
                            read_image_size, read_pixels)
from utils.noise import QUANTIZATION_MODES, NoiseSpec, noisy_pixels, parse_noise

NOISY_SCHEME = "noisy:"
_OPTION_TYPES = {"seed": int, "quantization": str}
DEFAULT_NOISE_SEED = 42  # generate_noise.py's default


class TreeSpecError(ValueError):
    """A tree spelling that cannot be parsed; the message names it and the accepted form."""


@dataclass(frozen=True)
class ImageTree:
    """A folder of images to read; with ``noise`` set, each image is noised when read.

    ``folder`` is where the files are listed and decoded; ``base`` is the root whose relative paths seed the
    noise (``folder`` itself unless the tree is a folder inside a noisy tree).
    """

    folder: Path
    noise: NoiseSpec | None = None  # parsed once, where the tree was spelled
    seed: int = DEFAULT_NOISE_SEED
    quantization: str = "truncate"
    base: Path | None = None
    float_range: tuple[float, float] | None = None  # for float images: None reads the range the tree's index records

    @property
    def on_the_fly(self) -> bool:
        """True when images are noised at read time (no stored copy)."""
        return self.noise is not None

    @property
    def name(self) -> str:
        """The folder's base name (``train`` for a split folder)."""
        return self.folder.name

    def __truediv__(self, sub: str | PurePath) -> "ImageTree":
        """The folder ``sub`` inside this tree (the noise keeps its seeding root)."""
        return replace(self, folder=self.folder / sub, base=self._kept_base)

    def noised(self, spec: NoiseSpec) -> "ImageTree":
        """This stored tree with ``spec`` added when an image is read, seeded by paths relative to this folder:
        ``noisy:SETTING:FOLDER`` parsed (what ``generate_noise.py --src FOLDER`` stores), without a spelling."""
        if self.noise is not None:
            raise TreeSpecError(f"tree {self}: noise is added to a stored tree, and this one is noised already")
        return replace(self, noise=spec, base=self.folder)

    @property
    def parent(self) -> "ImageTree":
        """The folder above this one (a noisy tree keeps its seeding root)."""
        return replace(self, folder=self.folder.parent, base=self._kept_base)

    @property
    def _base(self) -> Path:
        return self.base if self.base is not None else self.folder

    @property
    def _kept_base(self) -> Path | None:
        """The seeding root a folder derived from this one keeps (none for stored images)."""
        return self._base if self.noise is not None else None

    def is_dir(self) -> bool:
        return self.folder.is_dir()

    def missing_hint(self) -> str:
        """For an error about a missing folder: how a ``noisy:...:ROOT:SUB`` spelling was split, when its ROOT does
        not exist either (a ``:`` in a folder name reads as the separator); empty otherwise."""
        if self.base is None or self.folder == self.base or self.base.is_dir():
            return ""
        sub = Path(os.path.relpath(self.folder, self.base)).as_posix()
        return (f" (read as the tree {self.base} and the folder {sub!r} inside it: ':' separates them, and neither "
                f"{self.base} nor {self.base}:{sub} is a folder)")

    def path(self, relpath: str | PurePath) -> Path:
        """The file that holds the (clean, for a noisy tree) pixels of ``relpath``."""
        return self.folder / relpath

    def noise_key(self, relpath: str | PurePath) -> str:
        """The relative path that seeds the noise of ``relpath``: relative to the seeding root, POSIX form."""
        try:
            return PurePosixPath(Path(os.path.normpath(self.folder / relpath)).relative_to(
                os.path.normpath(self._base))).as_posix()
        except ValueError:
            raise TreeSpecError(f"{self.folder / relpath} lies outside the noisy tree {self._base}") from None

    def iter_relpaths(self) -> Iterator[str]:
        """Every image below the folder, relative to it, sorted (see :func:`utils.image_io.iter_image_files`)."""
        return iter_image_files(self.folder)

    def read_pixels(self, relpath: str | PurePath) -> np.ndarray:
        """The pixels of ``relpath`` at their own depth (see :mod:`utils.image_io`; float images by the range the
        tree's index records), noised for an on-the-fly tree and kept at that depth."""
        path = self.folder / relpath
        float_range = self.float_range
        if float_range is None and extension(path) in SCIENTIFIC_EXTENSIONS:
            from utils.dataset_index import recorded_float_range  # the index module imports this one

            float_range = recorded_float_range(self._base)
        pixels = read_pixels(path, float_range)
        if self.noise is None:
            return pixels
        return noisy_pixels(pixels, self.noise, self.seed, self.noise_key(relpath), self.quantization)

    def read(self, relpath: str | PurePath) -> np.ndarray:
        """The RGB uint8 pixels of ``relpath`` (decoded, then noised for an on-the-fly tree): exactly as stored for
        an 8-bit image, rounded to 8 bits (one channel replicated) for a 16-bit or float one."""
        return as_rgb8(self.read_pixels(relpath))

    def read_pil(self, relpath: str | PurePath) -> Image.Image:
        """Like :meth:`read`, as a PIL RGB image (for torchvision transforms)."""
        return Image.fromarray(self.read(relpath))

    def image_header(self, relpath: str | PurePath) -> ImageHeader:
        """Depth, channels and size from the file header (noise keeps all three)."""
        return read_image_header(self.folder / relpath)

    def image_size(self, relpath: str | PurePath) -> tuple[int, int]:
        """(height, width) from the file header (noise keeps the size)."""
        return read_image_size(self.folder / relpath)

    def noise_settings(self) -> dict[str, object] | None:
        """What makes the noise of an on-the-fly tree (for output manifests); None for stored images."""
        if self.noise is None:
            return None
        return {"noise": self.noise.canonical, "seed": self.seed, "quantization": self.quantization}

    def __str__(self) -> str:
        if self.noise is None:
            return str(self.folder)
        options = [self.noise.name]
        if self.seed != DEFAULT_NOISE_SEED:
            options.append(f"seed={self.seed}")
        if self.quantization != "truncate":
            options.append(f"quantization={self.quantization}")
        text = f"{NOISY_SCHEME}{','.join(options)}:{self._base}"
        if self.folder != self._base:
            text += f":{Path(os.path.relpath(self.folder, self._base)).as_posix()}"
        return text


def _parse_options(spelling: str, text: str) -> tuple[NoiseSpec, dict[str, object]]:
    setting, *pairs = text.split(",")
    try:
        spec = parse_noise(setting)
    except ValueError as error:
        raise TreeSpecError(f"tree {spelling!r}: {error}") from None
    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in _OPTION_TYPES:
            raise TreeSpecError(f"tree {spelling!r}: unknown option {pair!r}; expected seed=N or "
                                f"quantization={'|'.join(QUANTIZATION_MODES)}")
        try:
            options[key] = _OPTION_TYPES[key](value)
        except ValueError:
            raise TreeSpecError(f"tree {spelling!r}: {key} must be an integer, got {value!r}") from None
    if options.get("quantization", "truncate") not in QUANTIZATION_MODES:
        raise TreeSpecError(f"tree {spelling!r}: quantization must be one of {QUANTIZATION_MODES}")
    return spec, options


def _split_root(location: str) -> tuple[str, str]:
    """ROOT and SUB of ``ROOT[:SUB]``: at the first ``:`` whose left side is a folder (a root whose name holds
    ``:``), else the whole when it is one, else at the first ``:`` (what the error about a missing folder names)."""
    cuts = [i for i, char in enumerate(location) if char == ":"]
    for cut in cuts:
        if Path(location[:cut]).is_dir():
            return location[:cut], location[cut + 1:]
    if not cuts or Path(location).is_dir():
        return location, ""
    return location[:cuts[0]], location[cuts[0] + 1:]


def open_tree(spelling: "str | os.PathLike | ImageTree") -> ImageTree:
    """Parse a tree spelling (a path, or ``noisy:SETTING[,seed=N][,quantization=Q]:ROOT[:SUB]``).

    ``ROOT:SUB`` is split at the first ``:`` whose left side is a folder, so a root whose name holds ``:`` is read
    whole. Raises :class:`TreeSpecError` naming the spelling when it is malformed or SUB
    leaves ROOT; whether the folder exists is checked where it is read (see :meth:`ImageTree.missing_hint`).
    """
    if isinstance(spelling, ImageTree):
        return spelling
    text = os.fspath(spelling)
    if not text.startswith(NOISY_SCHEME):
        return ImageTree(Path(text))
    options_text, sep, location = text[len(NOISY_SCHEME):].partition(":")
    if not sep or not options_text or not location:
        raise TreeSpecError(f"tree {text!r}: expected noisy:SETTING[,seed=N][,quantization=Q]:ROOT[:SUB], "
                            f"e.g. noisy:gauss100:data/mini-imagenet")
    setting, options = _parse_options(text, options_text)
    root_text, sub = _split_root(location)
    if not root_text:
        raise TreeSpecError(f"tree {text!r}: the root folder is empty")
    if sub and PurePosixPath(sub).is_absolute():
        raise TreeSpecError(f"tree {text!r}: the folder after the root ({sub!r}) must be a relative path")
    if sub and os.path.normpath(sub).split(os.sep)[0] == os.pardir:
        raise TreeSpecError(f"tree {text!r}: the folder after the root ({sub!r}) leaves the tree {root_text}; "
                            f"its noise is seeded by paths inside it")
    root = Path(root_text)
    return ImageTree(root / sub if sub else root, setting, base=root, **options)  # type: ignore[arg-type]


def tree_argument(text: str) -> ImageTree:
    """``argparse`` type for image-tree options: a bad spelling is a usage error (exit status 2)."""
    try:
        return open_tree(text)
    except TreeSpecError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
