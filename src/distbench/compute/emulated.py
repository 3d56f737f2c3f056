"""The compute a strategy calls: ``RealCompute`` runs the model, ``EmulatedCompute``
replays a ``ComputePlan`` with waits while every tensor, hook and message stays real.

A strategy does its step the same way in both cases: ``next_batch``, ``model(x)``,
``backward(loss)``, ``update(optimizer)``. Emulation replaces the model's ``forward`` (on
the module itself, so DDP's own forward, buffer broadcast and reducer bookkeeping still
run) by a wait and a chain of tiny autograd nodes, one per parameter, ordered by when the
parameter's gradient becomes ready. ``backward`` releases them in that order, each at its
deadline (``grad_ready`` x the drawn backward time after backward began), handing
autograd a zero gradient of the parameter's real shape: DDP's reducer copies it into its
buckets and launches their all-reduces exactly when the real backward would; a parameter
server's client pushes it. A last node holds backward until the whole drawn time is over.
Nothing is trained: the gradients are zeros and ``update`` does not step the optimizer.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from distbench.compute.plan import ComputePlan, parse_compute, read_plan
from distbench.compute.wait import WaitLog, wait_until

Batch = tuple[torch.Tensor, torch.Tensor]


class Compute(Protocol):
    """How a strategy's step computes (see the module docstring)."""

    @property
    def emulated(self) -> bool: ...

    def install(self, model: nn.Module) -> None: ...

    def next_batch(self, batches: Iterator[Batch], device: torch.device) -> Batch: ...

    def backward(self, loss: torch.Tensor) -> None: ...

    def update(self, optimizer: torch.optim.Optimizer) -> None: ...

    def summary(self) -> dict[str, Any] | None: ...


class RealCompute:
    """The model's own forward, backward and optimizer step."""

    emulated = False

    def install(self, model: nn.Module) -> None:
        return None

    def next_batch(self, batches: Iterator[Batch], device: torch.device) -> Batch:
        x, y = next(batches)
        return x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def update(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer.step()

    def summary(self) -> dict[str, Any] | None:
        return None


REAL = RealCompute()


class _Release(torch.autograd.Function):
    """Backward of one parameter: wait for its deadline, hand autograd a zero gradient."""

    @staticmethod
    def forward(
        ctx: Any, chain: torch.Tensor, emulation: EmulatedCompute, index: int, param: torch.Tensor
    ) -> torch.Tensor:
        ctx.emulation, ctx.index = emulation, index
        return chain.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        emulation: EmulatedCompute = ctx.emulation
        emulation.release(ctx.index)
        return grad, None, None, emulation.zero_grad(ctx.index)


class _Tail(torch.autograd.Function):
    """The end of backward: whatever of the drawn time is left after the last gradient."""

    @staticmethod
    def forward(ctx: Any, chain: torch.Tensor, emulation: EmulatedCompute) -> torch.Tensor:
        ctx.emulation = emulation
        return chain.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        ctx.emulation.release(None)
        return grad, None


def ready_by_size(params: list[nn.Parameter]) -> list[float]:
    """Without a measurement: gradients become ready last parameter first, each after a
    share of backward proportional to its size."""
    sizes = [p.numel() for p in params]
    total = float(sum(sizes)) or 1.0
    ready, elapsed = [0.0] * len(params), 0.0
    for index in reversed(range(len(params))):
        elapsed += sizes[index] / total
        ready[index] = elapsed
    return ready


class EmulatedCompute:
    """Replays ``plan`` on one rank (see the module docstring)."""

    emulated = True

    def __init__(self, plan: ComputePlan, rng: random.Random, local_batch: int) -> None:
        self.plan, self.rng, self.local_batch = plan, rng, local_batch
        self.log = WaitLog()
        # Backward: each release's lateness against its deadline, logged relative to the
        # step's drawn backward time (a tiny share's own relative error means nothing).
        self.release_log = WaitLog()
        self._params: list[nn.Parameter] = []
        self._ready: list[float] = []
        self._forward_order: list[int] = []
        self._step: dict[str, float] = plan.draw(rng)
        self._backward_start = 0.0

    # -- what the strategy calls ---------------------------------------------------------
    def install(self, model: nn.Module) -> None:
        self._params = [p for p in model.parameters() if p.requires_grad]
        measured = self.plan.grad_ready
        self._ready = (
            list(measured) if len(measured) == len(self._params) else ready_by_size(self._params)
        )
        # Built first-ready last, so that backward reaches the first-ready parameter first.
        self._forward_order = sorted(range(len(self._params)), key=lambda i: -self._ready[i])
        model.forward = self._forward

    def next_batch(self, batches: Iterator[Batch], device: torch.device) -> Batch:
        """A new step begins: draw its phases, wait out the data time, return a stand-in
        batch (the model never reads it)."""
        self._step = self.plan.draw(self.rng)
        self.log.wait(self._step["data"])
        x = torch.zeros(self.local_batch, 1, device=device)
        return x, torch.zeros(self.local_batch, dtype=torch.long, device=device)

    def backward(self, loss: torch.Tensor) -> None:
        self._backward_start = time.perf_counter()
        loss.backward()

    def update(self, optimizer: torch.optim.Optimizer) -> None:
        self.log.wait(self._step["update"])

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.plan.source,
            "profile_id": self.plan.profile_id,
            "batch_scale": self.plan.scale,
            "waits": self.log.summary(),
            "backward_releases": self.release_log.summary(),
        }

    # -- the emulated model --------------------------------------------------------------
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.wait(self._step["forward"])
        seed = torch.zeros((), device=x.device, requires_grad=True)
        chain = _Tail.apply(seed, self)
        for index in self._forward_order:
            chain = _Release.apply(chain, self, index, self._params[index])
        return chain.expand(x.shape[0], 2)  # logits of two classes for the loss

    def release(self, index: int | None) -> None:
        """Wait until parameter ``index``'s gradient is due (None: the end of backward)."""
        share = 1.0 if index is None else self._ready[index]
        backward = self._step["backward"]
        deadline = self._backward_start + share * backward
        late = wait_until(deadline) - deadline
        if backward > 0:
            self.release_log.log(backward, backward + late)

    def zero_grad(self, index: int) -> torch.Tensor:
        param = self._params[index]
        return torch.zeros((), dtype=param.dtype, device=param.device).expand(param.shape)


class _StageWork(torch.autograd.Function):
    """A pipeline stage's emulated work on one micro-batch: the output (zeros of the real
    shape) depends on the input and every parameter, so autograd, the schedules and
    PipeDream's stashed weights see a real graph; backward waits the micro-batch's drawn
    backward time and hands back zero gradients of the real shapes."""

    @staticmethod
    def forward(
        ctx: Any,
        stage: StageEmulation,
        backward_s: float,
        out_shape: tuple[int, ...],
        x: torch.Tensor,
        *params: torch.Tensor,
    ) -> torch.Tensor:
        ctx.stage, ctx.backward_s = stage, backward_s
        ctx.x_like = (x.shape, x.dtype, x.device)
        ctx.param_like = [(p.shape, p.dtype, p.device) for p in params]
        return torch.zeros(out_shape, device=x.device)  # activations are float32

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        ctx.stage.compute.log.wait(ctx.backward_s)
        shape, dtype, device = ctx.x_like
        x_grad = torch.zeros(shape, dtype=dtype, device=device) if ctx.needs_input_grad[3] else None
        zeros = [torch.zeros((), dtype=d, device=v).expand(s) for s, d, v in ctx.param_like]
        return (None, None, None, x_grad, *zeros)


class StageEmulation:
    """Emulated compute of one pipeline stage: its share of the replayed plan.

    Per micro-batch, the forward waits ``forward_share`` of a drawn step's forward (the
    plan is at the micro-batch's size) and its backward ``backward_share`` of the same
    step's backward; each update waits ``update_s``. The shares are the stage's blocks'
    part of the block profile; the magnitude and spread are the replayed plan's."""

    def __init__(
        self,
        compute: EmulatedCompute,
        forward_share: float,
        backward_share: float,
        update_s: float,
    ) -> None:
        self.compute = compute
        self.forward_share, self.backward_share = forward_share, backward_share
        self.update_s = update_s

    def install(self, module: nn.Module, output_shape: tuple[int, ...]) -> None:
        """Replace ``module``'s forward (on the instance: the schedules' calls and
        PipeDream's functional calls with stashed weights still go through it)."""

        def forward(x: torch.Tensor) -> torch.Tensor:
            step = self.compute.plan.draw(self.compute.rng)
            self.compute.log.wait(step["forward"] * self.forward_share)
            params = [p for p in module.parameters() if p.requires_grad]
            backward_s = step["backward"] * self.backward_share
            out_shape = (x.shape[0], *output_shape)
            return _StageWork.apply(self, backward_s, out_shape, x, *params)

        module.forward = forward

    def update(self) -> None:
        self.compute.log.wait(self.update_s)


def make_compute(cfg_compute: str, run_dir: Path, seed: str, local_batch: int) -> Compute:
    """The compute of one rank: real, or the run directory's plan replayed with draws
    seeded by ``seed`` (different on every rank and round)."""
    if not parse_compute(cfg_compute).emulated:
        return REAL
    return EmulatedCompute(read_plan(run_dir), random.Random(seed), local_batch)
