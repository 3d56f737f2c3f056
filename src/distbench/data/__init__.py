"""Datasets for the benchmarks: an explicit registry, one module per format, and sharding.

Start at :data:`DATASETS` and :func:`load_dataset`. Every dataset yields ``(x, y)`` with ``x`` a
float32 tensor of exactly the model's input shape (C, H, W), values in [-1, 1], and ``y`` an int64
scalar; :class:`ShardedBatches` turns a dataset into one rank's endless stream of batches.
Adding a format: one module with ``load(LoadRequest)`` (and ``check(Path)`` if it reads files),
one line in :data:`DATASETS`, one test.

Every user mistake (unknown name, missing or malformed files) is a one-line
:class:`~distbench.errors.UserError` that says what was expected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from distbench.data import cifar, digits, imagefolder, mnist, patterns, synthetic
from distbench.data.base import LoadRequest, Shape, SizedDataset, TensorPairDataset
from distbench.data.sharding import ShardedBatches
from distbench.errors import UserError

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "LoadRequest",
    "ShardedBatches",
    "SizedDataset",
    "TensorPairDataset",
    "check_dataset",
    "dataset_num_classes",
    "load_dataset",
]


@dataclass(frozen=True)
class DatasetSpec:
    """One registered dataset. ``load`` takes a :class:`LoadRequest`; ``check`` is the cheap
    pre-flight for formats that read files (``None``: nothing to check beyond the directory)."""

    name: str
    load: Callable[[LoadRequest], SizedDataset]
    needs_dir: bool
    default_classes: int | None  # None: read from the directory (imagefolder)
    description: str
    check: Callable[[Path], None] | None = None


DATASETS: dict[str, DatasetSpec] = {
    "synthetic": DatasetSpec(
        "synthetic",
        synthetic.load,
        False,
        10,
        "deterministic random tensors of any shape, no files (size defaults to 1024)",
    ),
    "patterns": DatasetSpec(
        "patterns",
        patterns.load,
        False,
        10,
        "learnable synthetic classes: a smooth random pattern per class seen through "
        "noise, any shape, no files (2048 train / 512 test samples)",
    ),
    "digits": DatasetSpec(
        "digits",
        digits.load,
        False,
        digits.NUM_CLASSES,
        "scikit-learn's bundled 8x8 digits, 1797 samples (80/20 fixed split)",
    ),
    "mnist": DatasetSpec(
        "mnist",
        mnist.load,
        True,
        mnist.NUM_CLASSES,
        "MNIST IDX files train-/t10k-{images-idx3,labels-idx1}-ubyte[.gz]",
        mnist.check,
    ),
    "cifar10": DatasetSpec(
        "cifar10",
        cifar.load_cifar10,
        True,
        cifar.CIFAR10.num_classes,
        "CIFAR-10 python pickles data_batch_1..5 and test_batch",
        cifar.check_cifar10,
    ),
    "cifar100": DatasetSpec(
        "cifar100",
        cifar.load_cifar100,
        True,
        cifar.CIFAR100.num_classes,
        "CIFAR-100 python pickles train and test",
        cifar.check_cifar100,
    ),
    "imagefolder": DatasetSpec(
        "imagefolder",
        imagefolder.load,
        True,
        None,
        "class folders of images, <dir>/<class>/*.jpg|png|... (e.g. Caltech-256)",
        imagefolder.check,
    ),
}


def get_spec(name: str) -> DatasetSpec:
    """The registered dataset ``name``, or a UserError listing the known ones."""
    if name not in DATASETS:
        raise UserError(f"unknown dataset '{name}' (known: {', '.join(sorted(DATASETS))})")
    return DATASETS[name]


def _directory(spec: DatasetSpec, data_dir: str | None) -> Path | None:
    """The data directory as a Path, checked to exist when the dataset needs one."""
    if not spec.needs_dir:
        return None if data_dir is None else Path(data_dir)
    if data_dir is None:
        raise UserError(f"dataset '{spec.name}' needs --data-dir: {spec.description}")
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise UserError(
            f"data directory {path} does not exist or is not a directory "
            f"(dataset '{spec.name}' expects {spec.description})"
        )
    return path


def check_dataset(name: str, data_dir: str | None) -> None:
    """Cheap pre-flight for the CLI: the same UserErrors as loading, without loading it all."""
    spec = get_spec(name)
    path = _directory(spec, data_dir)
    if spec.check is not None and path is not None:
        spec.check(path)


def dataset_num_classes(name: str, data_dir: str | None, requested: int | None) -> int:
    """Classes the model must output: ``requested`` if given, else the dataset's own count."""
    if requested is not None:
        return requested
    spec = get_spec(name)
    if spec.default_classes is not None:
        return spec.default_classes
    path = _directory(spec, data_dir)
    assert path is not None  # only directory datasets leave default_classes unset
    return imagefolder.count_classes(path)


def _check_shape(input_shape: tuple[int, int, int]) -> Shape:
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise UserError(f"input shape must be three positive sizes (C, H, W), got {input_shape}")
    return shape[0], shape[1], shape[2]


def load_dataset(
    name: str,
    data_dir: str | None,
    input_shape: tuple[int, int, int],
    num_classes: int | None,
    seed: int = 0,
    train: bool = True,
    size: int | None = None,
) -> SizedDataset:
    """Load dataset ``name`` with items ``(x: float32 input_shape, y: int64 scalar)``.

    The result is a torch ``Dataset`` that also has ``len()`` (:class:`SizedDataset`).
    ``num_classes`` below the dataset's own count keeps only the samples of the first classes;
    ``size`` keeps that many samples (evenly spread over a real dataset, generated for
    synthetic); ``seed`` matters for synthetic data only, splits are fixed.
    """
    spec = get_spec(name)
    path = _directory(spec, data_dir)
    if size is not None and size < 1:
        raise UserError(f"dataset size must be at least 1, got {size}")
    classes = dataset_num_classes(name, data_dir, num_classes)
    if classes < 1:
        raise UserError(f"number of classes must be at least 1, got {classes}")
    request = LoadRequest(path, _check_shape(input_shape), classes, seed, train, size)
    return spec.load(request)
