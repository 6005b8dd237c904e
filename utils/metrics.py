"""Image quality metrics on [0, 1], uint8 or uint16 arrays: PSNR and the paper's SNR."""

from __future__ import annotations

import math

import numpy as np


def _as_unit_float(image: np.ndarray) -> np.ndarray:
    """uint8 images are scaled to [0, 1] by 255, uint16 by 65535; float images are taken as already on [0, 1]."""
    image = np.asarray(image)
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(image.dtype, 1.0)
    return image.astype(np.float64) / scale


def squared_error_sums(clean: np.ndarray, noisy: np.ndarray) -> tuple[float, float, int]:
    """Return (sum of clean^2, sum of (noisy - clean)^2, number of values) on the [0, 1] scale."""
    clean, noisy = np.asarray(clean), np.asarray(noisy)
    if clean.shape != noisy.shape:
        raise ValueError(f"shape mismatch: clean {clean.shape} vs noisy {noisy.shape}")
    if clean.dtype == np.uint8 and noisy.dtype == np.uint8:
        # Exact integer sums: several times faster than float64 on the large images of noise generation.
        x = clean.astype(np.int32)
        d = noisy.astype(np.int32) - x
        scale = 255.0**2
        return float(np.einsum("i,i->", x.ravel(), x.ravel(), dtype=np.int64)) / scale, float(
            np.einsum("i,i->", d.ravel(), d.ravel(), dtype=np.int64)) / scale, int(x.size)
    x, y = _as_unit_float(clean), _as_unit_float(noisy)
    return float(np.square(x).sum()), float(np.square(y - x).sum()), int(x.size)


def psnr_and_snr(clean: np.ndarray, noisy: np.ndarray) -> tuple[float, float]:
    """(PSNR, SNR) in dB from one pass over the images."""
    signal, error, count = squared_error_sums(clean, noisy)
    return psnr_from_mse(error / count), (math.inf if error <= 0 else 10.0 * math.log10(signal / error))


def psnr_from_mse(mse: float, data_range: float = 1.0) -> float:
    """PSNR in dB for a mean squared error (``inf`` for identical images)."""
    return math.inf if mse <= 0 else 10.0 * math.log10(data_range**2 / mse)


def psnr(clean: np.ndarray, noisy: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB on the [0, 1] scale."""
    _, error, count = squared_error_sums(clean, noisy)
    return psnr_from_mse(error / count)


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    """The paper's SNR: 10 log10(mean(x^2) / mean((y - x)^2)) in dB, after clipping and quantisation."""
    return psnr_and_snr(clean, noisy)[1]
