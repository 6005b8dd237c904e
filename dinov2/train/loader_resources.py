"""What the training loader may use of the machine: its worker count and the shared memory its batches fill.

``train.num_workers`` is a wish: inside a container, a cgroup or a SLURM step the process may run on fewer CPUs
than the machine has, and every rank of a node starts its own workers. Worker processes hand their batches to the
main process through ``/dev/shm``, which containers size at 64 MB by default: a loader that fills it dies with a
bus error mid-run. Both are checked before the first batch, with one warning naming the key and the numbers.
The sample stream does not depend on the worker count (every sample carries its own seed), so capping it changes
no result.
"""

from __future__ import annotations

import os
import shutil
import warnings
from typing import Optional

from omegaconf import DictConfig

from utils.cpus import usable_cpus

SHARED_MEMORY = "/dev/shm"
BYTES_PER_VALUE = 1  # crops travel as uint8 (dinov2.data.crops.normalize_crops makes them float32 on the device)


def local_ranks() -> int:
    """Ranks of this job on this node (torchrun's LOCAL_WORLD_SIZE, 1 without it)."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def capped_workers(requested: int, cpus: int, ranks_on_node: int) -> tuple[int, Optional[str]]:
    """(workers, warning or None): at most one worker per CPU this rank's share leaves beside its main process."""
    cap = max(1, cpus // ranks_on_node - 1)
    if requested <= cap:
        return requested, None
    return cap, (f"train.num_workers={requested} exceeds the {cpus} CPU(s) this process may use shared by "
                 f"{ranks_on_node} rank(s) on the node: using {cap} loader worker(s)")


def batch_bytes(cfg: DictConfig, paired: bool = False) -> int:
    """Estimated bytes of one collated batch of this rank (global and local crops, uint8; a ``paired`` (NCT)
    batch adds the denoised global crops)."""
    global_values = 2 * cfg.student.in_chans * cfg.crops.global_crops_size ** 2
    local_values = cfg.crops.local_crops_number * cfg.student.in_chans * cfg.crops.local_crops_size ** 2
    per_image = global_values * (2 if paired else 1) + local_values
    return cfg.train.batch_size_per_gpu * per_image * BYTES_PER_VALUE


def shared_memory_warning(bytes_per_batch: int, workers: int, free_bytes: Optional[int],
                          prefetch_factor: int = 2) -> Optional[str]:
    """A warning when the batches the workers keep in flight would not fit the free shared memory."""
    if workers == 0 or free_bytes is None:
        return None
    needed = bytes_per_batch * workers * prefetch_factor
    if needed <= free_bytes:
        return None
    return (f"{workers} loader worker(s) keep about {needed / 2**20:.0f} MiB of batches in {SHARED_MEMORY}, which "
            f"has {free_bytes / 2**20:.0f} MiB free: the loader may die with a bus error; give the container more "
            f"shared memory (docker run --shm-size=...), or lower train.num_workers or train.batch_size_per_gpu")


def free_shared_memory(path: str = SHARED_MEMORY) -> Optional[int]:
    """Free bytes of the shared-memory filesystem, None when there is none to read."""
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def loader_workers(cfg: DictConfig, paired: bool = False) -> int:
    """``train.num_workers`` capped to the CPUs this rank may use, with a warning for each limit met."""
    workers, warning = capped_workers(cfg.train.num_workers, usable_cpus(), local_ranks())
    if warning:
        warnings.warn(warning)
    warning = shared_memory_warning(batch_bytes(cfg, paired), workers, free_shared_memory())
    if warning:
        warnings.warn(warning)
    return workers
