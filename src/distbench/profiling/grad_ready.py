"""When each parameter's gradient becomes ready during backward (for emulated compute).

One spawned process trains the workload at the one-worker thread count; over ``repeats``
timed backward passes a post-accumulate-grad hook on every parameter notes the clock. A
parameter's figure is the median over passes of ``(ready - start) / (end - start)``:
the fraction of backward elapsed when its gradient existed. ``EmulatedCompute`` releases
the gradients at those fractions of a drawn backward time, so DDP's buckets launch when
the real backward would launch them.
"""

from __future__ import annotations

import time
from dataclasses import replace
from statistics import median
from typing import Any

import torch

from distbench.config import RunConfig
from distbench.errors import UserError
from distbench.profiling.primitives import report, run_group
from distbench.profiling.profiles import Profile
from distbench.strategies.common import (
    build_workload,
    fetch_batch,
    parameter_bytes,
    server_tensor_bytes,
)


def ready_fractions(
    starts: list[float], ends: list[float], ready: list[list[float]]
) -> list[float]:
    """Per parameter, the median over passes of its ready time as a fraction of the pass."""
    fractions = []
    for times in ready:
        per_pass = [
            min(1.0, max(0.0, (t - s) / (e - s))) if e > s else 1.0
            for t, s, e in zip(times, starts, ends, strict=True)
        ]
        fractions.append(median(per_pass))
    return fractions


def _measure(cfg_dict: dict[str, Any], threads: int, warmup: int, repeats: int) -> list[float]:
    torch.set_num_threads(threads)
    cfg = RunConfig.from_dict(cfg_dict)
    device = torch.device("cpu")
    work = build_workload(cfg, device, cfg.batch_size, 0, 1)
    params = [p for p in work.model.parameters() if p.requires_grad]
    stamps: dict[int, float] = {}
    for index, param in enumerate(params):
        param.register_post_accumulate_grad_hook(
            lambda _p, i=index: stamps.__setitem__(i, time.perf_counter())
        )
    starts: list[float] = []
    ends: list[float] = []
    ready: list[list[float]] = [[] for _ in params]
    for rep in range(warmup + repeats):
        x, y = fetch_batch(work, device)
        loss = work.loss_fn(work.model(x), y)
        stamps.clear()
        start = time.perf_counter()
        loss.backward()
        end = time.perf_counter()
        work.optimizer.step()
        work.optimizer.zero_grad(set_to_none=True)
        if rep >= warmup:
            starts.append(start)
            ends.append(end)
            for index in range(len(params)):
                ready[index].append(stamps.get(index, end))
    return ready_fractions(starts, ends, ready)


def _child(cfg_dict: dict[str, Any], threads: int, warmup: int, repeats: int, out: Any) -> None:
    report(out, 0, lambda: _measure(cfg_dict, threads, warmup, repeats))


def measure_grad_ready(
    cfg: RunConfig, threads: int, warmup: int, repeats: int, timeout: float
) -> list[float]:
    """``grad_ready`` of ``cfg``'s model (see the module docstring)."""
    args = [(cfg.to_dict(), threads, warmup, repeats)]
    return list(run_group(_child, args, timeout, "gradient order in backward")[0])


def with_model_sizes(profile: Profile, cfg: RunConfig) -> Profile:
    """``profile`` with the sizes taken from the model's definition (counted on the meta
    device: facts of the model, not measurements) that a profile taken before they were
    stored lacks: each gradient's bytes (``param_bytes``, where it has ``grad_ready`` and
    the counts agree) and each tensor a parameter server holds (``server_tensor_bytes``).
    Unchanged where the model cannot be built: the predictions then fill buckets uniformly
    and split a sharded server equally, as they did before the sizes were stored."""
    filled = profile
    try:
        if profile.grad_ready and not profile.param_bytes:
            sizes = parameter_bytes(cfg)
            if len(sizes) == len(profile.grad_ready):
                filled = replace(filled, param_bytes=sizes)
        if not profile.server_tensor_bytes:
            filled = replace(filled, server_tensor_bytes=server_tensor_bytes(cfg))
    except UserError:  # the model cannot be built here (a user file gone): predict without
        return profile
    return filled
