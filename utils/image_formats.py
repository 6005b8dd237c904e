"""The scientific formats: TIFF of any depth (``tifffile``), FITS (``astropy.io.fits``) and NPY, decoded into arrays
of the file's own type, H x W x C (C = 1 or 3), never rescaled here.

PIL reads the formats of photographs (and 8-bit TIFF, as the project always did); these readers serve what PIL
reads wrongly or not at all: 16-bit colour and float TIFF, FITS images, NumPy arrays. A FITS file's image is its
first HDU holding 2-D data (a cube whose extra axes are all of length 1 counts as 2-D); its BSCALE / BZERO are
applied, as astropy does.
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

from utils.atomic import PathLike

TIFF_EXTENSIONS = frozenset({".tif", ".tiff"})
FITS_EXTENSIONS = frozenset({".fits", ".fit", ".fts"})
NPY_EXTENSIONS = frozenset({".npy"})


# written into the float TIFFs this project makes (noisy and denoised copies hold values in [0, 1]): such a file
# is read on that scale, where any other float image needs its tree's range
UNIT_RANGE_DESCRIPTION = "noisy-ssl: values in [0, 1]"


class FormatError(ValueError):
    """A file whose content is not an image this project reads; the message says what it holds instead."""


def extension(path: PathLike) -> str:
    return os.path.splitext(os.fspath(path))[1].lower()


def _channel_axis(shape: tuple[int, ...]) -> str:
    """How an image array of ``shape`` holds its channels: "none" (H x W), "last" or "first"; raises
    :class:`FormatError` for any other shape."""
    if len(shape) == 2:
        return "none"
    if len(shape) == 3 and shape[-1] in (1, 3, 4):
        return "last"
    if len(shape) == 3 and shape[0] in (1, 3, 4):
        return "first"
    raise FormatError(f"holds an array of shape {shape}: expected H x W, H x W x C or C x H x W with C = 1, 3 or 4 "
                      "(an alpha channel is dropped)")


def image_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(height, width, channels) of an image array of ``shape`` as :func:`channels_last` returns it."""
    axis = _channel_axis(shape)
    if axis == "none":
        return shape[0], shape[1], 1
    height, width, channels = (shape[1], shape[2], shape[0]) if axis == "first" else shape
    return height, width, min(channels, 3)


def channels_last(array: np.ndarray) -> np.ndarray:
    """An image array as H x W x C with C = 1 or 3 (a 2-D array gets one channel; C x H x W is transposed; an
    alpha channel is dropped)."""
    axis = _channel_axis(array.shape)
    if axis == "none":
        return array[:, :, None]
    if axis == "first":
        array = np.moveaxis(array, 0, -1)
    return array[:, :, :3] if array.shape[-1] == 4 else array


def _tiff(path: PathLike) -> tuple[np.ndarray | None, bool]:
    """The first page's pixels (None for an 8-bit TIFF: PIL reads those, as it always did) and whether the file
    declares the [0, 1] range, from one open of the file."""
    import tifffile

    with tifffile.TiffFile(os.fspath(path)) as tiff:
        page = tiff.pages[0]
        if np.dtype(page.dtype) == np.uint8:
            return None, False
        return page.asarray(), page.description == UNIT_RANGE_DESCRIPTION


def _fits(path: PathLike) -> np.ndarray:
    from astropy.io import fits

    with fits.open(os.fspath(path), memmap=False) as hdus:
        for hdu in hdus:
            data = getattr(hdu, "data", None)
            if isinstance(data, np.ndarray) and data.dtype.fields is None and data.size:
                squeezed = np.squeeze(data)
                if squeezed.ndim == 2:
                    return np.array(squeezed)
        shapes = [getattr(hdu.data, "shape", None) for hdu in hdus]
    raise FormatError(f"holds no 2-D image in any HDU (data shapes: {shapes})")


def _check_npy_magic(path: PathLike) -> None:
    with open(path, "rb") as handle:
        if handle.read(6) != b"\x93NUMPY":
            raise FormatError("is not a NumPy .npy file (no NPY header)")


def _npy(path: PathLike) -> np.ndarray:
    _check_npy_magic(path)
    array = np.load(os.fspath(path), allow_pickle=False)
    if not isinstance(array, np.ndarray) or array.dtype.fields is not None:
        raise FormatError("holds no plain numeric array")
    return array


_DECODERS: dict[str, Callable[[PathLike], tuple[np.ndarray | None, bool]]] = {
    **{ext: _tiff for ext in TIFF_EXTENSIONS}, **{ext: lambda path: (_fits(path), False) for ext in FITS_EXTENSIONS},
    **{ext: lambda path: (_npy(path), False) for ext in NPY_EXTENSIONS},
}


def decode_scientific(path: PathLike) -> tuple[np.ndarray | None, bool]:
    """The image of a TIFF, FITS or NPY file as H x W x C in its own dtype (None for an 8-bit TIFF, which PIL
    reads), and whether the file declares its values on [0, 1] (the float TIFFs this project writes: see
    ``UNIT_RANGE_DESCRIPTION``); raises :class:`FormatError` or the reader's own error (callers turn both into one
    line naming the file)."""
    array, unit_range = _DECODERS[extension(path)](path)
    if array is None:
        return None, False
    if array.dtype.kind not in "uif":
        raise FormatError(f"holds {array.dtype} values: expected integers or floats")
    return channels_last(array.astype(array.dtype.newbyteorder("="), copy=False)), unit_range  # FITS: big-endian


def header_kind(path: PathLike) -> tuple[str, tuple[int, int, int]]:
    """(NumPy dtype name, (height, width, channels)) of a TIFF, FITS or NPY image, from its header where the format
    has one (NPY, TIFF), else by decoding it."""
    ext = extension(path)
    if ext in NPY_EXTENSIONS:
        _check_npy_magic(path)
        array = np.load(os.fspath(path), mmap_mode="r", allow_pickle=False)  # the header; no pixel is read
        return array.dtype.name, image_shape(array.shape)
    if ext in TIFF_EXTENSIONS:
        import tifffile

        with tifffile.TiffFile(os.fspath(path)) as tiff:
            page = tiff.pages[0]
            return np.dtype(page.dtype).name, image_shape(tuple(page.shape))
    array, _ = decode_scientific(path)  # FITS: no header says which HDU holds the image
    return array.dtype.name, array.shape
