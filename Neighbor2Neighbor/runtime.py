"""Device, precision and memory-format choices shared by training, denoising and the benchmark."""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; asking for ``cuda`` without a GPU is an error."""
    if name not in DEVICES:
        raise ValueError(f"--device {name!r}: expected one of {DEVICES}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was requested but no CUDA device is available")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto`` is bf16 on CUDA (fp16 on GPUs without bf16) and fp32 on CPU; CPU always runs fp32."""
    if name not in PRECISIONS:
        raise ValueError(f"--precision {name!r}: expected one of {PRECISIONS}")
    if device.type != "cuda":
        return "fp32"
    if name == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return name


def autocast(device: torch.device, precision: str) -> ContextManager:
    """The autocast context for ``precision`` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def memory_format(device: torch.device) -> torch.memory_format:
    """channels-last on CUDA (faster convolutions with tensor cores), contiguous elsewhere."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format
