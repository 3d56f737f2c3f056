"""CIFAR-10 / CIFAR-100 in the "python version" layout: pickled dicts with bytes keys.

Each file holds ``b"data"`` (N x 3072 uint8: the R, G and B 32x32 planes, row-major) and the
labels (``b"labels"`` for CIFAR-10, ``b"fine_labels"`` for CIFAR-100). Files are accepted directly
in ``data_dir`` or in the folder the official archive unpacks to. Unpickling is restricted to the
few numpy globals an array needs, so a hostile file cannot run code.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

SIDE = 32
ROW = 3 * SIDE * SIDE
_ALLOWED_GLOBALS = {"_reconstruct", "ndarray", "dtype", "_frombuffer", "scalar"}


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR variant keeps its files and labels."""

    name: str
    subdir: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: bytes
    num_classes: int

    def files(self, train: bool) -> tuple[str, ...]:
        return self.train_files if train else self.test_files

    def expected(self, train: bool) -> str:
        names = self.files(train)
        if len(names) > 1:
            return f"{names[0]}..{names[-1]}"
        return names[0]


CIFAR10 = CifarLayout(
    "cifar10",
    "cifar-10-batches-py",
    tuple(f"data_batch_{i}" for i in range(1, 6)),
    ("test_batch",),
    b"labels",
    10,
)
CIFAR100 = CifarLayout("cifar100", "cifar-100-python", ("train",), ("test",), b"fine_labels", 100)


class _SafeUnpickler(pickle.Unpickler):
    """Resolves only numpy array reconstruction helpers (and bytes re-encoding), nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] == "numpy" and name in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if (module, name) == ("_codecs", "encode"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected object {module}.{name}")


def find_dir(directory: Path, layout: CifarLayout, train: bool) -> Path:
    """The folder holding ``layout``'s files for the split, or a UserError naming them."""
    for folder in (directory, directory / layout.subdir):
        if all((folder / name).is_file() for name in layout.files(train)):
            return folder
    raise UserError(
        f"expected {layout.name} files {layout.expected(train)} in {directory} "
        f"(or {directory / layout.subdir})"
    )


def _unpickle(path: Path) -> dict[bytes, Any]:
    try:
        with path.open("rb") as handle:
            data = _SafeUnpickler(handle, encoding="bytes").load()
    except Exception as exc:  # a corrupt pickle can fail in almost any way; all mean malformed
        raise UserError(f"cannot unpickle {path}: {exc} (expected a CIFAR python pickle)") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a pickled dict, found {type(data).__name__}")
    return data


def read_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, torch.Tensor]:
    """One pickle file -> (N, 3, 32, 32) uint8 images and int64 labels."""
    data = _unpickle(path)
    if b"data" not in data or label_key not in data:
        raise UserError(f"{path}: expected keys b'data' and {label_key!r}, found {list(data)[:8]}")
    images = np.asarray(data[b"data"])
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != ROW:
        raise UserError(
            f"{path}: expected b'data' as N x {ROW} uint8, "
            f"found {'x'.join(map(str, images.shape))} {images.dtype}"
        )
    labels = labels_tensor(data[label_key], len(images), str(path))
    return images.reshape(-1, 3, SIDE, SIDE), labels


def check(directory: Path, layout: CifarLayout) -> None:
    """Cheap pre-flight: the training files are where we look (not unpickled)."""
    find_dir(directory, layout, train=True)


def load(req: LoadRequest, layout: CifarLayout) -> TensorPairDataset:
    folder = find_dir(req.directory, layout, req.train)
    parts = [read_batch(folder / name, layout.label_key) for name in layout.files(req.train)]
    images = torch.from_numpy(np.concatenate([images for images, _ in parts]))
    labels = torch.cat([labels for _, labels in parts])
    keep = select(labels, req.num_classes, req.size, f"{layout.name} ({req.split})")
    return image_dataset(images[keep], labels[keep], req.input_shape)


def load_cifar10(req: LoadRequest) -> TensorPairDataset:
    return load(req, CIFAR10)


def load_cifar100(req: LoadRequest) -> TensorPairDataset:
    return load(req, CIFAR100)


def check_cifar10(directory: Path) -> None:
    check(directory, CIFAR10)


def check_cifar100(directory: Path) -> None:
    check(directory, CIFAR100)
