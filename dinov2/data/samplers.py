"""An endless, resumable sample stream that gives every sample its own augmentation seed."""

from __future__ import annotations

from typing import Iterator

import numpy as np
from torch.utils.data import Sampler

from utils.seeding import stable_seed, torch_seed


class InfiniteSampler(Sampler):
    """Yields ``(index, sample_seed)`` forever.

    The global stream visits the dataset epoch after epoch, each epoch in a permutation drawn from
    ``(seed, epoch)`` (or in order when ``shuffle`` is false); position ``g`` of the stream carries the seed
    ``stable_seed(seed, "sample", g)``. Rank ``r`` of ``world_size`` takes positions ``start + r``,
    ``start + r + world_size``, ...; ``start`` counts samples of the global stream already consumed by all
    ranks together (``iteration * batch_size_per_gpu * world_size``), so resuming continues the exact stream.
    """

    def __init__(
        self, dataset_size: int, seed: int = 0, shuffle: bool = True, start: int = 0, rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if dataset_size < 1:
            raise ValueError(f"InfiniteSampler: the dataset is empty (dataset_size={dataset_size})")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"InfiniteSampler: rank {rank} is not in [0, world_size={world_size})")
        if start < 0:
            raise ValueError(f"InfiniteSampler: start must be >= 0, got {start}")
        self.dataset_size = int(dataset_size)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.start = int(start)
        self.rank = int(rank)
        self.world_size = int(world_size)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The dataset indices in the order epoch ``epoch`` visits them."""
        if not self.shuffle:
            return np.arange(self.dataset_size)
        return np.random.default_rng(stable_seed(self.seed, "epoch", epoch)).permutation(self.dataset_size)

    def sample_seed(self, position: int) -> int:
        """Augmentation seed of global stream position ``position`` (fits torch.manual_seed)."""
        return torch_seed(self.seed, "sample", position)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position = self.start + self.rank
        epoch, order = -1, np.empty(0, dtype=np.int64)
        while True:
            if position // self.dataset_size != epoch:
                epoch = position // self.dataset_size
                order = self.epoch_order(epoch)
            yield int(order[position % self.dataset_size]), self.sample_seed(position)
            position += self.world_size
