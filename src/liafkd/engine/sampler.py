"""A sampler whose position can be saved and restored, so a run resumes exactly."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[tuple[int, int]]):
    """Yields (index, augmentation seed) pairs. The order and the seeds follow from
    (seed, epoch) alone; ranks split the order like DistributedSampler (padding by
    repetition so every rank has the same count); an epoch can start part-way
    through (`set_start`) and then continues exactly as an uninterrupted run."""

    yields_seeds = True

    def __init__(
        self, num_samples: int, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1
    ) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_start(self, start: int) -> None:
        """Skip the first `start` samples of this rank in the current epoch (once)."""
        self.start = start

    def per_rank(self) -> int:
        return -(-self.num_samples // self.world_size)

    def epoch_order(self) -> list[tuple[int, int]]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.shuffle:
            order = torch.randperm(self.num_samples, generator=g).tolist()
        else:
            order = list(range(self.num_samples))
        seeds = torch.randint(2**62, (self.num_samples,), generator=g).tolist()
        pairs = list(zip(order, seeds, strict=True))
        total = self.per_rank() * self.world_size
        while len(pairs) < total:
            pairs += pairs[: total - len(pairs)]
        return pairs[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        pairs = self.epoch_order()[self.start :]
        self.start = 0
        return iter(pairs)

    def __len__(self) -> int:
        return self.per_rank() - self.start
