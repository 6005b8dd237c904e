"""Splitting per-image work (noise generation, denoising) over processes, GPUs, nodes and SLURM array tasks.

A job's work is cut into shards by an explicit ``--shard I/N`` (``I`` counts from 0: SLURM job arrays pass
``--shard ${SLURM_ARRAY_TASK_ID}/N``) and, under ``torchrun``, further by rank: ``torchrun --nproc_per_node=G``
with ``--shard I/N`` runs shard ``I * G + rank`` of ``N * G``. Shards take every ``count``-th unit of work, so
each unit has exactly one owner whatever the split, and their union is the whole job. This module is torch-free
(the data-preparation tools do not need torch); it reads torchrun's RANK / WORLD_SIZE, which say how the job was
launched, never how to compute.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Sequence, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0 <= index < count)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: expected 0 <= I < N")

    def take(self, items: Sequence[T]) -> list[T]:
        """Every ``count``-th item, starting at ``index``."""
        return list(items[self.index::self.count])

    @property
    def whole(self) -> bool:
        return self.count == 1

    @property
    def lock_name(self) -> str:
        """The name of this shard's lock on a folder the shards write together (none for a whole job)."""
        return "" if self.whole else f"shard-{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``I/N`` -> :class:`Shard`; ``argparse.ArgumentTypeError`` (a usage error, exit status 2) otherwise."""
    index_text, sep, count_text = text.partition("/")
    try:
        if not sep:
            raise ValueError
        return Shard(int(index_text), int(count_text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--shard {text!r}: expected I/N with 0 <= I < N (e.g. 0/4 for the first of four array tasks)"
        ) from None


def launch_shard(explicit: Shard | None = None) -> Shard:
    """The shard of this process: ``explicit`` (default 0/1) split further by the torchrun rank, if any."""
    explicit = explicit or Shard()
    ranks = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return Shard(explicit.index * ranks + rank, explicit.count * ranks)
