"""Which clips each step trains on: a pure function of (seed, step), so resume is exact in any world size.

Epoch e is a permutation of all clips drawn from `seed + e`; step s takes the s-th global batch of that
sequence. The global batch is cut into world_size x grad_accum equal, contiguous micro-batches: rank r's
j-th micro-batch is piece r * grad_accum + j. Concatenating every rank's micro-batches in order therefore
rebuilds the single-process batch exactly, which is what lets 2 ranks match 1 (tests/test_distributed.py).

Each item also gets a noise seed from (seed, step, its position in the global batch), the only randomness
a stage may draw per sample (the dynamics stage's MaskGIT masks): the same sample gets the same noise
whichever rank or micro-batch it lands in.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler, Subset

from genie.errors import GenieError


def micro_batch_size(global_batch: int, world_size: int, grad_accum: int) -> int:
    """Clips per forward pass on one rank; a global batch that does not split evenly is a GenieError."""
    if global_batch % (world_size * grad_accum):
        raise GenieError(
            f"data.batch_size {global_batch} (the global batch) does not split evenly over {world_size} "
            f"process(es) x grad_accum {grad_accum}: use a multiple of {world_size * grad_accum}"
        )
    return global_batch // (world_size * grad_accum)


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    def __init__(
        self,
        num_items: int,
        global_batch: int,
        *,
        seed: int,
        start_step: int = 0,
        rank: int = 0,
        world_size: int = 1,
        grad_accum: int = 1,
    ) -> None:
        self.num_items, self.global_batch = num_items, global_batch
        self.seed, self.start_step, self.rank, self.world_size = seed, start_step, rank, world_size
        self.grad_accum = grad_accum
        self.micro = micro_batch_size(global_batch, world_size, grad_accum)
        self.per_epoch = max(1, num_items // global_batch)  # drop the last partial batch

    def batch(self, step: int) -> list[int]:
        """The whole global batch of `step`, in order."""
        epoch, i = divmod(step, self.per_epoch)
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        perm = torch.randperm(self.num_items, generator=g)
        if self.num_items < self.global_batch:  # tiny datasets: sample with repetition
            perm = perm.repeat(self.global_batch // self.num_items + 1)
        return perm[i * self.global_batch : (i + 1) * self.global_batch].tolist()

    def micro_batch(self, step: int, j: int) -> list[tuple[int, int]]:
        """This rank's j-th micro-batch of `step`: (clip index, noise seed) pairs."""
        first = (self.rank * self.grad_accum + j) * self.micro
        items = self.batch(step)[first : first + self.micro]
        base = (self.seed * 1_000_003 + step) * self.global_batch
        return [(item, base + first + k) for k, item in enumerate(items)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        while True:
            for j in range(self.grad_accum):
                yield self.micro_batch(step, j)
            step += 1

    def __len__(self) -> int:  # endless; DataLoader only needs a number
        return 2**62


def validation_clips(dataset: Dataset, picks: list[int]) -> Dataset:
    """The picked validation clips, each seeded by its own index: a clip draws the same noise (the dynamics
    stage's validation masks) however the clips are batched or sharded over ranks."""
    return Subset(SeededItems(dataset), [(i, i) for i in picks])


class SeededItems(Dataset):
    """Adds each item's noise seed ("noise_seed", int64) to a dataset indexed by StepBatchSampler."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, seed = key
        return {**self.dataset[index], "noise_seed": torch.tensor(seed, dtype=torch.int64)}
