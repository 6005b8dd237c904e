"""Device and mixed-precision selection, with one meaning for every stage (training, denoising, evaluation).

``--device auto`` is the first CUDA GPU when there is one, else the CPU; ``cpu``, ``cuda`` and ``cuda:N`` are taken
as given, and asking for CUDA on a machine without it is an error, never a silent fallback.
``--precision auto`` is bf16 on CUDA (fp16 on GPUs without bf16) and fp32 on the CPU; an explicit ``fp16`` or
``bf16`` is honoured on CUDA, and the CPU always computes in fp32 (its autocast is slower than fp32 there).
"""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
AUTOCAST_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` as a ``torch.device``; ValueError naming ``--device`` otherwise."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"--device {name!r}: expected one of {DEVICES} or cuda:N") from error
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name!r}: expected one of {DEVICES} or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return device


def resolve_precision(name: str, device: torch.device) -> str:
    """The precision actually used on ``device`` (see the module docstring): one of fp32, bf16, fp16."""
    if name not in PRECISIONS:
        raise ValueError(f"--precision {name!r}: expected one of {PRECISIONS}")
    if device.type != "cuda":
        return "fp32"
    if name == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return name


def autocast(device: torch.device, precision: str) -> ContextManager:
    """The autocast context of a resolved ``precision`` on ``device`` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[precision])
