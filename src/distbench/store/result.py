"""``RunResult``: one benchmark run as the store keeps it, typed.

Where to start: the session builds a ``RunResult`` (``session.describe_run`` for the facts a
run has whether or not it succeeds, then the aggregated ``RunMetrics``), the store maps it
to the ``runs`` table (``to_row`` / ``from_row``: scalars are columns, nested data JSON),
and analysis, report and validation read its fields by name. Speedup, efficiency and the
baseline they are relative to are never stored: ``ResultStore.with_scaling`` fills them in
when the result is read, against the one-worker baseline that exists then.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from distbench.measurement.rounds import Interval, median_interval

#: Filled when a result is read, not stored (``ResultStore.with_scaling``).
SCALING_FIELDS = (
    "speedup",
    "efficiency",
    "speedup_ci",
    "efficiency_ci",
    "speedup_verdict",
    "baseline_run_id",
    "baseline",
)


@dataclass
class RunMetrics:
    """What aggregating a finished run's per-rank records yields (``harness.aggregate``)."""

    throughput_median: float
    #: The per-step 95 % interval of this round's throughput: step jitter, not the result's
    #: uncertainty (that is over rounds, ``measurement.rounds``); kept in ``extra``.
    step_jitter_low: float
    step_jitter_high: float
    step_time_median: float
    step_time_p90: float
    step_time_mean: float
    breakdown: dict[str, float]
    comm_total: float | None
    governing_rank: int
    final_loss: float | None
    peak_rss_bytes: int | None
    allocated_peak_bytes: int | None
    reserved_peak_bytes: int | None
    per_rank: list[dict[str, Any]]
    #: Strategy-specific summaries: rank 0's at top level, other ranks' under "ranks".
    extra: dict[str, Any]


@dataclass
class Round:
    """One round of a configuration: a fresh process group, measured on its own."""

    round: int  # 1-based
    status: str  # "ok" or "failed"
    run_dir: str
    started_at: str
    duration_s: float
    error: str | None = None
    throughput: float | None = None
    step_time_median: float | None = None
    step_jitter: list[float] | None = None
    #: CPU used by processes outside the run while it ran, in cores (``harness.noise``).
    outside_cores: float | None = None
    #: The round ran beside other load (``outside_cores`` above ``noise.BUSY_CORES``).
    busy: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class RunResult:
    """One run: its configuration facts, status, figures and environment."""

    run_id: str
    status: str  # "ok" or "failed"; "running" while a run is under way
    created_at: str
    model: str
    dataset: str
    strategy: str
    framework: str
    workers: int
    processes: int | None = None
    threads_per_worker: int | None = None
    global_batch: int | None = None
    local_batch: int | None = None
    scaling: str | None = None  # strategies.contract.Scaling
    steps: int | None = None
    warmup_steps: int | None = None
    error: str | None = None
    duration_s: float | None = None
    throughput_median: float | None = None
    #: The interval of the median over rounds (``measurement.rounds``); None for one round.
    throughput_ci_low: float | None = None
    throughput_ci_high: float | None = None
    step_time_median: float | None = None
    step_time_p90: float | None = None
    step_time_mean: float | None = None
    comm_total: float | None = None
    governing_rank: int | None = None
    final_loss: float | None = None
    peak_rss_bytes: int | None = None
    allocated_peak_bytes: int | None = None
    reserved_peak_bytes: int | None = None
    oversubscribed: bool = False
    breakdown: dict[str, float] = field(default_factory=dict)
    per_rank: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)
    run_dir: str | None = None
    operators: dict[str, Any] | None = None
    resources: dict[str, Any] | None = None
    #: One entry per round (``Round.to_dict``): its throughput, step jitter, outside load.
    rounds: list[dict[str, Any]] = field(default_factory=list)
    # -- computed on read (SCALING_FIELDS) --
    speedup: float | None = None
    efficiency: float | None = None
    #: Bootstrap interval over both sides' rounds; None with one round on either side.
    speedup_ci: list[float] | None = None
    efficiency_ci: list[float] | None = None
    #: "faster", "slower" or "no measurable difference" (the interval contains 1).
    speedup_verdict: str | None = None
    baseline_run_id: str | None = None
    baseline: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def add_metrics(self, metrics: RunMetrics) -> None:
        """Take the aggregated figures; the strategy's extras join what is already in
        ``extra`` (the network a run used), neither replaces the other."""
        values = dataclasses.asdict(metrics)
        extra = values.pop("extra")
        extra["step_jitter"] = [values.pop("step_jitter_low"), values.pop("step_jitter_high")]
        for name, value in values.items():
            setattr(self, name, value)
        self.extra = {**extra, **self.extra}

    def round_throughputs(self) -> list[float]:
        """The measured throughput of every round that succeeded (samples/s)."""
        return [
            float(r["throughput"])
            for r in self.rounds
            if r.get("status") == "ok" and r.get("throughput")
        ]

    def throughput_interval(self) -> Interval | None:
        """The median over rounds and its interval; None for a run without a figure."""
        values = self.round_throughputs()
        if not values and self.throughput_median:
            values = [self.throughput_median]  # a result stored before rounds existed
        return median_interval(values) if values else None

    def to_row(self) -> dict[str, Any]:
        """The stored columns (scaling fields are left out: they are computed on read)."""
        row = dataclasses.asdict(self)
        for name in SCALING_FIELDS:
            row.pop(name)
        return row

    def to_dict(self) -> dict[str, Any]:
        """Every field, for JSON output."""
        return dataclasses.asdict(self)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> RunResult:
        """A stored (decoded) row, or any mapping with the required keys; unknown keys are
        ignored so that an older store's extra columns never break reading."""
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in row.items() if k in names and v is not None}
        return cls(**known)
