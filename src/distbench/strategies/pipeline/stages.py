"""One rank's stage: its slice of the model, and the probe that times it inside torch's
schedules.

``stage_module`` cuts blocks ``[start, stop)`` out of the full model as an ``nn.Sequential``
with the *same child names*, so the stage's ``state_dict`` keys are exactly the full
model's keys for those blocks and stage weights merge back into the unsplit model's names.

``StageProbe`` is how we measure inside ``torch.distributed.pipelining``'s schedules without
copying them: it wraps the stage's ``forward_one_chunk`` and ``backward_one_chunk`` (and the
loss function and the final gradient scaling) with clock reads. Everything else the
schedule's ``step`` spends is time *blocked* in send/recv waits or in the schedule's own
bookkeeping; the strategy splits that into ``comm`` and ``wait`` (see ``strategy.py``).
Beside wall time it adds up the process's CPU time in the same intervals
(``time.process_time``): on a host shared with other jobs, wall time includes time the
stage was descheduled, CPU time does not, so CPU time compares partitions fairly there.
The probe also counts micro-batches in flight (forwarded, not yet backwarded) and, on the
first step only, the bytes autograd saves for backward per micro-batch (a saved-tensor
hook; parameters excluded), which gives the stage's peak activation memory.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from distbench.models import model_blocks
from distbench.strategies.pipeline.partition import Plan


def stage_module(model: nn.Module, start: int, stop: int) -> nn.Sequential:
    """Blocks ``[start, stop)`` of ``model`` as a Sequential keeping the blocks' names."""
    return nn.Sequential(OrderedDict(model_blocks(model)[start:stop]))


def replica_group(plan: Plan, stage_index: int) -> tuple[dist.ProcessGroup, int] | None:
    """The process group of stage ``stage_index``'s replicas and their count (None: one).
    Every rank creates every replicated stage's group, in the same order, as
    ``new_group`` requires, so every rank must call this."""
    mine = None
    for stage in plan.stages:
        if stage.replicas > 1:
            group = dist.new_group([plan.rank_of(stage.index, r) for r in range(stage.replicas)])
            if stage.index == stage_index:
                mine = (group, stage.replicas)
    return mine


def gradient_mean(group: dist.ProcessGroup, size: int) -> Callable[[list[torch.Tensor]], None]:
    """Averages gradients in place over the ``size`` ranks of ``group`` (a stage's
    replicas): one all-reduce of them flattened into one buffer."""

    def average(grads: list[torch.Tensor]) -> None:
        if not grads:  # a stage without weights (pooling, flatten): all its replicas alike
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, group=group)
        flat /= size
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    return average


class _SavedBytes:
    """Saved-tensor hooks that add up the distinct storages autograd keeps for backward."""

    def __init__(self, exclude: set[int]) -> None:
        self.exclude = exclude
        self.seen: set[int] = set()
        self.total = 0

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        try:
            storage = tensor.untyped_storage()
            key = storage.data_ptr()
            size = storage.nbytes()
        except (RuntimeError, NotImplementedError):
            return tensor  # tensors without storage (e.g. meta) hold no memory
        if key not in self.exclude and key not in self.seen:
            self.seen.add(key)
            self.total += size
        return tensor

    @staticmethod
    def unpack(tensor: torch.Tensor) -> torch.Tensor:
        return tensor


class StageProbe:
    """Accumulates compute seconds of one schedule step and tracks activations in flight."""

    def __init__(self, module: nn.Module, sync: Callable[[], None] | None = None) -> None:
        self._sync = sync
        self._param_ptrs = {p.untyped_storage().data_ptr() for p in module.parameters()}
        self.forward_s = self.backward_s = 0.0
        self.forward_cpu_s = self.backward_cpu_s = 0.0
        self.inflight = 0
        self.inflight_peak = 0
        self.count_bytes = True  # only on the first step: the hook costs time
        self._saved: dict[int, int] = {}
        self._live_bytes = 0
        self.activation_peak_bytes = 0
        self.microbatch_activation_bytes = 0

    def _now(self) -> float:
        if self._sync is not None:
            self._sync()
        return time.perf_counter()

    def reset(self) -> None:
        """Start a new step's accumulation."""
        self.forward_s = self.backward_s = 0.0
        self.forward_cpu_s = self.backward_cpu_s = 0.0

    def end_first_step(self) -> None:
        self.count_bytes = False

    def install(self, stage: Any) -> None:
        """Wrap ``stage``'s per-chunk compute methods (instance attributes shadow the class's)."""
        forward, backward = stage.forward_one_chunk, stage.backward_one_chunk
        reduce_grad = stage.perform_reduce_grad

        def timed_forward(chunk: int, *args: Any, **kwargs: Any) -> Any:
            start, cpu = self._now(), time.process_time()
            if self.count_bytes:
                result = self._forward_counting(forward, chunk, *args, **kwargs)
            else:
                result = forward(chunk, *args, **kwargs)
            self.forward_s += self._now() - start
            self.forward_cpu_s += time.process_time() - cpu
            self._entered()
            return result

        def timed_backward(chunk: int, *args: Any, **kwargs: Any) -> Any:
            start, cpu = self._now(), time.process_time()
            result = backward(chunk, *args, **kwargs)
            self.backward_s += self._now() - start
            self.backward_cpu_s += time.process_time() - cpu
            self._left(chunk)
            return result

        def timed_reduce(*args: Any, **kwargs: Any) -> Any:
            start, cpu = self._now(), time.process_time()
            result = reduce_grad(*args, **kwargs)
            self.backward_s += self._now() - start
            self.backward_cpu_s += time.process_time() - cpu
            return result

        stage.forward_one_chunk = timed_forward
        stage.backward_one_chunk = timed_backward
        stage.perform_reduce_grad = timed_reduce

    def timed_loss(self, loss_fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        """The loss (computed on the last stage after each forward) counts as forward."""

        def wrapped(*args: Any, **kwargs: Any) -> torch.Tensor:
            start, cpu = self._now(), time.process_time()
            loss = loss_fn(*args, **kwargs)
            self.forward_s += self._now() - start
            self.forward_cpu_s += time.process_time() - cpu
            return loss

        return wrapped

    def _forward_counting(
        self, forward: Callable[..., Any], chunk: int, *args: Any, **kwargs: Any
    ) -> Any:
        saved = _SavedBytes(self._param_ptrs)
        with torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack):
            result = forward(chunk, *args, **kwargs)
        self._saved[chunk] = saved.total
        self._live_bytes += saved.total
        self.activation_peak_bytes = max(self.activation_peak_bytes, self._live_bytes)
        self.microbatch_activation_bytes = max(self.microbatch_activation_bytes, saved.total)
        return result

    def _entered(self) -> None:
        self.inflight += 1
        self.inflight_peak = max(self.inflight_peak, self.inflight)

    def _left(self, chunk: int) -> None:
        self.inflight -= 1
        self._live_bytes -= self._saved.pop(chunk, 0)
