"""Noisy copies of the data and the random streams of the toy experiment, as pure functions of their keys.

Every random quantity is drawn from a CPU ``torch.Generator`` seeded by ``stable_seed`` of a key such as
(seed, arm, "noise", epoch, view). Noisy copies are drawn for the whole split at once in sample order, so the
noise of sample i at a given epoch and view depends only on (seed, key, epoch, view, i): never on the batch size,
the shuffling or the device.
"""

from __future__ import annotations

import torch

from utils.noise import NoiseSpec, add_noise_torch, gaussian_spec_from_std
from utils.seeding import torch_generator

PAPER_NOISE_STD = 0.4


def noise_spec(std: float = PAPER_NOISE_STD) -> NoiseSpec:
    """The toy's Gaussian noise: ``std`` on the [0, 1] scale, clamped to [0, 1] after adding it."""
    if std < 0:
        raise ValueError(f"noise std must be >= 0, got {std}")
    return gaussian_spec_from_std(std)


def noisy_copy(images: torch.Tensor, spec: NoiseSpec, *key: object) -> torch.Tensor:
    """A clamped noisy copy of a CPU split [N, D] in [0, 1], drawn from the generator of ``key``."""
    return add_noise_torch(images, spec, generator=torch_generator(*key), clip=True)
