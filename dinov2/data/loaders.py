"""DataLoader construction for SSL training."""

from __future__ import annotations

from typing import Callable

from torch.utils.data import DataLoader, Dataset, Sampler

from utils.seeding import worker_init_fn


def make_data_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    sampler: Sampler | None,
    collate_fn: Callable | None,
    drop_last: bool = True,
    persistent_workers: bool = False,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader over ``sampler``'s keys; ``persistent_workers`` only applies when ``num_workers > 0``."""
    if batch_size < 1:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    return DataLoader(
        dataset,
        sampler=sampler,
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=pin_memory,
        drop_last=drop_last,
        persistent_workers=persistent_workers and num_workers > 0,
        collate_fn=collate_fn,
        worker_init_fn=worker_init_fn,
    )
