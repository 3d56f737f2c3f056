"""Deterministic sharding of a dataset over data-parallel ranks, as an endless batch iterator.

The rule that makes N ranks equivalent to one: every epoch, all ranks compute the same global
permutation (seeded by ``seed + epoch``), cut it to ``world * (len // world)`` and rank ``r`` takes
``perm[r::world]``. Batch ``i`` of every rank then covers exactly positions
``[i*world*B, (i+1)*world*B)`` of the permutation -- the ``i``-th batch of size ``world*B`` that a
single worker sees -- so data-parallel training on N ranks sees the samples of sequential
training on the N-times batch, and shards never overlap within an epoch.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import Dataset

from distbench.data.base import TensorPairDataset
from distbench.errors import UserError

Batch = tuple[Tensor, Tensor]


class ShardedBatches:
    """Infinite iterator of this rank's (x, y) batches; epochs cycle with fresh permutations."""

    def __init__(
        self,
        dataset: Dataset[Batch],
        batch_size: int,
        rank: int,
        world: int,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in a world of {world}")
        if batch_size < 1:
            raise UserError(f"batch size must be at least 1, got {batch_size}")
        self.dataset = dataset
        self.length = len(dataset)  # type: ignore[arg-type]  # map-style datasets have a length
        self.batch_size = batch_size
        self.rank = rank
        self.world = world
        self.seed = seed
        self.shuffle = shuffle
        self.batches_per_epoch = self.length // world // batch_size
        if self.batches_per_epoch < 1:
            raise UserError(
                f"dataset of {self.length} samples is too small for batch size {batch_size} on "
                f"{world} worker(s): needs at least {batch_size * world} samples"
            )

    def epoch_indices(self, epoch: int) -> Tensor:
        """This rank's sample indices for ``epoch``, in the order they are batched."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            perm = torch.randperm(self.length, generator=generator)
        else:
            perm = torch.arange(self.length)
        return perm[: self.world * (self.length // self.world)][self.rank :: self.world]

    def epoch_batches(self, epoch: int) -> list[Tensor]:
        """The index tensors of this rank's full batches in ``epoch`` (partial one dropped)."""
        mine = self.epoch_indices(epoch)
        size = self.batch_size
        return [mine[i * size : (i + 1) * size] for i in range(self.batches_per_epoch)]

    def fetch(self, idx: Tensor) -> Batch:
        """One batch: a single index op for in-memory data, per-item loading + stack otherwise."""
        if isinstance(self.dataset, TensorPairDataset):
            return self.dataset.batch(idx)
        items = [self.dataset[i] for i in idx.tolist()]
        return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])

    def __iter__(self) -> Iterator[Batch]:
        for epoch in itertools.count():
            for idx in self.epoch_batches(epoch):
                yield self.fetch(idx)
