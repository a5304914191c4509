"""Which clips each step trains on: a pure function of (seed, step, rank), so resume is exact.

Epoch e is a permutation of all clips drawn from `seed + e`; step s takes the s-th global batch
of that sequence and rank r takes every world-size-th item of it. Resuming at step s therefore
sees the same clips as an uninterrupted run, with no sampler state to save.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class StepBatchSampler(Sampler[list[int]]):
    def __init__(
        self,
        num_items: int,
        global_batch: int,
        *,
        seed: int,
        start_step: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.num_items, self.global_batch = num_items, global_batch
        self.seed, self.start_step, self.rank, self.world_size = seed, start_step, rank, world_size
        self.per_epoch = max(1, num_items // global_batch)  # drop the last partial batch

    def batch(self, step: int) -> list[int]:
        epoch, i = divmod(step, self.per_epoch)
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        perm = torch.randperm(self.num_items, generator=g)
        if self.num_items < self.global_batch:  # tiny datasets: sample with repetition
            perm = perm.repeat(self.global_batch // self.num_items + 1)
        items = perm[i * self.global_batch : (i + 1) * self.global_batch]
        return items[self.rank :: self.world_size].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while True:
            yield self.batch(step)
            step += 1

    def __len__(self) -> int:  # endless; DataLoader only needs a number
        return 2**62
