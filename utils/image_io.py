"""Image I/O shared by every stage: listing image files, decoding (to RGB, or at the image's own depth), atomic
writes (8-bit PNG; 16-bit and float TIFF).

Depth rule (one for every stage): an 8-bit image becomes RGB uint8 (grey replicated, alpha composited on black), as
it always did; a 16-bit image keeps its channels as uint16; any other type (float, 32-bit integers: float TIFF,
FITS, NPY) becomes float32 in [0, 1] by its tree's value range, recorded in the tree's index, never guessed per
image. :func:`to_unit` maps any of the three to float in [0, 1] (8-bit / 255, 16-bit / 65535).
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from utils.atomic import PathLike, atomic_write_bytes, is_temporary_file
from utils.image_formats import (FITS_EXTENSIONS, NPY_EXTENSIONS, TIFF_EXTENSIONS, UNIT_RANGE_DESCRIPTION,
                                 FormatError, decode_scientific, extension, header_kind)

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif"}
) | FITS_EXTENSIONS | NPY_EXTENSIONS
SCIENTIFIC_EXTENSIONS = TIFF_EXTENSIONS | FITS_EXTENSIONS | NPY_EXTENSIONS
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")
FloatRange = tuple[float, float]
DEFAULT_PNG_COMPRESSION = 1  # noisy images barely compress; level 1 writes them several times faster than 6


class ImageReadError(RuntimeError):
    """An image file that cannot be opened or decoded; the message names the file."""


# what PIL, tifffile, astropy and NumPy raise for damaged or foreign files
_READ_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, FormatError, KeyError, IndexError, EOFError)


def is_image_file(name: str | os.PathLike) -> bool:
    """True for visible files with a known image extension (case-insensitive)."""
    base = os.path.basename(os.fspath(name))
    return not base.startswith(".") and os.path.splitext(base)[1].lower() in IMAGE_EXTENSIONS


def iter_image_files(root: PathLike) -> Iterator[str]:
    """Yield the POSIX paths of every image under ``root``, relative to it, in sorted order.

    Hidden files and directories (including temporary files of interrupted writes) are skipped.
    """
    root = os.fspath(root)
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        rel_dir = os.path.relpath(directory, root)
        for name in sorted(files):
            if is_image_file(name) and not is_temporary_file(name):
                yield name if rel_dir == "." else f"{Path(rel_dir).as_posix()}/{name}"


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB (grayscale, palette, CMYK, 16-bit; alpha is composited on black)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grey levels (Pillow opens 16-bit PNGs as I;16 or I): full scale is 65535 for every image,
        # never a guess from the image's own maximum
        array = np.clip(np.asarray(image, dtype=np.float64), 0.0, 65535.0)
        image = Image.fromarray((array / 65535.0 * 255.0).round().astype(np.uint8), mode="L")
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_rgb(path: PathLike) -> np.ndarray:
    """Decode ``path`` fully and return an RGB uint8 array (H x W x 3).

    Raises :class:`ImageReadError` naming the file for a missing, empty, truncated or undecodable image.
    """
    if extension(path) in FITS_EXTENSIONS | NPY_EXTENSIONS:
        return as_rgb8(read_pixels(path))
    try:
        with Image.open(path) as image:
            image.load()
            return np.asarray(to_rgb(image), dtype=np.uint8)
    except _READ_ERRORS as error:
        raise ImageReadError(f"cannot read image {os.fspath(path)}: {_why_unreadable(path, error)}") from error


def _why_unreadable(path: PathLike, error: Exception) -> str:
    """PIL's reason, or plainer words for an empty file (PIL says it "cannot identify" it)."""
    with contextlib.suppress(OSError):
        if os.path.getsize(path) == 0:
            return "the file is empty (0 bytes)"
    return str(error)


def load_rgb_pil(path: PathLike) -> Image.Image:
    """Like :func:`load_rgb` but returns a PIL RGB image (for torchvision transforms)."""
    return Image.fromarray(load_rgb(path))


class ImageHeader(NamedTuple):
    """What :func:`read_pixels` will return, from the header: depth ("uint8", "uint16" or "float"), channels (an
    8-bit image is RGB: 3) and size."""

    depth: str
    channels: int
    height: int
    width: int

    def describe(self) -> str:
        """E.g. "16-bit, 1 channel" (for messages about trees that mix kinds)."""
        bits = {"uint8": "8-bit", "uint16": "16-bit"}.get(self.depth, "float")
        return f"{bits}, {self.channels} channel{'s' if self.channels > 1 else ''}"


def pixels_header(pixels: np.ndarray) -> ImageHeader:
    """The :class:`ImageHeader` of pixels :func:`read_pixels` returned."""
    depth = pixels.dtype.name if pixels.dtype in (np.uint8, np.uint16) else "float"
    return ImageHeader(depth, int(pixels.shape[2]), int(pixels.shape[0]), int(pixels.shape[1]))


def one_kind(headers: Iterable[tuple[str, ImageHeader]], where: str, why: str) -> ImageHeader:
    """The header of the first of ``(name, header)`` pairs, when every one has its depth and channel count;
    otherwise ``ValueError`` saying that ``where`` mixes kinds (``why`` they must not), naming one file of each."""
    first_of_kind: dict[tuple[str, int], tuple[str, ImageHeader]] = {}
    for name, header in headers:
        first_of_kind.setdefault((header.depth, header.channels), (name, header))
    if len(first_of_kind) > 1:
        examples = "; ".join(f"{name} ({header.describe()})" for name, header in first_of_kind.values())
        raise ValueError(f"{where} mixes images of different depths or channels, {why}: {examples}; convert them "
                         "to one kind or split the tree")
    return next(iter(first_of_kind.values()))[1]


def read_image_size(path: PathLike) -> tuple[int, int]:
    """(height, width) from the image header only; raises :class:`ImageReadError` naming the file."""
    header = read_image_header(path)
    return header.height, header.width


def read_image_header(path: PathLike) -> ImageHeader:
    """The :class:`ImageHeader` of an image, read from its header; raises :class:`ImageReadError` naming the
    file."""
    try:
        if extension(path) in SCIENTIFIC_EXTENSIONS:
            dtype, (height, width, channels) = header_kind(path)
            depth = _depth_of(np.dtype(dtype))
            return ImageHeader(depth, 3 if depth == "uint8" else channels, height, width)
        with Image.open(path) as image:
            width, height = image.size
            sixteen_bit = image.mode in _SIXTEEN_BIT_MODES
            return ImageHeader("uint16" if sixteen_bit else "uint8", 1 if sixteen_bit else 3, height, width)
    except _READ_ERRORS as error:
        raise ImageReadError(f"cannot read image {os.fspath(path)}: {_why_unreadable(path, error)}") from error


def _depth_of(dtype: np.dtype) -> str:
    if dtype.kind == "u" and dtype.itemsize in (1, 2):
        return "uint8" if dtype.itemsize == 1 else "uint16"
    return "float"


def read_pixels(path: PathLike, float_range: FloatRange | None = None) -> np.ndarray:
    """The pixels of ``path`` at their own depth (see the module docstring): RGB uint8 (exactly :func:`load_rgb`),
    uint16 H x W x C, or float32 H x W x C in [0, 1] mapped from ``float_range`` (lo, hi), which float images
    need; raises :class:`ImageReadError` naming the file."""
    unit_range = False
    try:
        if extension(path) in SCIENTIFIC_EXTENSIONS:
            array, unit_range = decode_scientific(path)
            if array is None:
                return load_rgb(path)  # 8-bit TIFF: PIL, as always
        else:
            with Image.open(path) as image:
                image.load()
                if image.mode not in _SIXTEEN_BIT_MODES:
                    return np.asarray(to_rgb(image), dtype=np.uint8)  # what load_rgb returns, from one open
                array = np.clip(np.asarray(image), 0, 65535).astype(np.uint16)[:, :, None]
    except _READ_ERRORS as error:
        raise ImageReadError(f"cannot read image {os.fspath(path)}: {_why_unreadable(path, error)}") from error
    if array.dtype == np.uint8:
        return np.repeat(array, 3, axis=2) if array.shape[2] == 1 else np.ascontiguousarray(array)
    if array.dtype == np.uint16:
        return np.ascontiguousarray(array)
    if unit_range:
        float_range = (0.0, 1.0)
    if float_range is None:
        raise ImageReadError(f"cannot read image {os.fspath(path)}: its {array.dtype.name} values need its tree's "
                             "value range (python process_metadata.py ROOT records it in the tree's index)")
    low, high = float_range
    scaled = (array.astype(np.float32) - np.float32(low)) / np.float32(max(high - low, 1e-12))
    return np.clip(np.nan_to_num(scaled, nan=0.0), 0.0, 1.0)


def to_unit(pixels: np.ndarray) -> np.ndarray:
    """Pixels of any depth as float32 in [0, 1] (8-bit / 255, 16-bit / 65535, float as they are)."""
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / np.float32(255.0)
    if pixels.dtype == np.uint16:
        return pixels.astype(np.float32) / np.float32(65535.0)
    return pixels.astype(np.float32, copy=False)


def as_rgb8(pixels: np.ndarray) -> np.ndarray:
    """Pixels of any depth as RGB uint8 (for the stages that see 8-bit RGB: the probes, the figures): rounded to
    the nearest of the 256 levels, one channel replicated."""
    if pixels.dtype != np.uint8:
        pixels = np.floor(to_unit(pixels) * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


def encode_png(array: np.ndarray, compress_level: int = DEFAULT_PNG_COMPRESSION) -> bytes:
    """Encode a uint8 array (H x W x 3 or H x W) as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def save_png_atomic(array: np.ndarray, path: PathLike, compress_level: int = DEFAULT_PNG_COMPRESSION) -> None:
    """Write ``array`` as a PNG at ``path`` atomically (never a half-written file)."""
    atomic_write_bytes(path, encode_png(array, compress_level))


def png_relpath(relpath: str) -> str:
    """The relative path of a PNG copy of ``relpath``: same folders and stem, ``.png`` extension."""
    return f"{os.path.splitext(relpath)[0]}.png"


def copy_relpath(relpath: str, depth: str) -> str:
    """Where a copy of ``relpath`` at ``depth`` is written: ``.png`` for 8-bit pixels (as always), ``.tif`` for
    16-bit and float ones."""
    return png_relpath(relpath) if depth == "uint8" else f"{os.path.splitext(relpath)[0]}.tif"


# formats that may hold more than 8 bits per channel (their copies' extension needs a look at the header)
_DEEP_FORMATS = SCIENTIFIC_EXTENSIONS | {".png", ".pgm", ".ppm"}


def copy_depth(source: PathLike) -> str:
    """The depth a copy of ``source`` is written at, from its header where the format may hold more than 8 bits
    ("uint8" where the header is unreadable: the copy's writer reports the file)."""
    if extension(source) not in _DEEP_FORMATS:
        return "uint8"
    try:
        return read_image_header(source).depth
    except ImageReadError:
        return "uint8"


def save_pixels_atomic(pixels: np.ndarray, path: PathLike, compress_level: int = DEFAULT_PNG_COMPRESSION) -> None:
    """Write pixels of any depth atomically: 8-bit as PNG (:func:`save_png_atomic`), one-channel 16-bit as a 16-bit
    PNG where ``path`` ends in ``.png``, else 16-bit and float32 as a zlib-compressed TIFF (one channel stored as a
    2-D image)."""
    if pixels.dtype == np.uint8:
        save_png_atomic(pixels, path, compress_level)
        return
    if extension(path) == ".png":
        if pixels.dtype != np.uint16 or pixels.shape[2] != 1:
            raise ValueError(f"{path}: PNG holds 16-bit pixels of one channel only, got {pixels.dtype} x "
                             f"{pixels.shape[2]}; write a .tif")
        buffer = io.BytesIO()
        Image.fromarray(pixels[:, :, 0]).save(buffer, format="PNG", compress_level=compress_level)
        atomic_write_bytes(path, buffer.getvalue())
        return
    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, pixels[:, :, 0] if pixels.shape[2] == 1 else pixels, compression="zlib",
                     photometric="minisblack" if pixels.shape[2] == 1 else "rgb", metadata=None,
                     description=UNIT_RANGE_DESCRIPTION if pixels.dtype == np.float32 else None)
    atomic_write_bytes(path, buffer.getvalue())
