"""Measurement primitives every calibration calls down into.

- spawned process groups under a deadline (:func:`run_group`) and the body of one child
  (:func:`run_in_group`: threads, a gloo group over a ``FileStore`` or ``env://``, the work,
  the final barrier, the report);
- point-to-point and collective timings (:func:`round_trip`, :func:`pingpong`,
  :func:`allreduce_time`) and the link sweeps built from them (:class:`LinkPlan`,
  :func:`link_measurements`);
- fits of ``t = a + bytes·b`` (:func:`fit_latency_bandwidth`, :func:`link_fit`) and the
  sweep sizes (:func:`sweep_sizes`, :func:`probe_bytes`).

The profile orchestrator (``calibrate.py``) and the focused measurements (``ddp_costs``,
``ps_transfer``, the two-host ``linkhost`` program, the pipeline's in-run link probe) all
use these; nothing here imports any of them.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import queue as queue_module
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from statistics import fmean, median
from typing import Any

import torch
import torch.distributed as dist

from distbench.errors import RunFailed, UserError
from distbench.harness.stores import bound_store
from distbench.netem.spec import NetworkSpec
from distbench.profiling.profiles import LinkFit

KIB = 1024
MIB = 1024 * KIB


# --- fitting (pure) ---------------------------------------------------------------------------


def fit_latency_bandwidth(sizes: Sequence[float], seconds: Sequence[float]) -> tuple[float, float]:
    """Least squares fit of ``t = a + b·bytes``, weighted by ``1/t²`` (relative residuals, so
    small messages set the latency ``a`` and large ones the slope ``b``). Returns ``(a, b)``
    with ``a >= 0`` and ``b > 0``: when noise makes the free fit give a negative intercept
    or slope, the line is refitted through the origin."""
    if len(sizes) != len(seconds) or len(sizes) < 2:
        raise UserError("a latency/bandwidth fit needs at least two (bytes, seconds) points")
    weights = [1.0 / (t * t) for t in seconds]
    sw = sum(weights)
    sx = sum(w * x for w, x in zip(weights, sizes, strict=True))
    sy = sum(w * y for w, y in zip(weights, seconds, strict=True))
    sxx = sum(w * x * x for w, x in zip(weights, sizes, strict=True))
    sxy = sum(w * x * y for w, x, y in zip(weights, sizes, seconds, strict=True))
    det = sw * sxx - sx * sx
    if det <= 0:
        raise UserError("a latency/bandwidth fit needs at least two different sizes")
    slope = (sw * sxy - sx * sy) / det
    intercept = (sy - slope * sx) / sw
    if intercept < 0 or slope <= 0:  # noise swamped the slope or the latency: through 0
        intercept, slope = 0.0, sxy / sxx
    return intercept, slope


def sweep_sizes(max_bytes: int, min_bytes: int = KIB) -> list[int]:
    """1 KiB, 4 KiB, ... up to ``max_bytes`` (powers of four, ``max_bytes`` included)."""
    sizes, size = [], min_bytes
    while size < max_bytes:
        sizes.append(size)
        size *= 4
    return [*sizes, max_bytes]


def probe_bytes(spec: NetworkSpec | None) -> int:
    """About 2 s of traffic at the slower direction's rate, 1-64 MiB (so that a token
    bucket's initial burst does not inflate the measured rate)."""
    rate = spec.rate_bit_s if spec is not None else None
    if rate is None:
        return 64 * MIB
    return int(min(64 * MIB, max(1 * MIB, rate / 8 * 2)))


def link_fit(kind: str, world: int, sizes: list[int], seconds: list[float]) -> LinkFit:
    """Fit a sweep; all-reduce times are converted to the ring model's alpha and beta."""
    a, b = fit_latency_bandwidth(sizes, seconds)
    if kind == "allreduce":
        steps = 2 * (world - 1)
        return LinkFit(kind, world, a / steps, steps / world / b, sizes, seconds)
    return LinkFit(kind, world, a, 1.0 / b, sizes, seconds)


# --- spawned process groups -------------------------------------------------------------------


def run_group(
    target: Callable[..., None], args: list[tuple[Any, ...]], timeout: float, what: str
) -> list[Any]:
    """Start one spawned process per args tuple; collect ``(index, result)`` from each.

    A child reports ``(index, "error", message)`` on failure. Overrunning ``timeout`` or a
    child dying without a report stops the whole group and raises ``RunFailed``."""
    ctx = mp.get_context("spawn")
    results: mp.Queue[Any] = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, results), daemon=True) for a in args]
    for proc in procs:
        proc.start()
    try:
        return _collect(procs, results, time.monotonic() + timeout, what)
    finally:
        _stop(procs)


def _collect(procs: list[Any], results: Any, deadline: float, what: str) -> list[Any]:
    collected: dict[int, Any] = {}
    while len(collected) < len(procs):
        if time.monotonic() > deadline:
            raise RunFailed(f"{what}: timed out; calibration processes stopped")
        try:
            index, status, value = results.get(timeout=0.5)
        except queue_module.Empty:
            dead = [
                p for i, p in enumerate(procs) if i not in collected and p.exitcode not in (None, 0)
            ]
            if dead:
                raise RunFailed(
                    f"{what}: a calibration process died (exit code {dead[0].exitcode})"
                ) from None
            continue
        if status == "error":
            raise RunFailed(f"{what}: {value}")
        collected[index] = value
    return [collected[i] for i in range(len(procs))]


def _stop(procs: list[Any]) -> None:
    for proc in procs:
        proc.join(timeout=5)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5)


def report(out: Any, index: int, work: Callable[[], Any]) -> None:
    """Run ``work`` in a :func:`run_group` child and put its result (or its error) on ``out``."""
    try:
        out.put((index, "ok", work()))
    except Exception as exc:
        out.put((index, "error", f"{type(exc).__name__}: {exc}"))


def join_group(rank: int, world: int, timeout: float, store_path: str | None = None) -> None:
    """Join a gloo group: over a ``FileStore`` at ``store_path`` (spawned children on one
    host), or by the torchrun environment (``env://``: two emulated hosts)."""
    store: dist.Store
    if store_path is not None:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # children on this machine
        store = dist.FileStore(store_path, world)
    else:
        store = _environment_store(rank, world, timeout)
    dist.init_process_group(
        "gloo", rank=rank, world_size=world, timeout=timedelta(seconds=timeout), store=store
    )


def _environment_store(rank: int, world: int, timeout: float) -> dist.Store:
    """The torchrun environment's store (``MASTER_ADDR``/``MASTER_PORT``). Rank 0 serves it
    on that address only, where ``env://`` would listen on every interface."""
    host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    if rank == 0:
        return bound_store(host, port, timeout)
    return dist.TCPStore(host, port, world, False, timedelta(seconds=timeout))


def leave_group() -> None:
    dist.barrier()  # gloo aborts at exit about half the time without it
    dist.destroy_process_group()


def run_in_group(
    out: Any,
    index: int,
    rank: int,
    world: int,
    timeout: float,
    threads: int,
    store_path: str | None,
    work: Callable[[], Any],
) -> None:
    """The body of one child of a measuring group: ``threads`` threads, join the group, do
    ``work``, leave the group, report the result."""

    def in_group() -> Any:
        torch.set_num_threads(threads)
        join_group(rank, world, timeout, store_path)
        result = work()
        leave_group()
        return result

    report(out, index, in_group)


# --- point-to-point and collective timings ------------------------------------------------------


def flat_buffer(nbytes: int, device: torch.device | None = None) -> torch.Tensor:
    return torch.zeros(max(1, nbytes // 4), dtype=torch.float32, device=device)


def round_trip(buffer: torch.Tensor, peer: int, initiator: bool) -> float:
    """Seconds of one send + receive of ``buffer`` with ``peer`` (the initiator sends
    first); on CUDA the clock is read after the device has finished."""
    device = buffer.device
    start = time.perf_counter()
    if initiator:
        dist.send(buffer, peer)
        dist.recv(buffer, peer)
    else:
        dist.recv(buffer, peer)
        dist.send(buffer, peer)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def pingpong(rank: int, nbytes: int, repeats: int) -> float:
    """Median one-way time of ``nbytes`` between ranks 0 and 1 (half a round trip), after
    two untimed round trips (connection set-up, buffers)."""
    buffer, peer, initiator = flat_buffer(nbytes), 1 - rank, rank == 0
    times = [round_trip(buffer, peer, initiator) / 2 for _ in range(repeats + 2)]
    return median(times[2:])


def allreduce_time(nbytes: int, repeats: int) -> float:
    """Median seconds of one all-reduce of ``nbytes`` over the default group, each after a
    barrier, after two untimed ones."""
    buf = torch.ones(max(1, nbytes // 4), dtype=torch.float32)
    times = []
    for rep in range(repeats + 2):
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(buf)
        if rep >= 2:
            times.append(time.perf_counter() - start)
    return median(times)


@dataclass(frozen=True)
class LinkPlan:
    """Sweep sizes; the weight size joins the p2p sweep (its point is ``t_comm``) and the
    gradient size the all-reduce sweep, so each fit includes the size that matters."""

    weight_bytes: int
    grad_bytes: int
    sizes: list[int]
    repeats: int
    timeout: float

    def p2p_sizes(self) -> list[int]:
        return sorted({*self.sizes, self.weight_bytes})

    def allreduce_sizes(self) -> list[int]:
        return sorted({*self.sizes, self.grad_bytes})


def repeats_for(size: int, repeats: int) -> int:
    """Fewer repeats past 1 MiB, where one transfer is long enough to time on its own."""
    return repeats if size <= MIB else max(3, repeats // 2)


#: The largest message whose send the link probe times against its delivery: past what a
#: socket's buffer takes, so the send returns while the kernel still holds a full buffer.
HELD_PROBE_BYTES = 8 * MIB


def held_on_connection(
    rank: int,
    nbytes: int,
    repeats: int,
    answer: float,
    group: Any = None,
    warm_seconds: float = 0.0,
) -> list[float]:
    """Bytes the kernel still held when each of ``repeats`` sends of ``nbytes`` to the
    peer returned, over ``group``'s connection (the default group's where None), on rank
    0's clock alone. Untimed sends of the same message come first: one, and as many more
    as take ``warm_seconds`` at the first one's pace, at most ``HELD_PROBE_MAX_WARM_SENDS``
    (rank 0 counts them and tells rank 1). The peer answers each delivery with 4 bytes
    whose one-way time ``answer`` is taken off; the send's lead on its delivery, at the
    rate the message itself crossed at, is what the buffer held. Rank 1 returns []."""
    buffer, reply = flat_buffer(nbytes), flat_buffer(4)

    def once() -> tuple[float, float]:
        """(seconds from the send to the delivery, bytes held when the send returned)."""
        dist.barrier(group=group)
        if rank == 1:
            dist.recv(buffer, 0, group=group)
            dist.send(reply, 0, group=group)
            return 0.0, 0.0
        start = time.perf_counter()
        dist.send(buffer, 1, group=group)
        returned = time.perf_counter()
        dist.recv(reply, 1, group=group)
        delivered = time.perf_counter() - answer
        crossing = delivered - start
        return crossing, nbytes * min(1.0, max(0.0, delivered - returned) / crossing)

    first, _ = once()
    count = torch.tensor([warming_sends(first, warm_seconds) if rank == 0 else 0])
    dist.broadcast(count, 0, group=group)
    for _ in range(int(count.item())):
        once()
    held = [once()[1] for _ in range(repeats)]
    return held if rank == 0 else []


#: What a send buffer holds grows with its connection's own traffic (Linux sizes a socket's
#: buffer as its congestion window grows, and never shrinks it) and differs between
#: connections of the same two hosts, in levels (``benchmarks/held_probe.py`` at 1 Gbit/s:
#: one fresh connection's median 0.98-1.64 MB of 2.9 MB over two runs of six probes; ones warmed
#: for two seconds, 1.12-2.15 MB each, and the mean of six of them 1.54-1.94 MB over five
#: probes). A run's connections carry the message every step, and a parameter server talks
#: to every worker over a connection of its own, so the probe warms several and averages.
HELD_PROBE_CONNECTIONS = 6
HELD_PROBE_WARM_SECONDS = 2.0
#: At most this many warming sends: on loopback or a fast link two seconds are thousands of
#: sends, and a profile takes the probe on every calibration (two seconds at 1 Gbit/s are
#: about 87 sends of 2.9 MB and 30 of 8 MiB, which the cap leaves alone).
HELD_PROBE_MAX_WARM_SENDS = 100


def warming_sends(first_seconds: float, warm_seconds: float) -> int:
    """How many untimed sends warm a connection for ``warm_seconds`` when the first took
    ``first_seconds``: at most ``HELD_PROBE_MAX_WARM_SENDS``, none where either is 0."""
    if first_seconds <= 0 or warm_seconds <= 0:
        return 0
    return min(math.ceil(warm_seconds / first_seconds), HELD_PROBE_MAX_WARM_SENDS)


def held_per_connection(
    rank: int,
    nbytes: int,
    repeats: int,
    connections: int = HELD_PROBE_CONNECTIONS,
    warm_seconds: float = HELD_PROBE_WARM_SECONDS,
) -> list[list[float]]:
    """``held_on_connection``'s sends on each of ``connections`` fresh two-rank groups'
    connections between ranks 0 and 1, each warmed for ``warm_seconds`` first: one list
    per connection on rank 0, empty lists on rank 1."""
    answer = pingpong(rank, 4, repeats)
    per_connection = []
    for _ in range(connections):
        group = dist.new_group([0, 1])
        per_connection.append(
            held_on_connection(rank, nbytes, repeats, answer, group, warm_seconds)
        )
        dist.barrier(group=group)  # gloo aborts a group torn down mid-message
        dist.destroy_process_group(group)
    return per_connection


def send_held(rank: int, nbytes: int, repeats: int) -> float:
    """Bytes the kernel held when a send of ``nbytes`` returned: the mean over the
    probe's warmed connections (``held_per_connection``) of each one's median over
    ``repeats`` sends. Rank 1 returns 0."""
    per_connection = held_per_connection(rank, nbytes, repeats)
    return fmean(median(held) for held in per_connection) if rank == 0 else 0.0


def link_measurements(rank: int, plan: LinkPlan) -> dict[str, list[float]]:
    """Both sweeps and the held-bytes probe on an initialised 2-rank gloo group (loopback
    or two emulated hosts): of the large message, and of a message of the weights' size
    where it is smaller (what the kernel holds depends on the message: 1.29 MB of 3 MB
    against 1.8-2.2 MB of 8 MB in ``benchmarks/send_lead.py``'s runs at 1 Gbit/s)."""
    p2p = [pingpong(rank, s, repeats_for(s, plan.repeats)) for s in plan.p2p_sizes()]
    allreduce = [allreduce_time(s, repeats_for(s, plan.repeats)) for s in plan.allreduce_sizes()]
    probe = min(HELD_PROBE_BYTES, max(plan.sizes))
    held = send_held(rank, probe, repeats_for(probe, plan.repeats))
    weights = plan.weight_bytes
    of_weights = held
    if weights < probe:
        of_weights = send_held(rank, weights, repeats_for(weights, plan.repeats))
    return {"p2p": p2p, "allreduce": allreduce, "send_held": [held, of_weights]}
