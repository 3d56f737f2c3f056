"""Synthetic data: deterministic random tensors of any shape and class count, no files.

Memory stays small whatever ``size`` is: a pool of at most ``POOL_BYTES`` of random inputs is
generated once and sample ``i`` uses pool row ``i % pool``; labels are ``i % num_classes``
shuffled by the seed. Train and test draw from different seeds.
"""

from __future__ import annotations

import math

import torch

from distbench.data.base import LoadRequest, TensorPairDataset
from distbench.errors import UserError

DEFAULT_SIZE = 1024
POOL_BYTES = 32 * 2**20


def load(req: LoadRequest) -> TensorPairDataset:
    size = DEFAULT_SIZE if req.size is None else req.size
    if size < 1:
        raise UserError(f"synthetic dataset size must be at least 1, got {size}")
    generator = torch.Generator().manual_seed(2 * req.seed + (0 if req.train else 1))
    per_sample = math.prod(req.input_shape) * 4
    pool = max(1, min(size, POOL_BYTES // per_sample))
    x = torch.rand((pool, *req.input_shape), generator=generator) * 2 - 1
    y = (torch.arange(size) % req.num_classes)[torch.randperm(size, generator=generator)]
    rows = torch.arange(size) % pool
    return TensorPairDataset(x, y, rows=rows)
