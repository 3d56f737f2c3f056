"""Which configuration is fastest: stored runs ranked by throughput, per workload.

Start at :func:`rank_configurations`. Runs are grouped by workload (model on dataset, as
the report's panels are); within a workload each configuration (strategy, framework,
workers, compute) keeps its most recent successful run, ranked by median throughput.
Each entry says how it stands against the fastest: ``fastest``; ``tied`` when the two
throughput intervals over rounds overlap (the ranking between them is not measured); or
how much slower it is. Without intervals (one round) nothing can be called tied, and the
entry says the order rests on single measurements.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from distbench.store.result import RunResult

FASTEST, TIED, SLOWER = "fastest", "tied", "slower"


@dataclass(frozen=True)
class RankedRun:
    """One configuration of a workload, as it stands against the fastest."""

    place: int
    row: RunResult
    standing: str  # FASTEST, TIED or SLOWER
    slower_by: float  # fraction of the fastest's throughput it lacks (0 for the fastest)

    @property
    def configuration(self) -> str:
        row = self.row
        text = f"{row.strategy} ×{row.workers}"
        if row.framework != "torch":
            text += f" ({row.framework})"
        compute = str((row.config or {}).get("compute", "real"))
        return text if compute == "real" else f"{text}, compute {compute}"

    def verdict(self) -> str:
        if self.standing == FASTEST:
            return "fastest"
        if self.standing == TIED:
            return f"tied with the fastest (intervals overlap; {self.slower_by:.0%} below)"
        return f"{self.slower_by:.0%} slower"


@dataclass(frozen=True)
class RankedWorkload:
    workload: str  # "model on dataset"
    runs: list[RankedRun]

    @property
    def measured_once(self) -> bool:
        """Some entry has no interval (one round): the order is from single measurements."""
        return any(r.row.throughput_ci_low is None for r in self.runs)


def _configuration_key(row: RunResult) -> tuple[str, str, int, str]:
    compute = str((row.config or {}).get("compute", "real"))
    return (row.strategy, row.framework, int(row.workers), compute)


def _overlaps(a: RunResult, b: RunResult) -> bool:
    """The two throughput intervals over rounds share a value (never without both)."""
    lows, highs = (
        (a.throughput_ci_low, b.throughput_ci_low),
        (a.throughput_ci_high, b.throughput_ci_high),
    )
    if any(v is None for v in (*lows, *highs)):
        return False
    return max(v for v in lows if v is not None) <= min(v for v in highs if v is not None)


def rank_workload(rows: Sequence[RunResult]) -> list[RankedRun]:
    """One workload's configurations, fastest first (latest successful run of each)."""
    latest: dict[tuple[str, str, int, str], RunResult] = {}
    for row in sorted(rows, key=lambda r: (r.created_at, r.run_id)):
        if row.ok and row.throughput_median:
            latest[_configuration_key(row)] = row
    ordered = sorted(latest.values(), key=lambda r: -(r.throughput_median or 0.0))
    if not ordered:
        return []
    best = ordered[0]
    top = best.throughput_median or 1.0
    ranked = []
    for place, row in enumerate(ordered, start=1):
        lacks = 1.0 - (row.throughput_median or 0.0) / top
        standing = FASTEST if row is best else TIED if _overlaps(row, best) else SLOWER
        ranked.append(RankedRun(place, row, standing, lacks))
    return ranked


def rank_configurations(rows: Sequence[RunResult]) -> list[RankedWorkload]:
    """Every workload's ranking, workloads in first-seen order."""
    groups: dict[str, list[RunResult]] = {}
    for row in rows:
        groups.setdefault(f"{row.model} on {row.dataset}", []).append(row)
    ranked = [RankedWorkload(name, rank_workload(members)) for name, members in groups.items()]
    return [workload for workload in ranked if workload.runs]
