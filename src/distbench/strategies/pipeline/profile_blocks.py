"""Measurements the profiled planner needs: per-block costs and the link between two ranks.

``profile_blocks`` times each block's forward and backward on one micro-batch (the fastest
of a few repeats, after one warm-up) on a *copy* of the model, so batch-norm running
statistics of the trained model stay untouched, and records parameter and output bytes.
``measure_link`` fits the alpha-beta model to ping-pong round trips between two ranks with
``torch.distributed`` send/recv. Both run once, before training, never in a measured step.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import replace

import torch
import torch.distributed as dist
from torch import nn

from distbench.models import model_blocks
from distbench.profiling.primitives import flat_buffer, round_trip
from distbench.strategies.pipeline.partition import BlockCost, Link

PROFILE_REPEATS = 5  # the minimum is kept: time-sharing on a busy host only adds time
LINK_SIZES = (1024, 4 * 2**20)  # bytes: latency-dominated and bandwidth-dominated
LINK_REPEATS = 5


def _block_cost(
    name: str, block: nn.Module, x: torch.Tensor, first: bool, sync: Callable[[], None]
) -> tuple[BlockCost, torch.Tensor]:
    """Fastest forward and backward time of ``block`` on input ``x``; returns its output too.

    The input requires grad except for the first block, as in a real stage (only stages
    after the first send an input gradient back)."""
    forwards, backwards = [], []
    out = x
    for repeat in range(PROFILE_REPEATS + 1):  # the first round warms up and is dropped
        inp = x.detach().requires_grad_(not first)
        sync()
        start = time.perf_counter()
        out = block(inp)
        sync()
        middle = time.perf_counter()
        if out.requires_grad:
            out.backward(torch.ones_like(out))
        sync()
        end = time.perf_counter()
        block.zero_grad(set_to_none=True)
        if repeat:
            forwards.append(middle - start)
            backwards.append(end - middle)
    params = sum(p.numel() * p.element_size() for p in block.parameters())
    cost = BlockCost(
        name,
        min(forwards),
        min(backwards),
        params,
        out.numel() * out.element_size(),
        *_weights_s(block),
    )
    return cost, out.detach()


def _weights_s(block: nn.Module) -> tuple[float, float]:
    """Fastest copy of the block's weights plus an update of them with that copy (the
    stash and the SGD step a micro-batch costs under PipeDream), and of that the update
    alone. The probe is a copy of the model, so its weights may change."""
    weights = [p for p in block.parameters()]
    if not weights:
        return 0.0, 0.0
    totals, updates = [], []
    with torch.no_grad():
        for repeat in range(PROFILE_REPEATS + 1):
            start = time.perf_counter()
            copies = [w.clone() for w in weights]
            copied = time.perf_counter()
            for w, c in zip(weights, copies, strict=True):
                w.add_(c, alpha=-1e-6)
            if repeat:
                end = time.perf_counter()
                totals.append(end - start)
                updates.append(end - copied)
    return min(totals), min(updates)


def profile_blocks(
    model: nn.Module, sample: torch.Tensor, sync: Callable[[], None] | None = None
) -> list[BlockCost]:
    """Cost of every block of ``model`` on the micro-batch ``sample`` (training mode)."""
    probe = copy.deepcopy(model).train()
    sync = sync or (lambda: None)
    costs: list[BlockCost] = []
    x = sample
    # Dropout draws random numbers; keep the generator state training will start from.
    devices = [sample.device.index or 0] if sample.is_cuda else []
    with torch.random.fork_rng(devices=devices):
        for index, (name, block) in enumerate(model_blocks(probe)):
            cost, x = _block_cost(name, block, x, index == 0, sync)
            costs.append(cost)
    return costs


def _round_trip(nbytes: int, peer: int, initiator: bool, device: torch.device) -> float:
    return round_trip(flat_buffer(nbytes, device), peer, initiator)


def measure_link(rank: int, peer: int, device: torch.device | None = None) -> Link:
    """Alpha-beta fit from ping-pongs between ``rank`` and ``peer`` (both must call this;
    the lower rank initiates) with tensors on ``device`` (NCCL needs CUDA tensors).
    Bandwidth is floored to stay positive on a noisy host."""
    device = device or torch.device("cpu")
    initiator = rank < peer
    one_way: list[float] = []
    for nbytes in LINK_SIZES:
        _round_trip(nbytes, peer, initiator, device)  # warm-up: connection and buffers
        trips = [_round_trip(nbytes, peer, initiator, device) for _ in range(LINK_REPEATS)]
        one_way.append(min(trips) / 2)
    small, large = LINK_SIZES
    slope = max((one_way[1] - one_way[0]) / (large - small), 1e-12)
    latency = max(one_way[0] - small * slope, 0.0)
    return Link(latency_s=latency, bandwidth_bytes_per_s=1.0 / slope, measured=True)


#: Bytes of the two-rank all-reduce that calibrates a ring step (``measure_ring_step``).
ALLREDUCE_BYTES = 16 * 2**20


def measure_ring_step(link: Link, group: dist.ProcessGroup, device: torch.device) -> Link:
    """``link`` with the per-byte cost of a ring all-reduce step: a two-rank all-reduce of
    ``ALLREDUCE_BYTES`` takes two steps of half of it, each a transfer *and* a reduction on
    the same cores (which the ping-pong does not see). Fastest of ``LINK_REPEATS`` after a
    warm-up; both ranks of ``group`` call it."""
    buffer = torch.ones(ALLREDUCE_BYTES // 4, device=device)
    dist.all_reduce(buffer, group=group)
    times = []
    for _ in range(LINK_REPEATS):
        began = time.perf_counter()
        dist.all_reduce(buffer, group=group)
        times.append(time.perf_counter() - began)
    per_byte = max((min(times) / 2 - link.latency_s) / (ALLREDUCE_BYTES / 2), 1e-15)
    return replace(link, reduce_s_per_byte=per_byte)
