"""scikit-learn's bundled 8x8 digits (1797 samples, values 0..16, 10 classes); no download.

The train/test split is the first 80 % / last 20 % of a permutation with a fixed seed (0), not
the run seed, so that the held-out part stays held out whatever seed a run uses.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from distbench.data.base import LoadRequest, TensorPairDataset, image_dataset, select

NUM_CLASSES = 10
SPLIT_SEED = 0
TRAIN_FRACTION = 0.8
MAX_VALUE = 16.0


def split_indices(count: int, train: bool) -> Tensor:
    """The fixed train or test indices of ``count`` samples."""
    perm = torch.randperm(count, generator=torch.Generator().manual_seed(SPLIT_SEED))
    cut = int(count * TRAIN_FRACTION)
    return perm[:cut] if train else perm[cut:]


def load(req: LoadRequest) -> TensorPairDataset:
    from sklearn.datasets import load_digits  # slow import; only pay for it when used

    bunch = load_digits()
    images = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32)).unsqueeze(1)
    labels = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    part = split_indices(len(labels), req.train)
    images, labels = images[part], labels[part]
    keep = select(labels, req.num_classes, req.size, f"digits ({req.split})")
    return image_dataset(images[keep], labels[keep], req.input_shape, scale=MAX_VALUE)
