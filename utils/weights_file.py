"""The one way weight files are read: ``torch.load(weights_only=True)`` (``.safetensors`` files by safetensors)
whose every failure is one line naming the file and what was expected.

torch answers a damaged or foreign file with a handful of unrelated exceptions (EOFError for an empty file,
RuntimeError from the zip reader for a truncated one, UnpicklingError or KeyError for text, a page of documentation
for a pickle that would run code when loaded) and never names the file. Every reader of checkpoints, teacher
exports, denoisers and bare state dicts goes through :func:`load_torch_file`, and the checks of what a file holds
use :func:`describe_contents` to say what was found instead.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from utils.cli import squeezed
from utils.paper_facts import EXPORT_DIR, EXPORT_ENCODERS, export_name

# what the zip reader says when asked to mmap a file in torch's legacy (non-zip) format: read it without mmap
_LEGACY_FORMAT_MESSAGE = "mmap can only be used with files saved with"


class WeightsFileError(ValueError):
    """A weights file that cannot be used; the message is one line naming the file and what was expected (a
    ValueError: the command lines report it as bad input, exit status 2)."""


def _reason(error: BaseException) -> str:
    """Why torch could not read a file, in words (never its multi-line advice)."""
    text = str(error)
    if isinstance(error, pickle.UnpicklingError):
        found = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", text)
        if found:
            return (f"it holds a Python object ({found.group(1)}) that would run code when loaded, which is refused "
                    "(only tensors and plain containers are read)")
        return "it is a pickle or other data that is not a torch weights file"
    if isinstance(error, EOFError) or "central directory" in text or "PytorchStreamReader" in text:
        return "it is truncated or not a torch file"
    return f"it is not a torch file ({type(error).__name__} while reading it)"


def load_torch_file(path: Path, expected: str, map_location: Any = "cpu", mmap: bool = False) -> Any:
    """The object saved in ``path``, read with ``weights_only=True``; :class:`WeightsFileError` naming ``path`` and
    ``expected`` (e.g. "a full training checkpoint") when it is missing, empty, damaged, not a torch file, or a
    pickle that would run code."""
    path = Path(path)
    if not path.is_file():
        what = "a folder" if path.is_dir() else "missing"
        raise WeightsFileError(f"{path} is {what}: expected {expected}")
    if path.stat().st_size == 0:
        raise WeightsFileError(f"{path} is empty: expected {expected}")
    if path.suffix == ".safetensors":
        return _load_safetensors(path, expected, map_location)
    try:
        try:
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
        except RuntimeError as error:
            if not (mmap and _LEGACY_FORMAT_MESSAGE in str(error)):
                raise
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many unrelated types for damaged files; each becomes one line
        raise WeightsFileError(f"{path}: {_reason(error)}; expected {expected}") from error


def _load_safetensors(path: Path, expected: str, map_location: Any) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        tensors = load(path.read_bytes())
    except (SafetensorError, ValueError, OSError) as error:  # truncated or not safetensors
        raise WeightsFileError(f"{path}: it is truncated or not a safetensors file ({squeezed(error, 120)}); "
                               f"expected {expected}") from None
    return {key: value.to(map_location) for key, value in tensors.items()}


def export_encoder(state: Any) -> str | None:
    """The encoder an encoder export holds (``teacher`` or ``student``, its key), or None for anything else."""
    if isinstance(state, Mapping) and "model" not in state:
        for encoder in EXPORT_ENCODERS:
            if isinstance(state.get(encoder), Mapping):
                return encoder
    return None


def is_training_file(state: Any) -> bool:
    """A full checkpoint (weights under ``model``) or an encoder export (under its encoder's name), not a bare state
    dict."""
    return isinstance(state, Mapping) and ("model" in state or export_encoder(state) is not None)


def describe_contents(state: Any) -> str:
    """What a loaded weights object looks like, for messages: a full checkpoint, an encoder export, a Neighbor2Neighbor
    denoiser, a bare state dict, or its type."""
    if not isinstance(state, dict):
        return f"a {type(state).__name__}"
    if "model" in state and "optimizer" in state and "format_version" in state:
        return "a full training checkpoint (model_<it>.pth)"
    encoder = export_encoder(state)
    if encoder is not None:
        return f"an encoder export ({EXPORT_DIR.format(iteration='<it>')}/{export_name(encoder)})"
    if "model_config" in state or any(str(key).startswith(("encoder.0.", "module.encoder.0.")) for key in state) or (
            isinstance(state.get("model"), dict) and any(str(k).startswith("encoder.0.") for k in state["model"])):
        return "a Neighbor2Neighbor denoiser"
    if state and all(isinstance(value, torch.Tensor) for value in state.values()):
        return f"a state dict of {len(state)} tensors"
    return f"a dict with keys {sorted(map(str, state))[:4]}"
