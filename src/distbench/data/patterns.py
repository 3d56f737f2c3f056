"""A learnable synthetic task: one smooth random pattern per class, seen through noise.

``synthetic`` gives random labels, which no model can learn; this gives labels a model can
learn at any input shape and class count, with no files, so a run to a target accuracy
(``--target-accuracy``) works for any model. Class ``c``'s pattern is a
``PATTERN_CELLS x PATTERN_CELLS`` grid of random values per channel, upsampled bilinearly to
the input size; a sample is ``PATTERN_WEIGHT x pattern + (1 - PATTERN_WEIGHT) x noise``
with uniform noise in [-1, 1]. The patterns are the same task whatever ``--seed`` (they
come from a fixed task seed), while the noise and the label order follow the seed and
differ between the train and test splits. Memory stays bounded as for ``synthetic``: at
most ``POOL_BYTES`` of distinct samples are made, and sample ``i`` is pool sample
``i % pool`` (with its label).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from distbench.data.base import LoadRequest, TensorPairDataset
from distbench.errors import UserError

DEFAULT_TRAIN_SIZE = 2048
DEFAULT_TEST_SIZE = 512
PATTERN_CELLS = 4
PATTERN_WEIGHT = 0.35  # how much of a sample is its class's pattern (the rest is noise)
TASK_SEED = 20261204
POOL_BYTES = 32 * 2**20


def class_patterns(shape: tuple[int, int, int], classes: int) -> torch.Tensor:
    """The task: ``classes`` smooth patterns of ``shape`` in [-1, 1]."""
    channels, height, width = shape
    generator = torch.Generator().manual_seed(TASK_SEED)
    cells = torch.rand((classes, channels, PATTERN_CELLS, PATTERN_CELLS), generator=generator)
    return F.interpolate(cells * 2 - 1, size=(height, width), mode="bilinear")


def load(req: LoadRequest) -> TensorPairDataset:
    default = DEFAULT_TRAIN_SIZE if req.train else DEFAULT_TEST_SIZE
    size = default if req.size is None else req.size
    if size < 1:
        raise UserError(f"patterns dataset size must be at least 1, got {size}")
    generator = torch.Generator().manual_seed(2 * req.seed + (0 if req.train else 1))
    pool = max(1, min(size, POOL_BYTES // (math.prod(req.input_shape) * 4)))
    labels = (torch.arange(pool) % req.num_classes)[torch.randperm(pool, generator=generator)]
    noise = torch.rand((pool, *req.input_shape), generator=generator) * 2 - 1
    x = PATTERN_WEIGHT * class_patterns(req.input_shape, req.num_classes)[labels]
    x += (1 - PATTERN_WEIGHT) * noise
    rows = torch.arange(size) % pool
    return TensorPairDataset(x, labels[rows], rows=rows)
