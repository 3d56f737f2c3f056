"""Turn per-rank records into one result.

Synchronous strategies: a step takes as long as its slowest worker, so the global step
time of step ``i`` is the maximum over workers, and the breakdown is that of the governing
rank (the worker with the largest mean step time). Asynchronous strategies: each worker
progresses on its own, so throughput is the sum of the workers' own throughputs.
Warm-up steps are excluded everywhere. The breakdown is a per-phase *mean* over measured
steps, so its phases add up to the mean step time; the headline step time is the median.
"""

from __future__ import annotations

from statistics import fmean
from typing import Any

from distbench.errors import RunFailed
from distbench.measurement.records import RankRecords
from distbench.measurement.stats import summarize
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
    """Per measured step: (slowest worker's step time, samples of all workers)."""
    by_step: dict[int, list[dict[str, Any]]] = {}
    for worker in workers:
        for step in worker.measured_steps():
            by_step.setdefault(step["step"], []).append(step)
    complete = [steps for _, steps in sorted(by_step.items()) if len(steps) == len(workers)]
    times = [max(s["step_time"] for s in steps) for steps in complete]
    samples = [float(sum(s["samples"] for s in steps)) for steps in complete]
    return times, samples


def async_series(workers: list[RankRecords]) -> tuple[list[float], list[float]]:
    """Per measured step of every worker: (its step time, samples scaled by worker count),
    so that samples/time estimates the aggregate throughput of all workers together."""
    times: list[float] = []
    samples: list[float] = []
    for worker in workers:
        for step in worker.measured_steps():
            times.append(step["step_time"])
            samples.append(float(step["samples"]) * len(workers))
    return times, samples


def aggregate_run(records: dict[int, RankRecords], synchronous: bool) -> RunMetrics:
    """Metrics of one finished run."""
    workers = _worker_records(records)
    times, samples = (sync_series if synchronous else async_series)(workers)
    if not times:
        raise RunFailed("workers reported no common measured step")
    step = summarize(times)
    throughput = summarize([n / t for n, t in zip(samples, times, strict=True) if t > 0])
    governing = max(workers, key=lambda w: fmean(s["step_time"] for s in w.measured_steps()))
    measured = governing.measured_steps()
    comm = [s["comm_total"] for s in measured if "comm_total" in s]
    memory = _memory(records)
    return RunMetrics(
        throughput_median=throughput.median,
        throughput_ci_low=throughput.ci95_low,
        throughput_ci_high=throughput.ci95_high,
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
        extra=_extras(records),
    )


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
