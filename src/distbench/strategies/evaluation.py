"""Held-out accuracy of a trained model: the convergence view beside the timings.

Start at :func:`held_out_accuracy`. Any strategy can call it at the end of a run on the rank
that holds the final weights and put the result in ``summary_extra()["accuracy"]``;
:func:`has_held_out` says for which datasets that is worth doing by default (small ones with
a fixed test split, so the evaluation costs little next to the run).
"""

from __future__ import annotations

import torch
from torch import nn

from distbench.config import RunConfig
from distbench.data import SizedDataset, TensorPairDataset, dataset_num_classes, load_dataset
from distbench.strategies.common import input_shape_of

# Datasets evaluated by default: small, with a fixed held-out split.
HELD_OUT_DATASETS = ("digits",)


def has_held_out(cfg: RunConfig) -> bool:
    return cfg.dataset in HELD_OUT_DATASETS


def _batch(data: SizedDataset, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(data, TensorPairDataset):
        return data.batch(idx)
    items = [data[i] for i in idx.tolist()]
    return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


def train_size(cfg: RunConfig) -> int:
    """Samples in the dataset's training split (an epoch's worth)."""
    classes = dataset_num_classes(cfg.dataset, cfg.data_dir, cfg.num_classes)
    data = load_dataset(
        cfg.dataset, cfg.data_dir, input_shape_of(cfg), classes, seed=cfg.seed, train=True
    )
    return len(data)


def held_out_split(cfg: RunConfig, size: int | None = None) -> SizedDataset:
    """The dataset's test split (``train=False``); ``size`` limits it to that many evenly
    spread samples."""
    classes = dataset_num_classes(cfg.dataset, cfg.data_dir, cfg.num_classes)
    return load_dataset(
        cfg.dataset,
        cfg.data_dir,
        input_shape_of(cfg),
        classes,
        seed=cfg.seed,
        train=False,
        size=size,
    )


def held_out_samples(cfg: RunConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole test split as two tensors (inputs, labels), for a worker outside PyTorch."""
    data = held_out_split(cfg)
    return _batch(data, torch.arange(len(data)))


def held_out_accuracy(
    cfg: RunConfig,
    model: nn.Module,
    device: torch.device,
    batch_size: int = 256,
    size: int | None = None,
) -> float:
    """Fraction of the test split that ``model`` classifies correctly (see
    :func:`classified`)."""
    correct, total = classified(held_out_split(cfg, size), model, device, batch_size)
    return correct / total if total else 0.0


def classified(
    data: SizedDataset, model: nn.Module, device: torch.device, batch_size: int = 256
) -> tuple[int, int]:
    """(correctly classified, evaluated) samples of ``data``. The model is evaluated in
    eval mode (BatchNorm uses its running statistics) and put back in the mode it was in."""
    was_training = model.training
    model.eval()
    correct = 0
    try:
        with torch.no_grad():
            for start in range(0, len(data), batch_size):
                idx = torch.arange(start, min(start + batch_size, len(data)))
                x, y = _batch(data, idx)
                predicted = model(x.to(device)).argmax(dim=1).cpu()
                correct += int((predicted == y).sum())
    finally:
        model.train(was_training)
    return correct, len(data)
