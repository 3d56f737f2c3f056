"""Turn per-rank records into one result.

Synchronous strategies: every worker does one step per iteration, so over a run each
worker's mean step equals the iteration period. Where a step's boundary falls inside the
iteration differs between workers (a parameter-server worker's step runs from its own pull
to its own push), so the slowest worker's step of iteration ``i`` overstates the period by
the jitter of those boundaries, more with more workers. The global step time of step ``i``
is the *mean* over workers of their step ``i`` — it telescopes to the period, and needs no
clock shared between hosts; for all-reduce, whose steps end together, it equals the
slowest. The breakdown is that of the governing rank (the worker with the largest mean
step time). Asynchronous strategies: each worker
progresses on its own, so throughput is the sum of the workers' own throughputs, each its
measured samples over its own elapsed time (``async_throughput``); a worker lost mid-run
counts at the rate it kept while it ran, for the share of the run it was alive. The
interval beside it is step jitter: the spread of the per-step sums over the workers.
In all-reduce steps the wait for the slowest rank is separated from the transfer and the
slowest rank is named (``measurement/stragglers.py``). Warm-up steps are excluded
everywhere. The breakdown is a per-phase *mean* over measured steps, so its phases add up
to the mean step time; the headline step time is the median.
"""

from __future__ import annotations

from statistics import fmean
from typing import Any

from distbench.errors import RunFailed
from distbench.measurement.records import RankRecords
from distbench.measurement.stats import summarize
from distbench.measurement.stragglers import separate_wait, separates_wait, slowest_rank
from distbench.measurement.timer import PHASES
from distbench.store.result import RunMetrics


def mean_phases(steps: list[dict[str, Any]]) -> dict[str, float]:
    names = {name for step in steps for name in step["phases"]}
    ordered = [p for p in PHASES if p in names] + sorted(names - set(PHASES))
    return {name: fmean(step["phases"].get(name, 0.0) for step in steps) for name in ordered}


def _worker_records(records: dict[int, RankRecords]) -> list[RankRecords]:
    workers = [r for r in records.values() if r.role == "worker" and r.measured_steps()]
    if not workers:
        raise RunFailed("no worker reported a measured step")
    return workers


def sync_series(workers: list[RankRecords]) -> tuple[list[float], list[float]]:
    """Per measured step every worker measured: (the workers' mean step time, samples of all
    workers). The mean, not the slowest: see the module's docstring."""
    by_step: dict[int, list[dict[str, Any]]] = {}
    for worker in workers:
        for step in worker.measured_steps():
            by_step.setdefault(step["step"], []).append(step)
    complete = [steps for _, steps in sorted(by_step.items()) if len(steps) == len(workers)]
    times = [fmean(s["step_time"] for s in steps) for steps in complete]
    samples = [float(sum(s["samples"] for s in steps)) for steps in complete]
    return times, samples


def async_series(workers: list[RankRecords]) -> tuple[list[float], list[float]]:
    """Every worker's measured steps pooled: (its step time, its samples)."""
    times: list[float] = []
    samples: list[float] = []
    for worker in workers:
        for step in worker.measured_steps():
            times.append(step["step_time"])
            samples.append(float(step["samples"]))
    return times, samples


def elapsed(worker: RankRecords) -> float:
    """Seconds from the start of a worker's first measured step to the end of its last
    (wall clock), at least the sum of its step times."""
    steps = worker.measured_steps()
    span = steps[-1]["t"] + steps[-1]["step_time"] - steps[0]["t"]
    return float(max(span, sum(s["step_time"] for s in steps)))


def is_lost(worker: RankRecords) -> bool:
    return bool(((worker.summary or {}).get("extra") or {}).get("lost"))


def async_throughput(workers: list[RankRecords]) -> float:
    """Samples per second of all workers together: the sum of each worker's measured samples
    over its own elapsed time. A lost worker's rate is weighted by the share of the others'
    longest elapsed time it was alive (it did not work after it died)."""
    spans = {w.rank: elapsed(w) for w in workers}
    kept = [spans[w.rank] for w in workers if not is_lost(w)]
    full = max(kept) if kept else max(spans.values())
    total = 0.0
    for worker in workers:
        span = spans[worker.rank]
        if span <= 0:
            continue
        rate = sum(s["samples"] for s in worker.measured_steps()) / span
        total += rate * (min(1.0, span / full) if is_lost(worker) else 1.0)
    return total


def async_step_rates(workers: list[RankRecords]) -> list[float]:
    """Per step index every live worker measured: the sum of the workers' samples per second
    in that step (what the interval of an asynchronous run's throughput is taken over)."""
    live = [w for w in workers if not is_lost(w)] or workers
    by_step: dict[int, list[dict[str, Any]]] = {}
    for worker in live:
        for step in worker.measured_steps():
            by_step.setdefault(step["step"], []).append(step)
    return [
        sum(s["samples"] / s["step_time"] for s in steps)
        for _, steps in sorted(by_step.items())
        if len(steps) == len(live) and all(s["step_time"] > 0 for s in steps)
    ]


def aggregate_run(records: dict[int, RankRecords], synchronous: bool) -> RunMetrics:
    """Metrics of one finished run."""
    workers = _worker_records(records)
    if synchronous and separates_wait(workers):
        separate_wait(workers)  # waiting for the slowest rank is not transfer time
    times, samples = (sync_series if synchronous else async_series)(workers)
    if not times:
        raise RunFailed("workers reported no common measured step")
    step = summarize(times)
    if synchronous:
        throughput = summarize([n / t for n, t in zip(samples, times, strict=True) if t > 0])
        median, low, high = throughput.median, throughput.ci95_low, throughput.ci95_high
    else:
        median = async_throughput(workers)
        rates = async_step_rates(workers) or [median]
        jitter = summarize(rates)
        # the interval is of the per-step sums; it always contains the headline figure
        low, high = min(jitter.ci95_low, median), max(jitter.ci95_high, median)
    governing = max(workers, key=lambda w: fmean(s["step_time"] for s in w.measured_steps()))
    measured = governing.measured_steps()
    comm = [s["comm_total"] for s in measured if "comm_total" in s]
    memory = _memory(records)
    return RunMetrics(
        throughput_median=median,
        step_jitter_low=low,
        step_jitter_high=high,
        step_time_median=step.median,
        step_time_p90=step.p90,
        step_time_mean=fmean(s["step_time"] for s in measured),
        breakdown=mean_phases(measured),
        comm_total=fmean(comm) if comm else None,
        governing_rank=governing.rank,
        final_loss=_final_loss(workers),
        peak_rss_bytes=memory["peak_rss_bytes"],
        allocated_peak_bytes=memory["allocated_peak_bytes"],
        reserved_peak_bytes=memory["reserved_peak_bytes"],
        per_rank=[_rank_summary(r) for r in records.values()],
        extra=_with_straggler(_extras(records), workers if synchronous else []),
    )


def _with_straggler(extra: dict[str, Any], workers: list[RankRecords]) -> dict[str, Any]:
    """Synchronous runs name their slowest rank (``extra["slowest_rank"]``)."""
    straggler = slowest_rank(workers)
    return {**extra, "slowest_rank": straggler.as_dict()} if straggler else extra


def _final_loss(workers: list[RankRecords]) -> float | None:
    # The lowest rank whose last step reports a loss: rank 0 for data parallelism; the last
    # stage for pipelines, where only the last stage computes the loss.
    for worker in sorted(workers, key=lambda w: w.rank):
        if worker.steps and "loss" in worker.steps[-1]:
            return float(worker.steps[-1]["loss"])
    return None


def _memory(records: dict[int, RankRecords]) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for key in ("peak_rss_bytes", "allocated_peak_bytes", "reserved_peak_bytes"):
        values = [
            r.summary[key] for r in records.values() if r.summary and r.summary.get(key) is not None
        ]
        out[key] = max(values) if values else None
    return out


def _rank_summary(rank: RankRecords) -> dict[str, Any]:
    measured = rank.measured_steps()
    return {
        "rank": rank.rank,
        "role": rank.role,
        "host": rank.meta.get("host"),
        "threads": rank.meta.get("threads"),
        "steps": len(measured),
        "step_time_mean": fmean(s["step_time"] for s in measured) if measured else None,
        "breakdown": mean_phases(measured) if measured else {},
        "peak_rss_bytes": (rank.summary or {}).get("peak_rss_bytes"),
    }


def _extras(records: dict[int, RankRecords]) -> dict[str, Any]:
    """Strategy-specific summaries: rank 0's at top level, other ranks' under 'ranks'."""
    extras = {r.rank: (r.summary or {}).get("extra") or {} for r in records.values()}
    merged: dict[str, Any] = dict(extras.get(0, {}))
    others = {str(rank): extra for rank, extra in extras.items() if rank != 0 and extra}
    if others:
        merged["ranks"] = others
    return merged
