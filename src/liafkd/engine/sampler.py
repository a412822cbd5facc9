"""A sampler whose position can be saved and restored, so a run resumes exactly."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[int]):
    """Shuffles with a generator seeded by (seed, epoch), splits across ranks like
    DistributedSampler (padding by repetition so every rank has the same count),
    and can start an epoch part-way through (`set_start`)."""

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

    def epoch_order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_samples, generator=g).tolist()
        else:
            order = list(range(self.num_samples))
        total = self.per_rank() * self.world_size
        while len(order) < total:
            order += order[: total - len(order)]
        return order[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[int]:
        order = self.epoch_order()[self.start :]
        self.start = 0
        return iter(order)

    def __len__(self) -> int:
        return self.per_rank() - self.start
