"""One weight transfer through distbench's parameter-server protocol, without compute.

The 004 formulas take ``t_comm``, the time to move the weights once between worker and
server. The raw gloo ping-pong of ``calibrate.measure_links`` is its bandwidth part; a real
parameter-server transfer also pays the protocol: request and reply headers, the serving
thread waking up, the bookkeeping around each message. For a large model that is noise;
for lenet5 it is most of the transfer. This module measures it with the real transport
(``strategies.ps``: ``Client`` on rank 0, a ``ShardServer`` with its serving thread on rank
1, one worker, synchronous): the worker pulls, keeps its core busy for the model's
gradient time (a spin, not a sleep: the server's side then idles as long as in a real step,
and on a virtual machine waking an idle core is part of what a transfer costs), and pushes;
half the median pull + push (the server's update excluded: it is the model's ``update``
term) is one transfer through the protocol, and the same two processes then time a raw
ping-pong of the same bytes. ``ps_overhead`` = protocol transfer − raw transfer (at least
0); ``distbench validate`` predicts parameter-server runs with ``t_comm + ps_overhead``.

Measured on loopback even when the profile's links cross an emulated network: the
protocol's cost is CPU time, not link time.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

import torch

from distbench.config import RunConfig
from distbench.measurement.timer import PhaseTimer
from distbench.profiling.primitives import pingpong, run_group, run_in_group

SERVER_RANK = 1
#: Longest stand-in for compute between pull and push; past it the protocol's cost is
#: noise beside the step, and the calibration stays short (20 steps: at most 2 s).
MAX_GAP = 0.1


def _serve(cfg: RunConfig) -> dict[str, Any]:
    from distbench.strategies.common import build_module
    from distbench.strategies.ps.server import ShardServer, start_serving
    from distbench.strategies.ps.sharding import build_layout
    from distbench.strategies.ps.strategy import initial_slice

    model, _ = build_module(cfg, torch.device("cpu"))
    layout = build_layout(model, [SERVER_RANK])
    entries = layout.entries_of(SERVER_RANK)
    server = ShardServer(
        cfg,
        layout.region(SERVER_RANK),
        entries,
        initial_slice(model, entries),
        [0],
        synchronous=True,
    )
    for thread in start_serving(server, [0]):
        thread.join()
    if server.failure is not None:
        raise server.failure
    return {}


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _transfer(cfg: RunConfig, warmup: int, repeats: int, gap: float) -> dict[str, Any]:
    from distbench.strategies.common import build_module
    from distbench.strategies.ps.client import Client, Replica
    from distbench.strategies.ps.sharding import build_layout

    model, _ = build_module(cfg, torch.device("cpu"))
    client = Client(
        0,
        Replica(model, build_layout(model, [SERVER_RANK]), torch.device("cpu")),
        None,
        semaphore=False,
    )
    exchanges = []
    for step in range(warmup + repeats):
        timer = PhaseTimer()
        timer.start_step()
        client.pull(timer, step, step)
        timer.mark("pull")
        _spin(gap)  # stands in for forward + backward
        timer.mark("compute")
        client.push(timer, step)
        _, phases = timer.end_step()
        if step >= warmup:  # the server's update moved out of the pull's wait stays out
            exchanges.append(sum(v for k, v in phases.items() if k not in ("update", "compute")))
    client.final()
    return {"exchange": exchanges}


def _child(
    rank: int,
    store_path: str,
    cfg_dict: dict[str, Any],
    warmup: int,
    repeats: int,
    gap: float,
    timeout: float,
    out: Any,
) -> None:
    from distbench.strategies.common import state_sizes

    def measure() -> dict[str, Any]:
        cfg = RunConfig.from_dict(cfg_dict)
        result = _serve(cfg) if rank == SERVER_RANK else _transfer(cfg, warmup, repeats, gap)
        result["raw"] = pingpong(rank, state_sizes(cfg)[0], repeats)
        return result

    run_in_group(out, rank, rank, 2, timeout, 1, store_path, measure)


def measure_ps_transfer(
    cfg: RunConfig, repeats: int, timeout: float, gap: float, warmup: int = 3
) -> float:
    """``ps_overhead`` of ``cfg.model`` on this host's loopback: one weight transfer through
    the parameter-server protocol (half the median pull + push of a step without compute)
    minus a raw gloo transfer of the same bytes between the same processes; at least 20
    timed steps, so a millisecond-sized transfer has a stable median. ``gap``: seconds of
    busy "compute" between pull and push (capped at ``MAX_GAP``)."""
    ps_cfg = RunConfig(
        model=cfg.model,
        dataset=cfg.dataset,
        data_dir=cfg.data_dir,
        batch_size=cfg.batch_size,
        input_size=cfg.input_size,
        num_classes=cfg.num_classes,
        seed=cfg.seed,
        device="cpu",
        strategy="ps-sync-join",
        workers=1,
        servers="central",
    )
    steps = max(20, repeats)
    with tempfile.TemporaryDirectory(prefix="distbench-ps-") as tmp:
        store = str(Path(tmp) / "store")
        args = [
            (rank, store, ps_cfg.to_dict(), warmup, steps, min(gap, MAX_GAP), timeout)
            for rank in (0, 1)
        ]
        results = run_group(_child, args, timeout, "parameter-server transfer")
    return max(0.0, median(results[0]["exchange"]) / 2 - results[0]["raw"])
