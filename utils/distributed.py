"""Process-group set-up for ``torchrun`` (and ``srun torchrun``): one process and no group without it.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; these launcher variables are the only
environment read here (they say how the job was launched, never how to train). NCCL is used on GPUs, gloo on
the CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from utils.device import resolve_device


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the job, and the device it computes on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_world_size() -> int:
    """WORLD_SIZE of a torchrun launch, 1 otherwise."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_local_rank() -> int:
    """LOCAL_RANK of a torchrun launch (the process's index on its node), 0 otherwise."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def rank_device(name: str) -> torch.device:
    """``--device`` (see :func:`utils.device.resolve_device`), a bare ``cuda`` (or ``auto`` on a GPU machine)
    meaning this rank's GPU, ``cuda:LOCAL_RANK``, under torchrun: for jobs that need no process group."""
    device = resolve_device(name)
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", launched_local_rank())
    return device


def setup(device: str = "auto", key: str = "--device") -> DistributedContext:
    """This process's place in the job and its device (``device``: auto, cpu or cuda, as
    :func:`utils.device.resolve_device`, errors naming ``key``; a GPU means this rank's, ``cuda:LOCAL_RANK``);
    initialises the default process group when launched by torchrun with more than one process."""
    n_ranks = launched_world_size()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = launched_local_rank()
    use_cuda = resolve_device(device, key).type == "cuda"
    if use_cuda:
        torch.cuda.set_device(local_rank)
        compute = torch.device("cuda", local_rank)
    else:
        compute = torch.device("cpu")
    if n_ranks > 1 and not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=n_ranks,
                                device_id=compute if use_cuda else None)
    return DistributedContext(rank=rank, world_size=n_ranks, local_rank=local_rank, device=compute)


def is_enabled() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of ranks (1 without a process group)."""
    return dist.get_world_size() if is_enabled() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_enabled() else 0


def barrier() -> None:
    """Wait for every rank (a no-op in one process)."""
    if is_enabled():
        dist.barrier()


def all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (in place; returns the tensor)."""
    if is_enabled():
        dist.all_reduce(value)
    return value


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean over ranks (in place; returns the tensor)."""
    if is_enabled():
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return value


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` without a group)."""
    if not is_enabled():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not is_enabled():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def cleanup() -> None:
    """Destroy the process group if this process created one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
