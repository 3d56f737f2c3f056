"""Pieces every PyTorch strategy shares: building the workload and the training step."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from distbench.compute.emulated import REAL, Compute
from distbench.config import RunConfig
from distbench.data import ShardedBatches, dataset_num_classes, load_dataset
from distbench.measurement.records import RankRecorder
from distbench.measurement.timer import PhaseTimer
from distbench.models import build_model, model_defaults


@dataclass
class Workload:
    """Model, loss, optimizer and this rank's batches, built identically on every rank;
    ``compute`` is how its steps compute (real, or emulated from a profile: ``compute``)."""

    model: nn.Module
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]]
    input_shape: tuple[int, int, int]
    num_classes: int
    compute: Compute = REAL


def input_shape_of(cfg: RunConfig) -> tuple[int, int, int]:
    size, channels = model_defaults(cfg.model)
    return (channels, cfg.input_size or size, cfg.input_size or size)


def build_module(cfg: RunConfig, device: torch.device) -> tuple[nn.Module, int]:
    """The model with weights fixed by ``cfg.seed`` (identical on every rank)."""
    num_classes = dataset_num_classes(cfg.dataset, cfg.data_dir, cfg.num_classes)
    shape = input_shape_of(cfg)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, num_classes, shape[1], shape[0]).to(device)
    return model, num_classes


def make_optimizer(cfg: RunConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def make_batches(
    cfg: RunConfig, batch_size: int, shard: int, shards: int, num_classes: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    dataset = load_dataset(
        cfg.dataset, cfg.data_dir, input_shape_of(cfg), num_classes, seed=cfg.seed, train=True
    )
    return iter(ShardedBatches(dataset, batch_size, shard, shards, seed=cfg.seed))


def build_workload(
    cfg: RunConfig,
    device: torch.device,
    batch_size: int,
    shard: int,
    shards: int,
    compute: Compute = REAL,
) -> Workload:
    model, num_classes = build_module(cfg, device)
    compute.install(model)
    return Workload(
        model=model,
        loss_fn=nn.CrossEntropyLoss(),
        optimizer=make_optimizer(cfg, list(model.parameters())),
        batches=make_batches(cfg, batch_size, shard, shards, num_classes),
        input_shape=input_shape_of(cfg),
        num_classes=num_classes,
        compute=compute,
    )


def synchronizer(device: torch.device) -> Callable[[], None] | None:
    """What to call before reading the clock so queued GPU work is charged to its phase."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return None


def fetch_batch(work: Workload, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return work.compute.next_batch(work.batches, device)


def state_as_numpy(model: nn.Module) -> dict[str, np.ndarray]:
    """Parameters and buffers as NumPy arrays keyed by name (DDP's 'module.' prefix dropped)."""
    return {
        name.removeprefix("module."): tensor.detach().cpu().numpy().copy()
        for name, tensor in model.state_dict().items()
    }


def default_step(work: Workload, device: torch.device, timer: PhaseTimer) -> float:
    """One plain training step under the timer; returns the loss."""
    timer.start_step()
    x, y = fetch_batch(work, device)
    timer.mark("data")
    loss = work.loss_fn(work.model(x), y)
    timer.mark("forward")
    work.compute.backward(loss)
    timer.mark("backward")
    work.compute.update(work.optimizer)
    work.optimizer.zero_grad(set_to_none=True)
    timer.mark("update")
    return float(loss.detach())


def record_step(
    recorder: RankRecorder,
    cfg: RunConfig,
    step: int,
    timer: PhaseTimer,
    samples: int,
    **extra: float,
) -> float:
    """Write the step the timer just finished (the first ``cfg.warmup`` steps are warm-up);
    returns its time."""
    step_time, phases = timer.end_step()
    recorder.step(
        step, step < cfg.warmup, timer.step_start_wall, step_time, samples, phases, **extra
    )
    return step_time


def state_sizes(cfg: RunConfig) -> tuple[int, int, int]:
    """(bytes a parameter server moves, bytes DDP all-reduces, tensors) of ``cfg.model``."""
    model, _ = build_module(cfg, torch.device("cpu"))
    params = list(model.parameters())
    buffers = [b for b in model.buffers() if b.is_floating_point()]
    grad_bytes = sum(p.numel() * 4 for p in params)
    return grad_bytes + sum(b.numel() * 4 for b in buffers), grad_bytes, len(params) + len(buffers)


def meta_model(cfg: RunConfig) -> nn.Module:
    """``cfg.model`` on torch's meta device: its shapes without allocating anything, so
    it is instant for any model."""
    num_classes = dataset_num_classes(cfg.dataset, cfg.data_dir, cfg.num_classes)
    shape = input_shape_of(cfg)
    with torch.device("meta"):
        return build_model(cfg.model, num_classes, shape[1], shape[0])


def parameter_bytes(cfg: RunConfig) -> list[int]:
    """Bytes of each trainable parameter's gradient of ``cfg.model``, in
    ``model.parameters()`` order (the order of a profile's ``grad_ready``)."""
    model = meta_model(cfg)
    return [p.numel() * p.element_size() for p in model.parameters() if p.requires_grad]


def server_tensor_bytes(cfg: RunConfig) -> list[int]:
    """Bytes of every tensor a parameter server holds for ``cfg.model``, in the order a
    sharded server assigns them (``sharding.transferred_tensors``)."""
    from distbench.strategies.ps.sharding import transferred_tensors

    return [numel * 4 for *_, numel in transferred_tensors(meta_model(cfg))]


def state_bytes(cfg: RunConfig) -> int:
    """Bytes of ``cfg.model``'s parameters and floating-point buffers (``meta_model``):
    what a parameter server holds."""
    return sum(server_tensor_bytes(cfg))
