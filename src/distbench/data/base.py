"""Shared pieces of the data layer: the load request, the in-memory dataset, image conversion.

Start at :class:`TensorPairDataset`: in-memory formats (synthetic, digits, MNIST, CIFAR) end up
as one, and :class:`~distbench.data.sharding.ShardedBatches` recognises it and builds a whole
batch with one index op instead of per-item ``__getitem__`` + collate, because the data phase is
timed every step. :func:`image_dataset` turns raw images into one, and :func:`convert_images`
is the single definition of "what the model sees" (channels, bilinear resize, (x-0.5)/0.5).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from distbench.errors import UserError

# Above this many bytes of converted float32 data, keep the raw (often uint8) images and convert
# each batch on the fly: every worker process holds its own copy, so CIFAR at 224x224 must not
# be materialised (50k x 3 x 224 x 224 x 4 B = 30 GB).
PRECOMPUTE_BYTES = 256 * 2**20
_CHUNK = 4096
# ITU-R 601-2 luma, the same weights Pillow's convert("L") uses.
_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
IMAGE_CHANNELS = (1, 3)

Shape = tuple[int, int, int]


@dataclass(frozen=True)
class LoadRequest:
    """Everything a format's ``load`` needs, already validated by ``load_dataset``."""

    data_dir: Path | None
    input_shape: Shape
    num_classes: int
    seed: int
    train: bool
    size: int | None

    @property
    def directory(self) -> Path:
        if self.data_dir is None:  # load_dataset checks needs_dir first; this is a bug guard
            raise UserError("this dataset needs --data-dir")
        return self.data_dir

    @property
    def split(self) -> str:
        return "train" if self.train else "test"


class SizedDataset(Dataset[tuple[Tensor, Tensor]], ABC):
    """A map-style dataset of (x, y) pairs that knows its length (torch's Dataset does not say).
    Abstract: every loader's dataset says how long it is and how to get one item."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]: ...


class TensorPairDataset(SizedDataset):
    """A dataset held as tensors; ``batch(idx)`` is what ShardedBatches calls.

    ``x`` holds the stored rows, ``y`` one int64 label per sample. ``rows`` (optional) maps a
    sample to its row of ``x`` (synthetic data reuses a small pool); ``transform`` (optional) turns
    a batch of stored rows into model input (used when precomputing would take too much memory).
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        rows: Tensor | None = None,
        transform: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        self.x = x
        self.y = y.to(torch.int64)
        self.rows = rows
        self.transform = transform

    def __len__(self) -> int:
        return len(self.y)

    def batch(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """Samples ``idx`` as one (x, y) batch, built by tensor indexing."""
        rows = idx if self.rows is None else self.rows[idx]
        xb = self.x[rows]
        if self.transform is not None:
            xb = self.transform(xb)
        return xb, self.y[idx]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        xb, yb = self.batch(torch.tensor([i]))
        return xb[0], yb[0]


def check_channels(source: int, target: int) -> None:
    """Image formats convert only between gray (1) and RGB (3)."""
    if source not in IMAGE_CHANNELS or target not in IMAGE_CHANNELS:
        raise UserError(
            f"cannot convert {source}-channel images to {target} channels "
            "(expected 1 = gray or 3 = RGB)"
        )


def convert_images(images: Tensor, shape: Shape, scale: float = 255.0) -> Tensor:
    """(N, C, H, W) raw images with values in [0, scale] -> float32 (N, *shape) in [-1, 1].

    Gray is repeated to RGB, RGB becomes gray by luminance, the size changes by bilinear
    interpolation (antialiased when shrinking); values map to (x/scale - 0.5) / 0.5.
    """
    channels, height, width = shape
    check_channels(images.shape[1], channels)
    # Normalise first, at the (usually smaller) source size: luminance and bilinear weights sum
    # to one, so they commute with the affine map; gray->RGB repeats last, as the only copy.
    out = images.to(torch.float32) / (scale / 2) - 1
    if out.shape[1] == 3 and channels == 1:
        out = (out * _LUMA).sum(dim=1, keepdim=True)
    if tuple(out.shape[-2:]) != (height, width):
        out = F.interpolate(
            out,
            size=(height, width),
            mode="bilinear",
            align_corners=False,
            antialias=_shrinks(out, height, width),
        )
        out = out.clamp_(-1.0, 1.0)  # float rounding can step just outside the range
    if out.shape[1] == 1 and channels == 3:
        out = out.expand(-1, 3, -1, -1)
    return out.contiguous()


def _shrinks(images: Tensor, height: int, width: int) -> bool:
    """Antialiasing only matters when shrinking; upsampling without it is the same, and faster."""
    return images.shape[-2] > height or images.shape[-1] > width


@dataclass(frozen=True)
class ImageTransform:
    """A picklable batch transform: raw images -> model input (see :func:`convert_images`)."""

    shape: Shape
    scale: float = 255.0

    def __call__(self, images: Tensor) -> Tensor:
        return convert_images(images, self.shape, self.scale)


def image_dataset(
    images: Tensor, labels: Tensor, shape: Shape, scale: float = 255.0
) -> TensorPairDataset:
    """In-memory dataset of ``images`` (N, C, H, W); converted up front when that is small."""
    check_channels(images.shape[1], shape[0])
    transform = ImageTransform(shape, scale)
    if len(labels) * math.prod(shape) * 4 > PRECOMPUTE_BYTES:
        return TensorPairDataset(images, labels, transform=transform)
    parts = [transform(images[i : i + _CHUNK]) for i in range(0, len(labels), _CHUNK)]
    return TensorPairDataset(torch.cat(parts), labels)


def select(labels: Tensor, num_classes: int, size: int | None, what: str) -> Tensor:
    """Indices to keep: samples of the first ``num_classes`` classes, then ``size`` of those.

    The ``size`` subset is evenly spaced (not the first rows) so that class-sorted data still
    yields every class. Raises when nothing is left, naming ``what``.
    """
    keep = torch.nonzero(labels < num_classes).flatten()
    if size is not None and size < len(keep):
        keep = keep[torch.arange(size) * len(keep) // size]
    if len(keep) == 0:
        raise UserError(f"{what}: no samples with a label below {num_classes}")
    return keep


def labels_tensor(values: object, count: int, where: str) -> Tensor:
    """Labels as int64, checked to be one non-negative integer per image."""
    try:
        labels = torch.as_tensor(values).to(torch.int64).flatten()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise UserError(f"{where}: labels are not a list of integers ({exc})") from None
    if len(labels) != count:
        raise UserError(f"{where}: expected {count} labels (one per image), found {len(labels)}")
    if count and int(labels.min()) < 0:
        raise UserError(f"{where}: labels must be non-negative")
    return labels
