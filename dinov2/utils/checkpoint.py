"""Full training checkpoints and encoder exports.

A full checkpoint ``model_<it:07d>.pth`` (``it`` = index of the last finished iteration, as upstream names
them) holds everything needed to continue bit-exactly: the SSLMetaArch state (student, teacher, loss
centers), optimizer, grad scaler, the number of finished iterations, RNG states, the resolved config and a
format version. Files are written atomically by rank 0; only the last ``max_to_keep`` are kept, and the newest
one is never deleted. Everything is stored as tensors, numbers and strings, so it loads with
``weights_only=True``.

An encoder export ``eval/training_<it>/<encoder>_checkpoint.pth`` holds the evaluated encoder alone, under its own
name: ``teacher`` (the EMA teacher of DINOv2, DINO and iBOT: upstream's ``teacher_checkpoint.pth``) or ``student``
(SimCLR, MoCo v3 and SimSiam). Runs written before contrastive exports were named for their encoder hold
``teacher_checkpoint.pth`` whatever the method; they are read as they are.
"""

from __future__ import annotations

import random
import re
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from utils.atomic import atomic_torch_save, is_temporary_file
from utils.paper_facts import EXPORT_DIR, EXPORT_ENCODERS, export_name
from utils.weights_file import WeightsFileError, describe_contents, load_torch_file

FORMAT_VERSION = 1
CHECKPOINT_PATTERN = re.compile(r"^model_(\d{7,})\.pth$")
CONFIG_FILENAME = "config.yaml"  # the resolved config of a run directory, beside its checkpoints
# the folder name of an encoder export (``training_<it>``), read from the one spelling of its path
EXPORT_DIR_PATTERN = re.compile(
    "^" + re.escape(Path(EXPORT_DIR).name).replace(re.escape("{iteration}"), r"(\d+)") + "$")


def checkpoint_path(output_dir: Path, last_iteration: int) -> Path:
    """``DIR/model_<last_iteration:07d>.pth``."""
    return Path(output_dir) / f"model_{last_iteration:07d}.pth"


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Full checkpoints of a run directory, newest first (temporary files are never listed)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = []
    for path in output_dir.iterdir():
        match = CHECKPOINT_PATTERN.match(path.name)
        if match and not is_temporary_file(path.name) and path.is_file():
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found, reverse=True)]


FULL_CHECKPOINT = f"a full training checkpoint of this project (model_<it>.pth, format version {FORMAT_VERSION})"


def load_checkpoint(path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a full checkpoint with ``weights_only=True`` and check its format version; :class:`WeightsFileError`
    (one line naming the file and what it holds) for anything else."""
    state = load_torch_file(path, FULL_CHECKPOINT, map_location)
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        found = describe_contents(state)
        hint = " (a run's model_<it>.pth, or RUN@EPOCH)" if "encoder export" in found else ""
        raise WeightsFileError(f"{path} holds {found}: expected {FULL_CHECKPOINT}{hint}")
    return state


class CheckpointError(RuntimeError):
    """A run folder holds checkpoints, but none of them loads: resuming would silently start afresh."""


def newest_loadable_checkpoint(output_dir: Path) -> Optional[tuple[Path, dict[str, Any]]]:
    """The newest checkpoint that loads (a damaged newer file is skipped with a warning), or None when the folder
    holds none; :class:`CheckpointError` naming them when it holds checkpoints and none loads."""
    found = list_checkpoints(output_dir)
    for path in found:
        try:
            return path, load_checkpoint(path)
        except Exception as error:  # any damage (truncation, wrong format) means: try the previous one
            warnings.warn(f"skipping checkpoint {path}: it does not load ({type(error).__name__}: {error})")
    if found:
        raise CheckpointError(f"none of the checkpoints of {output_dir} loads ({', '.join(p.name for p in found)}); "
                              "delete them to start afresh, or use another --output-dir")
    return None


def save_checkpoint(output_dir: Path, last_iteration: int, state: dict[str, Any], max_to_keep: int) -> Path:
    """Write ``state`` atomically as the checkpoint of ``last_iteration``, then drop all but the newest
    ``max_to_keep``."""
    path = checkpoint_path(output_dir, last_iteration)
    atomic_torch_save({"format_version": FORMAT_VERSION, **state}, path)
    for old in list_checkpoints(output_dir)[max(max_to_keep, 1) :]:
        if old != path:
            old.unlink(missing_ok=True)
    return path


def encoder_export_dir(output_dir: Path, last_iteration: int) -> Path:
    """``DIR/eval/training_<last_iteration>``: the folder of the encoder export written after that iteration."""
    return Path(output_dir) / EXPORT_DIR.format(iteration=last_iteration)


def encoder_export_path(output_dir: Path, last_iteration: int, encoder: str = "teacher") -> Path:
    """``DIR/eval/training_<last_iteration>/<encoder>_checkpoint.pth``."""
    return encoder_export_dir(output_dir, last_iteration) / export_name(encoder)


def export_in(folder: Path) -> Optional[Path]:
    """The encoder export an ``eval/training_<it>`` folder holds (the teacher's or the student's), or None."""
    for encoder in EXPORT_ENCODERS:
        path = Path(folder) / export_name(encoder)
        if path.is_file():
            return path
    return None


def list_encoder_exports(run_dir: Path) -> list[Path]:
    """Every encoder export ``DIR/eval/training_<it>/<encoder>_checkpoint.pth`` of a run, oldest first;
    FileNotFoundError when the run has none."""
    eval_dir = Path(run_dir) / Path(EXPORT_DIR).parent
    expected = f"{EXPORT_DIR.format(iteration='<it>')}/{' or '.join(map(export_name, EXPORT_ENCODERS))}"
    if not eval_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} has no eval/ folder of encoder exports ({expected})")
    found = []
    for entry in eval_dir.iterdir():
        match = EXPORT_DIR_PATTERN.match(entry.name)
        export = export_in(entry) if match else None
        if export is not None:
            found.append((int(match.group(1)), export))
    if not found:
        raise FileNotFoundError(f"{run_dir} holds no encoder export ({expected})")
    return [path for _, path in sorted(found)]


def newest_encoder_export(run_dir: Path) -> Path:
    """The encoder export of a run's largest iteration; FileNotFoundError when the run has none."""
    return list_encoder_exports(run_dir)[-1]


def write_encoder_export(output_dir: Path, last_iteration: int, encoder: str, state: dict[str, torch.Tensor],
                         config_yaml: str) -> Path:
    """Write ``{encoder: state, "iteration": it, "config": yaml}`` (keys ``backbone.*`` and heads) as
    ``<encoder>_checkpoint.pth``."""
    path = encoder_export_path(output_dir, last_iteration, encoder)
    atomic_torch_save({encoder: state, "iteration": last_iteration, "config": config_yaml}, path)
    return path


def capture_rng_state() -> dict[str, Any]:
    """torch (CPU and the current CUDA device), NumPy and Python global RNG states, as tensors and plain numbers.

    Only the current device's CUDA state is kept: a rank draws on its own device only, and a resume on a machine
    with another number of visible devices must find every state it restores (each rank's is gathered apart)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["internal"].tolist()), python_state["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_state = state["cuda"]
        if isinstance(cuda_state, (list, tuple)):  # older checkpoints: one state per device the process saw
            device = torch.cuda.current_device()
            if device >= len(cuda_state):
                warnings.warn(f"the checkpoint holds CUDA RNG states of {len(cuda_state)} devices, none for device "
                              f"{device}: its CUDA RNG starts afresh")
                return
            cuda_state = cuda_state[device]
        torch.cuda.set_rng_state(cuda_state)
