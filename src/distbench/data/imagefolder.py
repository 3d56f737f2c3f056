"""A folder of class folders of images (``data_dir/<class>/*.jpg``, e.g. Caltech-256), via Pillow.

Classes are the sub-folders that hold at least one image, sorted by name; label = position.
Images are decoded lazily per item (a whole Caltech-256 would not fit in every worker's
memory). The split is deterministic per class: every fifth file (sorted by name) is test data.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from distbench.data.base import LoadRequest, Shape, SizedDataset, check_channels, select
from distbench.errors import UserError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".webp")
TEST_EVERY = 5  # file i of a class is test data when i % TEST_EVERY == TEST_EVERY - 1


def _images_in(folder: Path) -> list[Path]:
    with os.scandir(folder) as entries:
        return sorted(
            Path(e.path)
            for e in entries
            if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(EXTENSIONS)
        )


def _subfolders(directory: Path) -> list[Path]:
    with os.scandir(directory) as entries:
        return sorted(Path(e.path) for e in entries if e.is_dir() and not e.name.startswith("."))


def find_classes(directory: Path) -> list[tuple[str, list[Path]]]:
    """(class name, sorted image files) for every class folder, or a UserError saying why not."""
    folders = _subfolders(directory)
    if not folders:
        raise UserError(
            f"expected class folders in {directory} (<class>/*.jpg, *.png, ...), found none"
        )
    classes = [(folder.name, files) for folder in folders if (files := _images_in(folder))]
    if not classes:
        raise UserError(
            f"found {len(folders)} folders in {directory} but no images in them "
            f"(expected {', '.join(EXTENSIONS)})"
        )
    return classes


def count_classes(directory: Path) -> int:
    return len(find_classes(directory))


def check(directory: Path) -> None:
    find_classes(directory)


def load_image(path: Path, shape: Shape) -> Tensor:
    """One file -> float32 ``shape`` in [-1, 1]: gray or RGB (luminance), bilinear resize."""
    channels, height, width = shape
    mode = "L" if channels == 1 else "RGB"
    try:
        with Image.open(path) as img:
            img.draft(mode, (width, height))  # JPEG: let the decoder shrink by 2^k; cheap
            pixels = np.array(
                img.convert(mode).resize((width, height), Image.Resampling.BILINEAR), dtype=np.uint8
            )
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UserError(f"cannot read image {path}: {exc}") from None
    tensor = torch.from_numpy(pixels).reshape(height, width, -1).permute(2, 0, 1)
    return (tensor.to(torch.float32) / 255.0 - 0.5) / 0.5


class ImageFolderDataset(SizedDataset):
    """Lazily decoded (path, label) samples."""

    def __init__(self, samples: list[tuple[Path, int]], shape: Shape) -> None:
        self.samples = samples
        self.shape = shape

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        path, label = self.samples[i]
        return load_image(path, self.shape), torch.tensor(label, dtype=torch.int64)


def _split(files: list[Path], train: bool) -> list[Path]:
    return [f for i, f in enumerate(files) if (i % TEST_EVERY == TEST_EVERY - 1) != train]


def load(req: LoadRequest) -> ImageFolderDataset:
    check_channels(3, req.input_shape[0])
    classes = find_classes(req.directory)[: req.num_classes]
    samples = [
        (path, label)
        for label, (_, files) in enumerate(classes)
        for path in _split(files, req.train)
    ]
    if not samples:
        raise UserError(
            f"imagefolder {req.directory}: no {req.split} images "
            f"(every {TEST_EVERY}th image of a class is test data)"
        )
    labels = torch.tensor([label for _, label in samples])
    keep = select(labels, req.num_classes, req.size, f"imagefolder {req.directory}")
    return ImageFolderDataset([samples[i] for i in keep.tolist()], req.input_shape)
