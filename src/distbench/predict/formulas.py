"""Analytic training-time formulas: one small pure function per formula.

Where to start: the parameter-server formulas reproduce chapter 4 of the 004 thesis
(equation numbers in each docstring); ``ring_allreduce_time`` and ``ddp_step_time``
model all-reduce data parallelism; ``gpipe_batch_time`` and ``bubble_fraction`` model
pipelines. ``docs/model.md`` states every assumption and blind spot.

Symbols: ``t_grad`` is one worker's gradient time for one batch, ``t_comm`` the time to
move the full weights once between a worker and the server, ``n`` the number of
workers, ``d`` the number of batches to train. All times are seconds. No torch here:
this module must import in milliseconds and stay testable by hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from distbench.errors import UserError

Rounding = Literal["exact", "ceil"]
PipelineSchedule = Literal["gpipe", "1f1b"]

#: PyTorch DDP's default gradient bucket size (``bucket_cap_mb=25``).
DDP_DEFAULT_BUCKET_BYTES = 25 * 2**20
#: DDP's first bucket is small (``torch.distributed``'s default first-bucket cap), so the
#: all-reduce starts as soon as the last layers' gradients exist.
DDP_FIRST_BUCKET_BYTES = 2**20
#: Backward share of a training step when no measured backward time is given
#: (backward costs about twice the forward pass).
DEFAULT_BACKWARD_SHARE = 2.0 / 3.0


# --- validation ---------------------------------------------------------------------


def check_positive(name: str, value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"{name} must be a positive number of seconds, got {value}")
    return value


def check_non_negative(name: str, value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise UserError(f"{name} must be zero or positive, got {value}")
    return value


def check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{name} must be an integer >= 1, got {value}")
    return value


def check_fraction(name: str, value: float) -> float:
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise UserError(f"{name} must lie in [0, 1], got {value}")
    return value


def _check_ps(t_grad: float, t_comm: float, n: int) -> None:
    check_positive("t_grad", t_grad)
    check_non_negative("t_comm", t_comm)
    check_count("workers", n)


# --- synchronous parameter server, time per iteration (thesis 4.1) -------------------


def sync_central_best(t_grad: float, t_comm: float, n: int) -> float:
    """Eq. 4.4-4.6: transfers serialized one worker at a time, overlapped with compute."""
    _check_ps(t_grad, t_comm, n)
    return (n + 1) * t_comm + t_grad


def sync_central_worst(t_grad: float, t_comm: float, n: int) -> float:
    """Eq. 4.7-4.9: all N transfers at once share the server link (N times slower)."""
    _check_ps(t_grad, t_comm, n)
    return 2 * n * t_comm + t_grad


def sync_central_estimate(t_grad: float, t_comm: float, n: int) -> float:
    """Eq. 4.11: the thesis' point estimate is the mean of best and worst case."""
    return (sync_central_best(t_grad, t_comm, n) + sync_central_worst(t_grad, t_comm, n)) / 2


def assign_greedy(sizes: Sequence[int], units: int) -> list[int]:
    """Unit index (0-based) for every tensor size, in the given order: each tensor to the
    unit with the smallest total assigned so far, ties to the first (the thesis' algorithm
    3.7, how a sharded server splits the weights)."""
    if units < 1:
        raise ValueError(f"need at least one unit, got {units}")
    load = [0] * units
    owners: list[int] = []
    for size in sizes:
        unit = min(range(units), key=lambda u: (load[u], u))
        load[unit] += size
        owners.append(unit)
    return owners


def shard_loads(sizes: Sequence[int], units: int) -> list[int]:
    """What each of ``units`` sharded units holds when ``assign_greedy`` splits ``sizes``."""
    load = [0] * units
    for size, unit in zip(sizes, assign_greedy(sizes, units), strict=True):
        load[unit] += size
    return load


def sync_sharded_links(
    t_grad: float, shards: Sequence[float], rate: float, t_overhead: float
) -> float:
    """One synchronous iteration of a sharded server when every host has its own
    full-duplex link: in the pull phase each unit sends its shard to the N − 1 other
    workers while each worker receives the N − 1 shards it does not hold, and the push
    phase is the same the other way; each phase lasts as long as its busiest link
    direction, plus the protocol's cost per transfer. With equal shards this is eq. 4.12;
    with the greedy split of real tensors the largest shard sets the pace."""
    check_positive("t_grad", t_grad)
    check_positive("rate", rate)
    n, total = len(shards), sum(shards)
    busiest = max(max((n - 1) * s for s in shards), max(total - s for s in shards))
    return t_grad + 2 * (busiest / rate + t_overhead)


def async_sharded_links(
    t_grad: float, shards: Sequence[float], rate: float, t_overhead: float
) -> float:
    """One asynchronous step of a sharded server when every host has its own full-duplex
    link: in one cycle of every worker, host j's uplink carries its own push of the shards
    it does not hold and its unit's replies to the N − 1 other workers' pulls
    (``total − s_j + (N − 1)·s_j`` bytes; its downlink the same the other way), and the
    busiest link sets the pace. With equal shards this is ``t_grad + 2(N−1)/N · t_comm``;
    with the greedy split of real tensors the largest shard sets it."""
    check_positive("t_grad", t_grad)
    check_positive("rate", rate)
    n, total = len(shards), sum(shards)
    busiest = max(total - s + (n - 1) * s for s in shards)
    return t_grad + busiest / rate + 2 * (n - 1) / n * t_overhead


def sync_distributed(t_grad: float, t_comm: float, n: int) -> float:
    """Eq. 4.12: sharded server; each unit sends and receives (N-1)/N of the weights."""
    _check_ps(t_grad, t_comm, n)
    return 2 * t_comm * (n - 1) / n + t_grad


# --- iterations ----------------------------------------------------------------------


def sync_join_iterations(d: int, n: int, rounding: Rounding = "exact") -> float:
    """Iterations of sync-join: each iteration trains N batches, so I = D/N.

    The thesis assumes N divides D. ``exact`` (the default) keeps D/N fractional, as the
    async formulas do, so the curve over N is smooth and reproduces the thesis; ``ceil``
    counts whole iterations (the last one trains fewer than N useful batches).
    """
    check_count("batches", d)
    check_count("workers", n)
    if rounding == "ceil":
        return float(math.ceil(d / n))
    if rounding != "exact":
        raise UserError(f"rounding must be 'exact' or 'ceil', got {rounding!r}")
    return d / n


def sync_split_iterations(d: int) -> float:
    """Iterations of sync-split: each iteration trains one batch split N ways, so I = D."""
    return float(check_count("batches", d))


def sync_training_time(iterations: float, t_iter: float) -> float:
    """Eq. 4.2: t_train = I * t_iter."""
    check_non_negative("iterations", iterations)
    return iterations * check_positive("t_iter", t_iter)


# --- asynchronous parameter server, whole training (thesis 4.2) ----------------------


def async_central_best(t_grad: float, t_comm: float, n: int, d: int) -> float:
    """Eq. 4.13-4.15: max of the server's (D+1)t_comm + t_grad and the last worker's time."""
    _check_ps(t_grad, t_comm, n)
    check_count("batches", d)
    server = (d + 1) * t_comm + t_grad
    last_worker = (n - 1) * t_comm + (d / n) * (2 * t_comm + t_grad)
    return max(server, last_worker)


def async_central_worst(t_grad: float, t_comm: float, n: int, d: int) -> float:
    """Eq. 4.16-4.18: every transfer shares the link with all N workers."""
    _check_ps(t_grad, t_comm, n)
    check_count("batches", d)
    return (d / n) * (2 * n * t_comm + t_grad)


def async_central_estimate(t_grad: float, t_comm: float, n: int, d: int) -> float:
    """Eq. 4.20: mean of best and worst case."""
    best = async_central_best(t_grad, t_comm, n, d)
    return (best + async_central_worst(t_grad, t_comm, n, d)) / 2


def async_distributed(t_grad: float, t_comm: float, n: int, d: int) -> float:
    """Eq. 4.21: sharded server, each worker trains D/N batches."""
    _check_ps(t_grad, t_comm, n)
    check_count("batches", d)
    return (d / n) * (2 * t_comm * (n - 1) / n + t_grad)


# --- speedup (thesis 4.3) -------------------------------------------------------------


def speedup(t_grad: float, d: int, t_parallel: float) -> float:
    """Eq. 4.23: S = D * t_grad / t_parallel, with t_grad the full-batch gradient time."""
    check_positive("t_grad", t_grad)
    check_count("batches", d)
    return d * t_grad / check_positive("t_parallel", t_parallel)


def split_grad_fallback(t_grad: float, n: int) -> float:
    """Gradient time of a 1/N batch when none was measured: t_grad / N (optimistic)."""
    return check_positive("t_grad", t_grad) / check_count("workers", n)


# --- semaphore (thesis 7.2) -------------------------------------------------------------


def semaphore_best(t_comm: float, n: int) -> float:
    """Eq. 7.1: the semaphore queue is empty, the transfer runs at full speed."""
    check_count("workers", n)
    return check_non_negative("t_comm", t_comm)


def semaphore_worst(t_comm: float, n: int) -> float:
    """Eq. 7.2: N-1 workers queue ahead, so t_sem = N * t_comm = t_par."""
    check_non_negative("t_comm", t_comm)
    return check_count("workers", n) * t_comm


# --- all-reduce data parallelism ------------------------------------------------------


def ring_allreduce_time(n: int, nbytes: float, alpha: float, beta: float) -> float:
    """Ring all-reduce (reduce-scatter + all-gather): 2(N-1)·α + 2(N-1)/N · bytes/β.

    ``alpha`` is the per-message latency in seconds, ``beta`` the link bandwidth in
    bytes per second (Patarasuk & Yuan 2009; Thakur et al. 2005).
    """
    check_count("workers", n)
    check_non_negative("grad_bytes", nbytes)
    check_non_negative("alpha", alpha)
    check_positive("beta", beta)
    return 2 * (n - 1) * alpha + 2 * (n - 1) / n * nbytes / beta


def ring_allreduce_bandwidth_time(n: int, t_comm: float) -> float:
    """Ring all-reduce from a measured full-weight transfer time (bytes/β = t_comm, α = 0)."""
    check_count("workers", n)
    return 2 * (n - 1) / n * check_non_negative("t_comm", t_comm)


def ddp_default_overlap(grad_bytes: float, bucket_bytes: float = DDP_DEFAULT_BUCKET_BYTES) -> float:
    """Share of backward that can hide all-reduce: what runs after the first bucket fills.

    Gradients are assumed to appear uniformly in bytes over the backward pass, so the
    first bucket is ready after ``bucket_bytes / grad_bytes`` of it.
    """
    check_non_negative("grad_bytes", grad_bytes)
    check_positive("bucket_bytes", bucket_bytes)
    if grad_bytes == 0:
        return 0.0
    return 1.0 - min(1.0, bucket_bytes / grad_bytes)


def ddp_buckets(
    ready: Sequence[float],
    sizes: Sequence[float],
    bucket_bytes: float = DDP_DEFAULT_BUCKET_BYTES,
    first_bytes: float = DDP_FIRST_BUCKET_BYTES,
) -> list[tuple[float, float]]:
    """DDP's buckets in the order they are reduced, each as (the fraction of backward
    elapsed when its last gradient is ready, its bytes).

    Gradients are packed in the order backward readies them (``ready[i]``: the fraction of
    backward elapsed when gradient ``i`` of ``sizes[i]`` bytes exists), as DDP rebuilds its
    buckets after the first step; a bucket closes once it holds its limit — ``first_bytes``
    for the first, ``bucket_bytes`` after — so one large gradient may exceed it."""
    if len(ready) != len(sizes):
        raise UserError(f"{len(ready)} ready fractions for {len(sizes)} gradients")
    buckets: list[tuple[float, float]] = []
    filled, latest, limit = 0.0, 0.0, first_bytes
    for i in sorted(range(len(sizes)), key=lambda i: ready[i]):
        check_fraction(f"ready[{i}]", ready[i])
        check_non_negative(f"sizes[{i}]", sizes[i])
        filled, latest = filled + sizes[i], max(latest, ready[i])
        if filled >= limit:
            buckets.append((latest, filled))
            filled, latest, limit = 0.0, 0.0, bucket_bytes
    if filled > 0:
        buckets.append((latest, filled))
    return buckets


def ddp_exposed_allreduce(
    buckets: Sequence[tuple[float, float]],
    forward: float,
    backward: float,
    n: int,
    alpha: float,
    beta: float,
) -> float:
    """Seconds the ring all-reduce of ``buckets`` (``ddp_buckets``) runs past the end of
    backward: each bucket is reduced once it is ready and the ring has finished the one
    before it."""
    ring_free = 0.0
    for fraction, nbytes in buckets:
        ready = forward + backward * fraction
        ring_free = max(ring_free, ready) + ring_allreduce_time(n, nbytes, alpha, beta)
    return max(0.0, ring_free - (forward + backward))


def ddp_step_time(
    t_grad: float, t_allreduce: float, t_backward: float | None = None, overlap: float = 1.0
) -> float:
    """DDP step: t_grad + max(0, t_allreduce - overlap · t_backward).

    ``t_backward`` defaults to two thirds of ``t_grad``; ``overlap`` is the fraction of the
    backward pass that bucketed all-reduce runs behind.
    """
    check_positive("t_grad", t_grad)
    check_non_negative("t_allreduce", t_allreduce)
    check_fraction("overlap", overlap)
    backward = DEFAULT_BACKWARD_SHARE * t_grad if t_backward is None else t_backward
    check_non_negative("t_backward", backward)
    if backward > t_grad:
        raise UserError(f"t_backward ({backward}) cannot exceed t_grad ({t_grad})")
    return t_grad + max(0.0, t_allreduce - overlap * backward)


# --- pipeline parallelism -------------------------------------------------------------


def _check_stages(stage_times: Sequence[float]) -> None:
    if not stage_times:
        raise UserError("stage_times must name at least one stage")
    for i, value in enumerate(stage_times):
        check_positive(f"stage_times[{i}]", value)


def gpipe_batch_time(stage_times: Sequence[float], microbatches: int) -> float:
    """GPipe time for one batch, with ``stage_times`` the (t_f + t_b) per microbatch of each
    stage: the first microbatch through every stage and back, the other M - 1 behind it at
    the slowest stage's pace, ``(M - 1) · max + Σ stages``; ``(M + S - 1) · t`` for S equal
    stages of t (the other stages add their own time to fill and drain, not the slowest's)."""
    _check_stages(stage_times)
    m = check_count("microbatches", microbatches)
    return (m - 1) * max(stage_times) + sum(stage_times)


def one_f_one_b_batch_time(stage_times: Sequence[float], microbatches: int) -> float:
    """1F1B (PipeDream-flush): GPipe's time with equal stages; with unequal ones at most
    that (interleaving backwards lets it do better; the simulator runs the schedule)."""
    return gpipe_batch_time(stage_times, microbatches)


def bubble_fraction(stages: int, microbatches: int) -> float:
    """Idle share of a pipeline flush: (S - 1) / (M + S - 1); equal for GPipe and 1F1B."""
    s = check_count("stages", stages)
    m = check_count("microbatches", microbatches)
    return (s - 1) / (m + s - 1)


def pipeline_activations_in_flight(
    schedule: PipelineSchedule, stages: int, microbatches: int, stage: int = 0
) -> int:
    """Microbatches whose activations a stage holds at peak.

    GPipe keeps all M until the backward pass starts; 1F1B starts backward as soon as the
    pipeline is full, so stage ``stage`` (0-based) keeps at most min(M, S - stage).
    """
    s = check_count("stages", stages)
    m = check_count("microbatches", microbatches)
    if not 0 <= stage < s:
        raise UserError(f"stage must lie in [0, {s - 1}], got {stage}")
    if schedule == "gpipe":
        return m
    if schedule == "1f1b":
        return min(m, s - stage)
    raise UserError(f"schedule must be 'gpipe' or '1f1b', got {schedule!r}")


def balanced_stage_time(t_grad: float, stages: int, microbatches: int) -> float:
    """Per-microbatch stage time when t_grad splits evenly over S stages and M microbatches."""
    check_positive("t_grad", t_grad)
    return t_grad / (check_count("stages", stages) * check_count("microbatches", microbatches))


def expected_max(values: list[float], n: int) -> float:
    """The expected maximum of ``n`` independent draws from the empirical distribution of
    ``values``: ``sum_i x_(i) [(i/m)^n - ((i-1)/m)^n]`` over the sorted values. A
    synchronous step of ``n`` workers waits for the slowest of their ``n`` step times."""
    ordered = sorted(values)
    m = len(ordered)
    if m == 0:
        raise ValueError("expected_max of no values")
    return sum(x * ((i / m) ** n - ((i - 1) / m) ** n) for i, x in enumerate(ordered, start=1))


# --- parameter server behind a link per host (emulated networks) ---------------------


def sync_central_links(t_grad: float, t_shared: float, t_overhead: float) -> float:
    """One synchronous iteration when every host has its own full-duplex link: after the
    barrier every worker pulls at once and pushes within one compute time of the others,
    so the server's link carries all N pulls, then all N pushes: ``t_shared`` each (N
    transfers' bytes at the link's sustained rate), plus the protocol's cost per transfer
    (the thesis' worst case, eq. 4.7, with the shared link's own time)."""
    check_positive("t_grad", t_grad)
    return t_grad + 2 * t_shared + 2 * t_overhead


def async_central_links(t_grad: float, t_link: float, t_overhead: float, n: int) -> float:
    """One asynchronous worker step when every host has its own full-duplex link: the
    cycle time of a closed network of ``n`` workers, each computing (``t_grad`` plus the
    protocol's ``t_overhead`` per transfer, no queueing) then pulling through the server's
    outgoing link and pushing through its incoming one (``t_link`` each alone, shared
    fairly by the transfers in flight). Exact mean value analysis (``closed_cycle_time``):
    one worker takes its own cycle ``t_grad + 2 t_link``, many the server link's
    ``n t_link``, and between the two bounds — where they meet, the bound is furthest off —
    the workers' transfers overlap by chance and queue."""
    check_positive("t_grad", t_grad)
    return closed_cycle_time(n, t_grad + 2 * t_overhead, [t_link, t_link])


def closed_cycle_time(n: int, think: float, demands: Sequence[float]) -> float:
    """Mean cycle time of ``n`` customers in a closed queueing network of one delay station
    (``think`` seconds, no queue) and processor-sharing stations of the given service
    ``demands``, by exact mean value analysis (Reiser and Lavenberg): with k customers a
    station's residence time is its demand times one plus its mean queue at k − 1."""
    check_count("customers", n)
    check_non_negative("think", think)
    queues = [0.0] * len(demands)
    cycle = think
    for k in range(1, n + 1):
        residence = [d * (1 + q) for d, q in zip(demands, queues, strict=True)]
        cycle = think + sum(residence)
        queues = [(k / cycle) * r for r in residence]
    return cycle
