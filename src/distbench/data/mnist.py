"""MNIST in its original IDX files, each optionally gzipped, parsed with struct + numpy.

Looked for in ``data_dir`` or ``data_dir/MNIST/raw`` (torchvision's layout). An IDX file is a
big-endian header -- magic 2051 for images (3 dims) or 2049 for labels (1 dim), then one uint32
per dim -- followed by exactly prod(dims) unsigned bytes; anything else is a UserError.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from distbench.data.base import (
    LoadRequest,
    TensorPairDataset,
    image_dataset,
    labels_tensor,
    select,
)
from distbench.errors import UserError

NUM_CLASSES = 10
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
SUBDIRS = ("", "MNIST/raw")
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _candidates(directory: Path, base: str) -> list[Path]:
    # Some mirrors spell it "train-images.idx3-ubyte"; accept both, plain or gzipped.
    names = dict.fromkeys((base, base.replace("-idx", ".idx")))
    return [
        directory / sub / (name + ext) for sub in SUBDIRS for name in names for ext in ("", ".gz")
    ]


def find_files(directory: Path, split: str) -> tuple[Path, Path]:
    """The (images, labels) files of ``split``, or a UserError naming both expected files."""
    found = [
        next((p for p in _candidates(directory, base) if p.is_file()), None)
        for base in FILES[split]
    ]
    images, labels = found
    if images is None or labels is None:
        first, second = FILES[split]
        raise UserError(f"expected {first}[.gz] and {second}[.gz] in {directory}")
    return images, labels


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None


def parse_idx(data: bytes, magic: int, ndim: int, where: Path) -> np.ndarray:
    """The uint8 array in an IDX file's bytes, after checking magic and size."""
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{where}: too short for an IDX header ({len(data)} bytes)")
    (found,) = struct.unpack(">I", data[:4])
    if found != magic:
        raise UserError(f"{where}: bad IDX magic number {found}, expected {magic}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims))
    if len(data) - header != expected:
        raise UserError(
            f"{where}: header says {'x'.join(map(str, dims))} = {expected} bytes "
            f"of data, found {len(data) - header}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def check(directory: Path) -> None:
    """Cheap pre-flight: the training files exist and their headers say IDX."""
    for path, magic in zip(
        find_files(directory, "train"), (IMAGES_MAGIC, LABELS_MAGIC), strict=True
    ):
        head = _read_head(path)
        if len(head) < 4 or struct.unpack(">I", head[:4])[0] != magic:
            raise UserError(f"{path}: not an IDX file (expected magic number {magic})")


def _read_head(path: Path) -> bytes:
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            return bytes(handle.read(4))
    except (OSError, EOFError, zlib.error) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None


def load(req: LoadRequest) -> TensorPairDataset:
    images_path, labels_path = find_files(req.directory, req.split)
    images = parse_idx(_read_bytes(images_path), IMAGES_MAGIC, 3, images_path)
    raw_labels = parse_idx(_read_bytes(labels_path), LABELS_MAGIC, 1, labels_path)
    labels = labels_tensor(raw_labels, len(images), str(labels_path))
    keep = select(labels, req.num_classes, req.size, f"mnist ({req.split})")
    pixels = torch.from_numpy(images).unsqueeze(1)
    return image_dataset(pixels[keep], labels[keep], req.input_shape)
