"""Synchronous data parallelism with PyTorch ``DistributedDataParallel``.

Communication is timed by a DDP communication hook that performs the same averaging
all-reduce as DDP's default hook and records when each gradient bucket's all-reduce was
launched and when it completed. From those we report the total communication time (the
union of the buckets' in-flight intervals) and the part left *exposed* after the backward
computation finished, which is moved from ``backward`` to ``comm``: the time between the
last bucket's launch (the end of gradient computation) and the return of ``backward()``.
"""

# No ``from __future__ import annotations`` here: DDP inspects the hook's annotations at
# run time and rejects a string where it expects ``dist.GradBucket``.
import time
from typing import Any, ClassVar

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from distbench.measurement.timer import PhaseTimer
from distbench.strategies.base import Strategy
from distbench.strategies.common import (
    build_workload,
    fetch_batch,
    record_step,
    state_as_numpy,
    synchronizer,
)


class CommProbe:
    """A DDP comm hook that averages gradients and records bucket in-flight intervals."""

    def __init__(self, world_size: int) -> None:
        self.world_size = world_size
        self.launches: list[float] = []
        self.completions: list[float] = []

    def reset(self) -> None:
        self.launches = []
        self.completions = []

    def hook(self, state: object, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
        self.launches.append(time.perf_counter())
        tensor = bucket.buffer().div_(self.world_size)
        future = dist.all_reduce(tensor, async_op=True).get_future()

        def finished(fut: torch.futures.Future[list[torch.Tensor]]) -> torch.Tensor:
            self.completions.append(time.perf_counter())
            return fut.value()[0]

        return future.then(finished)

    def total(self) -> float:
        """Length of the union of the buckets' in-flight intervals."""
        intervals = sorted(zip(self.launches, self.completions, strict=False))
        covered, end = 0.0, float("-inf")
        for start, stop in intervals:
            if stop <= end:
                continue
            covered += stop - max(start, end)
            end = stop
        return covered

    def exposed(self, backward_end: float) -> float:
        """Communication still running after the last bucket was launched."""
        return max(0.0, backward_end - max(self.launches)) if self.launches else 0.0


class DDP(Strategy):
    name: ClassVar[str] = "ddp"
    description: ClassVar[str] = "synchronous all-reduce data parallel (DistributedDataParallel)"
    prediction_model: ClassVar[str | None] = "ddp"
    emulated_compute: ClassVar[bool] = True
    trains_to_target: ClassVar[bool] = True

    def run(self) -> None:
        ctx, cfg = self.ctx, self.ctx.cfg
        work = build_workload(
            cfg, ctx.device, cfg.batch_size, ctx.rank, ctx.world_size, ctx.compute
        )
        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        self.model = DistributedDataParallel(work.model, device_ids=ids)
        probe = CommProbe(ctx.world_size)
        self.model.register_comm_hook(None, probe.hook)
        timer = PhaseTimer(synchronizer(ctx.device))
        # every replica holds the same weights: rank 0's module stands for the model
        self.goal = self.convergence(work.model, cfg.batch_size * ctx.world_size)
        for step in self.goal.steps():
            timer.start_step()
            x, y = fetch_batch(work, ctx.device)
            timer.mark("data")
            loss = work.loss_fn(self.model(x), y)
            timer.mark("forward")
            probe.reset()
            work.compute.backward(loss)
            backward_end = timer.mark("backward")
            timer.move("backward", "comm", probe.exposed(backward_end))
            work.compute.update(work.optimizer)
            work.optimizer.zero_grad(set_to_none=True)
            timer.mark("update")
            loss_value = float(loss.detach())
            seconds = record_step(
                ctx.recorder,
                cfg,
                step,
                timer,
                cfg.batch_size,
                loss=loss_value,
                comm_total=probe.total(),
            )
            self.goal.after_step(step, seconds, loss_value)

    def summary_extra(self) -> dict[str, Any]:
        return self.goal.summary()

    def final_weights(self) -> dict[str, np.ndarray] | None:
        return state_as_numpy(self.model) if self.ctx.rank == 0 else None
