"""Seeding: one place that turns seeds and names into reproducible random generators."""

from __future__ import annotations

import hashlib
import random

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is optional for the data-preparation tools
    import torch


def stable_seed(*parts: object) -> int:
    """A 64-bit seed derived from ``parts`` that is identical on every machine, process and run.

    Python's ``hash`` is salted per process, so it is never used for seeds; this hashes the parts' text.
    """
    text = "\x1f".join(str(part) for part in parts)
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def numpy_generator(*parts: object) -> np.random.Generator:
    """A NumPy generator seeded by :func:`stable_seed` of ``parts``."""
    return np.random.default_rng(stable_seed(*parts))


def torch_seed(*parts: object) -> int:
    """:func:`stable_seed` of ``parts`` reduced to the range torch accepts (below 2**63)."""
    return stable_seed(*parts) % 2**63


def torch_generator(*parts: object) -> "torch.Generator":
    """A CPU ``torch.Generator`` seeded by :func:`torch_seed` of ``parts`` (the same draws on every device)."""
    import torch

    return torch.Generator().manual_seed(torch_seed(*parts))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and (if installed) torch on every device."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch
    except ImportError:  # the data-preparation tools run without torch
        return
    torch.manual_seed(seed)


def worker_init_fn(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: derive Python and NumPy seeds from the worker's torch seed.

    torch already gives each worker ``base_seed + worker_id``; NumPy and ``random`` would otherwise be
    copies of the parent's state in every worker.
    """
    import torch

    worker_seed = torch.initial_seed() % 2**32
    random.seed(worker_seed)
    np.random.seed(worker_seed)
