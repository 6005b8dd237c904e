"""Device and mixed-precision selection, with one meaning for every stage (training, denoising, evaluation).

``--device auto`` is the first CUDA GPU when there is one, else the CPU; ``cpu``, ``cuda`` and ``cuda:N`` are taken
as given, and asking for CUDA on a machine without it is an error, never a silent fallback. When GPUs are visible
but torch cannot use them (a driver older than the wheel's CUDA, a CPU-only build), ``auto`` warns that it runs on
the CPU and says why.
``--precision auto`` is bf16 on CUDA (fp16 on GPUs without bf16) and fp32 on the CPU; an explicit ``fp16`` or
``bf16`` is honoured on CUDA, and the CPU always computes in fp32 (its autocast is slower than fp32 there).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import ContextManager, Optional

import torch

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
AUTOCAST_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


# CUDA_VISIBLE_DEVICES values that hide every GPU
_NO_DEVICES = {"", "-1", "none", "NoDevFiles"}


def visible_gpus() -> Optional[str]:
    """What shows that this machine has NVIDIA GPUs for this process (a CUDA_VISIBLE_DEVICES list, the driver's
    device files), whether or not torch can use them; None when nothing does."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return None if listed.strip() in _NO_DEVICES else f"CUDA_VISIBLE_DEVICES={listed}"
    for evidence in ("/proc/driver/nvidia/version", "/dev/nvidia0"):
        if Path(evidence).exists():
            return evidence
    return None


def cuda_unusable_reason() -> Optional[str]:
    """Why torch cannot use the GPUs this machine shows (see :func:`visible_gpus`); None when CUDA is usable or
    no GPU is visible."""
    if torch.cuda.is_available():
        return None
    evidence = visible_gpus()
    if evidence is None:
        return None
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    return (f"GPUs are visible ({evidence}) but torch {torch.__version__} ({build}) cannot use them: check that the "
            "NVIDIA driver supports that CUDA version (nvidia-smi), or install a torch build for the driver")


def resolve_device(name: str, key: str = "--device") -> torch.device:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` as a ``torch.device``; ValueError naming ``key`` (the option or
    config key) otherwise, or when CUDA is asked for and not usable. ``auto`` on the CPU warns when GPUs are
    visible but unusable (:func:`cuda_unusable_reason`)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        reason = cuda_unusable_reason()
        if reason is not None:
            warnings.warn(f"{key} auto: running on the CPU. {reason}")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"{key} {name!r}: expected one of {DEVICES} or cuda:N") from error
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"{key} {name!r}: expected one of {DEVICES} or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        reason = cuda_unusable_reason()
        raise ValueError(f"{key} {name}: CUDA is not available on this machine{': ' + reason if reason else ''}")
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
