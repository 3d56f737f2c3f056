"""What a DDP step costs beyond the ring formula, measured on this host's loopback.

The ring formula (``predict.formulas.ring_allreduce_time``) prices the bytes of one
all-reduce between idle ranks, as the all-reduce sweep of ``calibrate.measure_links``
measures them. A real DDP step pays two things that sweep never sees:

- **machinery** (``ddp_overhead``): DDP's own work in every step, even with one rank and
  nothing to send: the forward pre-hook, the autograd hooks that copy each gradient into its
  bucket, the comm hook and its future, the copy back. One process trains two copies of the
  workload, one plain and one wrapped in a one-rank ``DistributedDataParallel``, in
  alternating pairs (plain first, then DDP first, so drift falls on both alike);
  ``ddp_overhead`` is the median of the pairs' differences (DDP step minus plain step).
- **the all-reduce right after a step** (``LoadedAllReduce``): ``k`` ranks train, and each
  all-reduces one flat buffer of the gradient bytes as soon as its backward pass ends. Per
  step, the time from the last rank's end of backward to the last rank's end of the
  all-reduce (the slowest rank's wait is the straggler term, already in ``t_grad_max``). On
  a CPU host whose cores the workers fill, this measured well above the idle sweep: lenet5's
  0.25 MB took 1.2-1.9 ms back to back and about 3 ms after a step on the development host
  (the ranks' threads, caches and wake-ups are the workers' own). ``distbench validate``
  uses it instead of the ring formula when the workers' threads fill every core.

Both run in spawned groups under a timeout (``primitives.run_group``); the step counts are
fixed up front from the profile's ``t_grad`` so no rank decides alone when to stop.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import median
from typing import Any

import torch
import torch.distributed as dist

from distbench.config import RunConfig
from distbench.measurement.timer import PhaseTimer
from distbench.profiling.primitives import run_group, run_in_group
from distbench.profiling.profiles import LoadedAllReduce
from distbench.strategies.common import Workload, build_workload, default_step, fetch_batch


@dataclass(frozen=True)
class StepCount:
    """Untimed and timed steps (pairs, for the machinery) of one measurement."""

    warmup: int
    timed: int

    @classmethod
    def lasting(cls, seconds: float, step: float, warmup: int, least: int, most: int) -> StepCount:
        """At least ``least`` timed steps, more until about ``seconds`` of them, at most
        ``most``: fast models are timed long enough for a millisecond to show."""
        wanted = int(seconds / step) if step > 0 else most
        return cls(warmup, max(least, min(most, wanted)))


def _timed_step(work: Workload) -> float:
    """Seconds of one ``default_step`` of ``work`` (its model plain or DDP-wrapped)."""
    timer = PhaseTimer()
    default_step(work, torch.device("cpu"), timer)
    return timer.end_step()[0]


def _machinery_child(
    index: int,
    store_path: str,
    cfg_dict: dict[str, Any],
    threads: int,
    count: StepCount,
    timeout: float,
    out: Any,
) -> None:
    run_in_group(
        out, index, 0, 1, timeout, threads, store_path, lambda: _machinery(cfg_dict, count)
    )


def _machinery(cfg_dict: dict[str, Any], count: StepCount) -> list[float]:
    """Paired plain and DDP-wrapped steps on a one-rank group, alternating which goes first."""
    from torch.nn.parallel import DistributedDataParallel

    cfg = RunConfig.from_dict(cfg_dict)
    plain = build_workload(cfg, torch.device("cpu"), cfg.batch_size, 0, 1)
    wrapped = build_workload(cfg, torch.device("cpu"), cfg.batch_size, 0, 1)
    wrapped = replace(wrapped, model=DistributedDataParallel(wrapped.model))
    differences = []
    for pair in range(count.warmup + count.timed):
        if pair % 2 == 0:
            base = _timed_step(plain)
            with_ddp = _timed_step(wrapped)
        else:
            with_ddp = _timed_step(wrapped)
            base = _timed_step(plain)
        if pair >= count.warmup:
            differences.append(with_ddp - base)
    return differences


def measure_ddp_overhead(cfg: RunConfig, threads: int, count: StepCount, timeout: float) -> float:
    """Seconds a one-rank DDP step takes beyond the same plain step (median of paired
    differences; may come out slightly negative for a large model, where it is noise)."""
    with tempfile.TemporaryDirectory(prefix="distbench-ddp-") as tmp:
        args = [(0, str(Path(tmp) / "store"), cfg.to_dict(), threads, count, timeout)]
        (differences,) = run_group(_machinery_child, args, timeout, "DDP machinery")
    return float(median(differences))


def _loaded_child(
    rank: int,
    world: int,
    store_path: str,
    cfg_dict: dict[str, Any],
    threads: int,
    grad_bytes: int,
    count: StepCount,
    timeout: float,
    out: Any,
) -> None:
    def steps() -> list[tuple[float, float]]:
        cfg = RunConfig.from_dict(cfg_dict)
        work = build_workload(cfg, torch.device("cpu"), cfg.batch_size, rank, world)
        flat = torch.ones(max(1, grad_bytes // 4), dtype=torch.float32)
        marks = []
        for step in range(count.warmup + count.timed):
            dist.barrier()
            x, y = fetch_batch(work, torch.device("cpu"))
            work.loss_fn(work.model(x), y).backward()
            backward_end = time.perf_counter()
            dist.all_reduce(flat)
            reduced = time.perf_counter()
            work.optimizer.step()
            work.optimizer.zero_grad(set_to_none=True)
            if step >= count.warmup:
                marks.append((backward_end, reduced))
        return marks

    run_in_group(out, rank, rank, world, timeout, threads, store_path, steps)


def after_last_backward(per_rank: list[list[tuple[float, float]]]) -> list[float]:
    """Per step: the last rank's end of all-reduce minus the last rank's end of backward
    (``perf_counter`` is one clock for every process of a host)."""
    steps = zip(*per_rank, strict=True)
    return [max(r[1] for r in step) - max(r[0] for r in step) for step in steps]


def measure_loaded_allreduce(
    cfg: RunConfig, processes: int, threads: int, grad_bytes: int, count: StepCount, timeout: float
) -> LoadedAllReduce:
    """The all-reduce of ``grad_bytes`` right after a training step, ``processes`` ranks of
    ``threads`` threads on this host (median over steps, see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="distbench-ddp-") as tmp:
        store = str(Path(tmp) / "store")
        args = [
            (rank, processes, store, cfg.to_dict(), threads, grad_bytes, count, timeout)
            for rank in range(processes)
        ]
        per_rank = run_group(
            _loaded_child,
            args,
            timeout,
            f"all-reduce after a step ({processes} x {threads} threads)",
        )
    waits = after_last_backward(per_rank)
    return LoadedAllReduce(
        processes=processes, threads=threads, seconds=float(median(waits)), repeats=len(waits)
    )
