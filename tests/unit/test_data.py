"""Data layer: every format written in its real on-disk form, loaded through load_dataset, and
the sharding rule that makes N data-parallel ranks see what one worker sees on an N-times batch."""

from __future__ import annotations

import gzip
import itertools
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from distbench.data import (
    DATASETS,
    ShardedBatches,
    SizedDataset,
    TensorPairDataset,
    check_dataset,
    dataset_num_classes,
    load_dataset,
)
from distbench.data import digits as digits_module
from distbench.errors import UserError

# --------------------------------------------------------------------------- file writers


def write_idx(path: Path, array: np.ndarray, magic: int, compress: bool = False) -> Path:
    data = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def write_mnist(folder: Path, n_train: int = 12, n_test: int = 6, compress: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        images[:, :, 14:] = 255  # right half white
        labels = np.arange(n) % 10
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, 2051, compress)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, 2049, compress)


def write_cifar_file(
    path: Path, labels: list[int], label_key: bytes, color: tuple[int, int, int] = (255, 0, 0)
) -> None:
    planes = np.zeros((len(labels), 3, 32, 32), dtype=np.uint8)
    for channel, value in enumerate(color):
        planes[:, channel] = value
    with path.open("wb") as handle:
        pickle.dump(
            {
                b"data": planes.reshape(len(labels), 3072),
                label_key: labels,
                b"batch_label": b"test",
            },
            handle,
            protocol=2,
        )


def write_cifar10(folder: Path, per_file: int = 4) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        write_cifar_file(
            folder / f"data_batch_{i}", [(i + j) % 10 for j in range(per_file)], b"labels"
        )
    write_cifar_file(folder / "test_batch", [3] * per_file, b"labels")


def write_image(path: Path, size: tuple[int, int], mode: str, value: int | tuple[int, ...]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)


def write_imagefolder(root: Path) -> None:
    """Three classes of mixed formats, sizes and modes, plus folders that must be ignored."""
    for i in range(5):
        write_image(root / "a_cat" / f"{i}.png", (40, 30), "L", 255)
        write_image(root / "b_dog" / f"{i}.jpg", (20, 50), "RGB", (0, 0, 255))
    write_image(root / "c_owl" / "0.bmp", (16, 16), "RGB", (0, 255, 0))
    (root / "d_empty").mkdir()
    (root / "a_cat" / "notes.txt").write_text("not an image")


# --------------------------------------------------------------------------- helpers


def assert_items(dataset: SizedDataset, shape: tuple[int, int, int]) -> None:
    x, y = dataset[0]
    assert x.dtype == torch.float32 and tuple(x.shape) == shape
    assert y.dtype == torch.int64 and y.ndim == 0
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0


def all_items(dataset: SizedDataset) -> tuple[Tensor, Tensor]:
    items = [dataset[i] for i in range(len(dataset))]
    return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


def index_dataset(n: int) -> TensorPairDataset:
    """Sample i is the value i, so batches say which samples they hold."""
    return TensorPairDataset(torch.arange(n).unsqueeze(1), torch.arange(n))


def batch_ids(batches: ShardedBatches, count: int) -> list[list[int]]:
    return [y.tolist() for _, y in itertools.islice(iter(batches), count)]


# --------------------------------------------------------------------------- registry, errors


def test_registry_lists_every_format() -> None:
    known = {"synthetic", "patterns", "digits", "mnist", "cifar10", "cifar100", "imagefolder"}
    assert set(DATASETS) == known
    assert all(name == spec.name for name, spec in DATASETS.items())
    assert [n for n, s in DATASETS.items() if not s.needs_dir] == [
        "synthetic",
        "patterns",
        "digits",
    ]


def test_unknown_dataset_names_the_known_ones() -> None:
    with pytest.raises(UserError, match=r"unknown dataset 'nope' \(known: cifar10"):
        load_dataset("nope", None, (1, 8, 8), None)
    with pytest.raises(UserError, match="unknown dataset"):
        check_dataset("nope", None)


@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100", "imagefolder"])
def test_directory_datasets_need_an_existing_dir(name: str, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=f"dataset '{name}' needs --data-dir"):
        check_dataset(name, None)
    with pytest.raises(UserError, match="does not exist"):
        load_dataset(name, str(tmp_path / "absent"), (1, 8, 8), 10)


def test_bad_input_shape_and_size() -> None:
    with pytest.raises(UserError, match="three positive sizes"):
        load_dataset("synthetic", None, (0, 8, 8), 10)
    with pytest.raises(UserError, match="at least 1"):
        load_dataset("synthetic", None, (1, 8, 8), 10, size=0)


def test_error_messages_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError) as info:
        load_dataset("mnist", str(tmp_path), (1, 28, 28), None)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_and_shaped() -> None:
    a = load_dataset("synthetic", None, (3, 16, 12), 7, seed=3, size=100)
    b = load_dataset("synthetic", None, (3, 16, 12), 7, seed=3, size=100)
    c = load_dataset("synthetic", None, (3, 16, 12), 7, seed=4, size=100)
    assert len(a) == 100
    assert_items(a, (3, 16, 12))
    xa, ya = all_items(a)
    xb, yb = all_items(b)
    xc, _ = all_items(c)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(xa, xc)
    assert sorted(ya.tolist()) == sorted(i % 7 for i in range(100))


def test_synthetic_defaults_and_bounded_memory() -> None:
    small = load_dataset("synthetic", None, (1, 4, 4), None)
    assert len(small) == 1024 and dataset_num_classes("synthetic", None, None) == 10
    big = load_dataset("synthetic", None, (3, 224, 224), 1000, size=100_000)
    assert isinstance(big, TensorPairDataset)
    assert big.x.numel() * 4 <= 32 * 2**20 and len(big) == 100_000
    assert_items(big, (3, 224, 224))
    train, test = (
        all_items(load_dataset("synthetic", None, (1, 4, 4), 3, size=8, train=t))[0]
        for t in (True, False)
    )
    assert not torch.equal(train, test)


# --------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits_train() -> SizedDataset:
    return load_dataset("digits", None, (1, 8, 8), None)


def test_digits_split_sizes_and_disjointness(digits_train: SizedDataset) -> None:
    test = load_dataset("digits", None, (1, 8, 8), None, train=False)
    assert len(digits_train) + len(test) == 1797
    assert len(digits_train) == 1437
    train_idx = set(digits_module.split_indices(1797, True).tolist())
    test_idx = set(digits_module.split_indices(1797, False).tolist())
    assert not train_idx & test_idx and len(train_idx | test_idx) == 1797
    assert_items(digits_train, (1, 8, 8))
    _, labels = all_items(test)
    assert set(labels.tolist()) == set(range(10))


def test_digits_split_ignores_run_seed_and_resizes(digits_train: SizedDataset) -> None:
    other = load_dataset("digits", None, (1, 8, 8), None, seed=99)
    assert torch.equal(all_items(other)[1], all_items(digits_train)[1])
    rgb = load_dataset("digits", None, (3, 32, 32), None, size=50)
    assert len(rgb) == 50
    x, _ = rgb[0]
    assert tuple(x.shape) == (3, 32, 32) and torch.equal(x[0], x[2])


def test_digits_fewer_classes_keeps_only_those(digits_train: SizedDataset) -> None:
    three = load_dataset("digits", None, (1, 8, 8), 3)
    assert set(all_items(three)[1].tolist()) == {0, 1, 2}


# --------------------------------------------------------------------------- mnist


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_loads_idx_files(tmp_path: Path, compress: bool) -> None:
    write_mnist(tmp_path, compress=compress)
    check_dataset("mnist", str(tmp_path))
    train = load_dataset("mnist", str(tmp_path), (1, 28, 28), None)
    test = load_dataset("mnist", str(tmp_path), (1, 28, 28), None, train=False)
    assert len(train) == 12 and len(test) == 6
    assert_items(train, (1, 28, 28))
    x, y = train[3]
    assert int(y) == 3
    assert float(x[0, 0, 0]) == -1.0 and float(x[0, 0, 27]) == 1.0


def test_mnist_converts_to_rgb_and_resizes(tmp_path: Path) -> None:
    write_mnist(tmp_path / "MNIST" / "raw")  # torchvision's layout is found too
    data = load_dataset("mnist", str(tmp_path), (3, 14, 20), None)
    x, _ = data[0]
    assert tuple(x.shape) == (3, 14, 20)
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    assert float(x[0, 5, 0]) == -1.0 and float(x[0, 5, 19]) == 1.0


def test_mnist_missing_files_are_named(tmp_path: Path) -> None:
    expected = (
        f"expected train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz] in {tmp_path}"
    )
    with pytest.raises(UserError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        check_dataset("mnist", str(tmp_path))
    write_mnist(tmp_path, n_train=2)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(UserError, match=r"t10k-images-idx3-ubyte\[\.gz\] and t10k-labels"):
        load_dataset("mnist", str(tmp_path), (1, 28, 28), None, train=False)


def test_mnist_bad_magic(tmp_path: Path) -> None:
    write_mnist(tmp_path, compress=False)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((12, 28, 28)), 2049)
    with pytest.raises(UserError, match="expected magic number 2051"):
        check_dataset("mnist", str(tmp_path))
    with pytest.raises(UserError, match="bad IDX magic number 2049, expected 2051"):
        load_dataset("mnist", str(tmp_path), (1, 28, 28), None)


def test_mnist_wrong_sizes(tmp_path: Path) -> None:
    write_mnist(tmp_path, compress=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(UserError, match="12x28x28 = 9408 bytes of data, found 9403"):
        load_dataset("mnist", str(tmp_path), (1, 28, 28), None)
    write_mnist(tmp_path, compress=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5), 2049)
    with pytest.raises(UserError, match="expected 12 labels"):
        load_dataset("mnist", str(tmp_path), (1, 28, 28), None)


def test_mnist_corrupt_gzip(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"definitely not gzip")
    with pytest.raises(UserError, match=r"cannot read .*train-labels-idx1-ubyte\.gz"):
        load_dataset("mnist", str(tmp_path), (1, 28, 28), None)


# --------------------------------------------------------------------------- cifar


def test_cifar10_in_archive_folder(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "cifar-10-batches-py")
    check_dataset("cifar10", str(tmp_path))
    train = load_dataset("cifar10", str(tmp_path), (3, 32, 32), None)
    test = load_dataset("cifar10", str(tmp_path), (3, 32, 32), None, train=False)
    assert len(train) == 20 and len(test) == 4
    assert_items(train, (3, 32, 32))
    x, y = train[5]  # second file, second row: label (2 + 1) % 10
    assert int(y) == 3
    assert torch.equal(x[0], torch.ones(32, 32)) and torch.equal(x[1], -torch.ones(32, 32))


def test_cifar10_gray_by_luminance_and_resized(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    x, _ = load_dataset("cifar10", str(tmp_path), (1, 16, 16), None)[0]
    assert tuple(x.shape) == (1, 16, 16)
    assert torch.allclose(x, torch.full((1, 16, 16), (0.299 - 0.5) / 0.5), atol=1e-6)


def test_cifar100_fine_labels(tmp_path: Path) -> None:
    write_cifar_file(tmp_path / "train", [99, 42, 7], b"fine_labels", color=(0, 0, 255))
    write_cifar_file(tmp_path / "test", [1], b"fine_labels")
    assert dataset_num_classes("cifar100", str(tmp_path), None) == 100
    train = load_dataset("cifar100", str(tmp_path), (3, 8, 8), None)
    assert all_items(train)[1].tolist() == [99, 42, 7]
    assert_items(train, (3, 8, 8))


def test_cifar_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"expected cifar10 files data_batch_1..data_batch_5 in"):
        check_dataset("cifar10", str(tmp_path))
    with pytest.raises(UserError, match=r"expected cifar100 files train in .*cifar-100-python"):
        load_dataset("cifar100", str(tmp_path), (3, 32, 32), None)


def test_cifar_malformed_pickles(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "data_batch_2").write_bytes(b"\x80\x04garbage")
    with pytest.raises(UserError, match=r"cannot unpickle .*data_batch_2"):
        load_dataset("cifar10", str(tmp_path), (3, 32, 32), None)
    with (tmp_path / "data_batch_2").open("wb") as handle:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, handle)
    with pytest.raises(UserError, match=r"expected b'data' as N x 3072 uint8, found 2x100"):
        load_dataset("cifar10", str(tmp_path), (3, 32, 32), None)
    with (tmp_path / "data_batch_2").open("wb") as handle:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8)}, handle)
    with pytest.raises(UserError, match=r"expected keys b'data' and b'labels'"):
        load_dataset("cifar10", str(tmp_path), (3, 32, 32), None)


def test_cifar_pickle_cannot_run_code(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return os.mkdir, (str(marker),)

    with (tmp_path / "data_batch_1").open("wb") as handle:
        pickle.dump({b"data": Exploit(), b"labels": []}, handle)
    with pytest.raises(UserError, match="unexpected object"):
        load_dataset("cifar10", str(tmp_path), (3, 32, 32), None)
    assert not marker.exists()


# --------------------------------------------------------------------------- imagefolder


def test_imagefolder_classes_split_and_conversion(tmp_path: Path) -> None:
    write_imagefolder(tmp_path)
    check_dataset("imagefolder", str(tmp_path))
    assert dataset_num_classes("imagefolder", str(tmp_path), None) == 3
    assert dataset_num_classes("imagefolder", str(tmp_path), 7) == 7
    train = load_dataset("imagefolder", str(tmp_path), (3, 24, 24), None)
    test = load_dataset("imagefolder", str(tmp_path), (3, 24, 24), None, train=False)
    assert len(train) == 9 and len(test) == 2  # every 5th file per class is test data
    assert_items(train, (3, 24, 24))
    xs, ys = all_items(train)
    assert ys.tolist() == [0] * 4 + [1] * 4 + [2]
    assert torch.equal(xs[0], torch.ones(3, 24, 24))  # white gray PNG repeated to RGB
    assert torch.allclose(xs[4, 2], torch.ones(24, 24), atol=0.02)  # blue JPEG
    assert torch.allclose(xs[4, 0], -torch.ones(24, 24), atol=0.02)
    gray, _ = load_dataset("imagefolder", str(tmp_path), (1, 10, 12), None)[8]
    assert torch.allclose(gray, torch.full((1, 10, 12), 0.587 * 2 - 1), atol=0.01)


def test_imagefolder_fewer_classes_and_size(tmp_path: Path) -> None:
    write_imagefolder(tmp_path)
    two = load_dataset("imagefolder", str(tmp_path), (3, 8, 8), 2, size=4)
    assert all_items(two)[1].tolist() == [0, 0, 1, 1]


def test_imagefolder_without_classes_or_images(tmp_path: Path) -> None:
    (tmp_path / "loose.png").write_bytes(b"")
    with pytest.raises(UserError, match=r"expected class folders in .* found none"):
        check_dataset("imagefolder", str(tmp_path))
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "readme.txt").write_text("x")
    with pytest.raises(UserError, match=r"found 1 folders in .* but no images"):
        load_dataset("imagefolder", str(tmp_path), (3, 8, 8), None)


def test_imagefolder_corrupt_image_is_a_user_error(tmp_path: Path) -> None:
    write_image(tmp_path / "a" / "ok.png", (4, 4), "L", 0)
    (tmp_path / "a" / "zbad.png").write_bytes(b"not a png")
    data = load_dataset("imagefolder", str(tmp_path), (1, 4, 4), None)
    assert_items(data, (1, 4, 4))
    with pytest.raises(UserError, match=r"cannot read image .*zbad\.png"):
        data[1]


def test_image_channels_other_than_gray_or_rgb_refused(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    with pytest.raises(UserError, match="to 4 channels"):
        load_dataset("mnist", str(tmp_path), (4, 28, 28), None)


# --------------------------------------------------------------------------- sharding

SHARD_CASES = [(1, 4, 64), (2, 4, 64), (4, 3, 50), (3, 5, 97), (8, 1, 30), (5, 2, 23)]


@pytest.mark.parametrize(("world", "batch", "n"), SHARD_CASES)
def test_ranks_together_see_the_sequential_big_batch(world: int, batch: int, n: int) -> None:
    data = index_dataset(n)
    single = ShardedBatches(data, world * batch, rank=0, world=1, seed=11)
    ranks = [ShardedBatches(data, batch, rank=r, world=world, seed=11) for r in range(world)]
    assert all(r.batches_per_epoch == single.batches_per_epoch for r in ranks)
    steps = 2 * single.batches_per_epoch + 1  # crosses into the third epoch
    big = batch_ids(single, steps)
    per_rank = [batch_ids(r, steps) for r in ranks]
    for i in range(steps):
        union = sorted(itertools.chain.from_iterable(p[i] for p in per_rank))
        assert union == sorted(big[i])
        assert all(len(p[i]) == batch for p in per_rank)


@pytest.mark.parametrize(("world", "batch", "n"), SHARD_CASES)
def test_shards_never_overlap_within_an_epoch(world: int, batch: int, n: int) -> None:
    data = index_dataset(n)
    for epoch in range(3):
        shards = [
            ShardedBatches(data, batch, r, world, seed=5).epoch_indices(epoch) for r in range(world)
        ]
        seen = torch.cat(shards).tolist()
        assert len(seen) == len(set(seen)) == world * (n // world)
        assert {len(s) for s in shards} == {n // world}


def test_epochs_reshuffle_and_partial_batches_drop() -> None:
    batches = ShardedBatches(index_dataset(10), 3, rank=0, world=1, seed=0)
    assert batches.batches_per_epoch == 3
    first, second = batches.epoch_indices(0), batches.epoch_indices(1)
    assert not torch.equal(first, second)
    ids = batch_ids(batches, 6)
    assert ids[:3] == [b.tolist() for b in batches.epoch_batches(0)]
    assert ids[3:] == [b.tolist() for b in batches.epoch_batches(1)]
    assert all(len(b) == 3 for b in ids)


def test_no_shuffle_is_identity_strided() -> None:
    ranks = [ShardedBatches(index_dataset(13), 2, r, 3, shuffle=False) for r in range(3)]
    assert [batch_ids(r, 2) for r in ranks] == [
        [[0, 3], [6, 9]],
        [[1, 4], [7, 10]],
        [[2, 5], [8, 11]],
    ]


def test_same_seed_same_stream_different_seed_differs() -> None:
    data = index_dataset(40)
    a, b, c = (batch_ids(ShardedBatches(data, 4, 1, 2, seed=s), 5) for s in (1, 1, 2))
    assert a == b and a != c


def test_dataset_too_small_for_batch_and_workers() -> None:
    with pytest.raises(UserError, match="10 samples is too small for batch size 3 on 4 worker"):
        ShardedBatches(index_dataset(10), 3, rank=0, world=4)
    ShardedBatches(index_dataset(12), 3, rank=0, world=4)  # exactly enough


def test_in_memory_and_per_item_paths_agree() -> None:
    data = load_dataset("synthetic", None, (2, 3, 3), 4, size=30)

    class PerItem(Dataset[tuple[Tensor, Tensor]]):
        def __len__(self) -> int:
            return len(data)

        def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
            return data[i]

    fast = itertools.islice(iter(ShardedBatches(data, 4, 1, 3, seed=2)), 4)
    slow = itertools.islice(iter(ShardedBatches(PerItem(), 4, 1, 3, seed=2)), 4)
    for (xf, yf), (xs, ys) in zip(fast, slow, strict=True):
        assert torch.equal(xf, xs) and torch.equal(yf, ys)
        assert xf.shape == (4, 2, 3, 3) and yf.dtype == torch.int64


def test_imagefolder_batches_stack(tmp_path: Path) -> None:
    write_imagefolder(tmp_path)
    data = load_dataset("imagefolder", str(tmp_path), (3, 16, 16), None)
    x, y = next(iter(ShardedBatches(data, 2, rank=1, world=2)))
    assert x.shape == (2, 3, 16, 16) and x.dtype == torch.float32 and y.shape == (2,)


def test_lazy_conversion_matches_precomputed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_cifar10(tmp_path)
    eager = load_dataset("cifar10", str(tmp_path), (1, 20, 20), None)
    monkeypatch.setattr("distbench.data.base.PRECOMPUTE_BYTES", 0)
    lazy = load_dataset("cifar10", str(tmp_path), (1, 20, 20), None)
    assert isinstance(eager, TensorPairDataset) and eager.transform is None
    assert isinstance(lazy, TensorPairDataset) and lazy.transform is not None
    assert lazy.x.dtype == torch.uint8
    idx = torch.tensor([3, 0, 17])
    assert torch.equal(lazy.batch(idx)[0], eager.batch(idx)[0])
