"""Image I/O shared by every stage: listing image files, decoding to RGB, atomic PNG writes."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from utils.atomic import PathLike, atomic_write_bytes, is_temporary_file

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif"}
)
DEFAULT_PNG_COMPRESSION = 1  # noisy images barely compress; level 1 writes them several times faster than 6


class ImageReadError(RuntimeError):
    """An image file that cannot be opened or decoded; the message names the file."""


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
    try:
        with Image.open(path) as image:
            image.load()
            return np.asarray(to_rgb(image), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
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


def read_image_size(path: PathLike) -> tuple[int, int]:
    """(height, width) from the image header only; raises :class:`ImageReadError` naming the file."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
        raise ImageReadError(f"cannot read image {os.fspath(path)}: {error}") from error
    return height, width


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
