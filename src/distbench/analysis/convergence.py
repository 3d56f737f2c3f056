"""Time to accuracy over stored runs: per configuration over seeds, the split of a gap into
throughput and convergence, and what staleness cost an asynchronous run.

Where to start: :func:`goal_of` reads one run's stored goal (``extra.convergence``, written
by ``strategies/convergence.py``); :func:`summarize_goals` groups runs that differ only in
their seed and gives medians with order-statistic intervals (``measurement.rounds``);
:func:`accuracy_gap` splits the difference in time to accuracy of two runs; and
:func:`staleness_price` compares an asynchronous run with a synchronous one that trains the
same batch per update. Nothing here prints (``cli/`` does) or plots (``report/`` does).

The split is exact: time to accuracy is samples to accuracy over the training rate
(samples per second of training, evaluations excluded), so with ``T = S / R``

    T_b − T_a = S_a·(1/R_b − 1/R_a)  +  (S_b − S_a)/R_b
                 throughput part          convergence part

— the first term is what B's rate alone would change at A's samples, the second what B's
extra (or fewer) samples cost at B's rate.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from statistics import median
from typing import Any

from distbench.measurement.rounds import Interval, median_interval
from distbench.store.result import RunResult

#: Settings that do not make a different configuration: the seed is what ``--seeds``
#: varies; the rest only say where output goes or how long to wait.
NOT_CONFIGURATION = ("seed", "save_weights", "timeout")


@dataclass(frozen=True)
class Goal:
    """One run's training to a target."""

    run_id: str
    target: float | None  # None: trained for --epochs only
    reached: bool
    steps: int | None
    seconds: float | None
    epochs: float | None
    final_accuracy: float | None
    final_epochs: float | None  # the epochs the last evaluated weights had trained
    eval_s: float | None  # all evaluations together, measured apart from training
    eval_peak_rss_bytes: int | None
    samples_per_step: int | None  # samples one update trains (stored by the run)
    train_size: int | None  # the training split's samples
    curve: list[dict[str, Any]]

    @property
    def samples(self) -> float | None:
        """Samples trained to the target."""
        if self.steps is None or not self.samples_per_step:
            return None
        return self.steps * self.samples_per_step

    def epochs_at(self, step: int) -> float | None:
        """Epochs trained after ``step`` updates."""
        if not self.samples_per_step or not self.train_size:
            return None
        return step * self.samples_per_step / self.train_size

    @property
    def rate(self) -> float | None:
        """Training samples per second on the way to the target."""
        if self.samples is None or not self.seconds:
            return None
        return self.samples / self.seconds


def goal_of(row: RunResult) -> Goal | None:
    """The run's goal, or None for a run without a target (or not ok)."""
    stored = row.extra.get("convergence") if row.ok else None
    if not stored:
        return None
    return Goal(
        run_id=row.run_id,
        target=stored.get("target_accuracy"),
        reached=bool(stored.get("reached")),
        steps=stored.get("steps_to_accuracy"),
        seconds=stored.get("time_to_accuracy_s"),
        epochs=stored.get("epochs_to_accuracy"),
        final_accuracy=stored.get("final_accuracy"),
        final_epochs=stored.get("final_epochs"),
        eval_s=stored.get("eval_s"),
        eval_peak_rss_bytes=stored.get("eval_peak_rss_bytes"),
        samples_per_step=stored.get("samples_per_step"),
        train_size=stored.get("train_size"),
        curve=list(stored.get("curve") or []),
    )


def run_label(row: RunResult) -> str:
    """``model strategy ×N``, and the framework when it is not PyTorch."""
    framework = "" if row.framework in ("torch", "") else f" ({row.framework})"
    return f"{row.model} {row.strategy} ×{row.workers}{framework}"


def configuration_key(row: RunResult) -> str:
    """What identifies a configuration across seeds (its settings, seed left out)."""
    settings = {k: v for k, v in (row.config or {}).items() if k not in NOT_CONFIGURATION}
    settings.update(model=row.model, strategy=row.strategy, workers=row.workers)
    return json.dumps(settings, sort_keys=True, default=str)


@dataclass(frozen=True)
class GoalSummary:
    """One configuration's training to a target, over the seeds it ran with.

    A seed that did not reach the target counts as never reaching it (infinite time): a
    median that is infinite says most seeds did not get there."""

    label: str
    target: float | None
    run_ids: list[str]
    seeds: list[int]
    reached: int
    seconds: Interval | None  # time to accuracy: median and interval over seeds
    steps: float | None  # medians over the seeds that reached it
    epochs: float | None  # to the target; without one, the epochs trained
    final_accuracy: float | None
    throughput: float | None  # the runs' median training throughput (samples/s)
    eval_s: float | None  # medians over seeds: evaluation time, evaluation peak memory
    eval_peak_rss_bytes: float | None

    @property
    def runs(self) -> int:
        return len(self.run_ids)


def summarize_goals(rows: list[RunResult]) -> list[GoalSummary]:
    """Runs with a target, grouped by configuration (seeds together), in first-seen order."""
    groups: dict[str, list[tuple[RunResult, Goal]]] = {}
    for row in rows:
        goal = goal_of(row)
        if goal is not None:
            groups.setdefault(configuration_key(row), []).append((row, goal))
    return [_summary(members) for members in groups.values()]


def _summary(members: list[tuple[RunResult, Goal]]) -> GoalSummary:
    first = members[0][0]
    goals = [g for _, g in members]
    reached = [g for g in goals if g.reached]
    times = [g.seconds if g.reached and g.seconds is not None else math.inf for g in goals]
    with_target = goals[0].target is not None
    throughputs = [r.throughput_median for r, _ in members if r.throughput_median]
    return GoalSummary(
        label=run_label(first),
        target=goals[0].target,
        run_ids=[g.run_id for g in goals],
        seeds=[int((r.config or {}).get("seed", 0)) for r, _ in members],
        reached=len(reached),
        seconds=median_interval(times) if with_target else None,
        steps=_median([g.steps for g in reached]),
        epochs=_median(
            [g.epochs for g in reached] if with_target else [g.final_epochs for g in goals]
        ),
        final_accuracy=_median([g.final_accuracy for g in goals]),
        throughput=_median(throughputs),
        eval_s=_median([g.eval_s for g in goals]),
        eval_peak_rss_bytes=_median([g.eval_peak_rss_bytes for g in goals]),
    )


def _median(values: list[Any]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return median(present) if present else None


@dataclass(frozen=True)
class AccuracyGap:
    """B's time to accuracy minus A's, split into throughput and convergence (seconds)."""

    a_s: float
    b_s: float
    gap_s: float
    throughput_s: float
    convergence_s: float
    samples_ratio: float  # B's samples to the target over A's
    rate_ratio: float  # B's training rate over A's
    target: float

    def sentence(self) -> str:
        if self.gap_s == 0:
            return "time to accuracy: the same in A and B"
        faster = "longer" if self.gap_s > 0 else "shorter"
        return (
            f"time to accuracy: B takes {abs(self.gap_s):.3g} s {faster} than A "
            f"({self.b_s:.3g} s vs {self.a_s:.3g} s): {self.throughput_s:+.3g} s from "
            f"throughput (B trains {self.rate_ratio:.2f}× A's samples/s), "
            f"{self.convergence_s:+.3g} s from convergence (B needs "
            f"{self.samples_ratio:.2f}× A's samples to reach {self.target * 100:g} %)"
        )


def accuracy_gap(a: RunResult, b: RunResult) -> AccuracyGap | None:
    """The split of B's time to accuracy against A's; None unless both reached the same
    target with measured samples and times."""
    goal_a, goal_b = goal_of(a), goal_of(b)
    if goal_a is None or goal_b is None or goal_a.target != goal_b.target:
        return None
    if goal_a.target is None or not (goal_a.reached and goal_b.reached):
        return None
    rate_a, rate_b = goal_a.rate, goal_b.rate
    if not rate_a or not rate_b or goal_a.samples is None or goal_b.samples is None:
        return None
    time_a, time_b = goal_a.samples / rate_a, goal_b.samples / rate_b
    throughput = goal_a.samples * (1 / rate_b - 1 / rate_a)
    convergence = (goal_b.samples - goal_a.samples) / rate_b
    return AccuracyGap(
        a_s=time_a,
        b_s=time_b,
        gap_s=time_b - time_a,
        throughput_s=throughput,
        convergence_s=convergence,
        samples_ratio=goal_b.samples / goal_a.samples,
        rate_ratio=rate_b / rate_a,
        target=goal_a.target,
    )


@dataclass(frozen=True)
class StalenessPrice:
    """An asynchronous run's staleness beside the extra updates it needed against a
    synchronous run that trains the same batch per update."""

    async_run: str
    reference_run: str
    reference_label: str
    staleness_mean: float | None
    staleness_max: int | None
    histogram: dict[str, int]
    async_updates: int
    reference_updates: int

    @property
    def extra_updates(self) -> int:
        return self.async_updates - self.reference_updates

    def sentence(self) -> str:
        mean = "-" if self.staleness_mean is None else f"{self.staleness_mean:.2f}"
        return (
            f"staleness: mean {mean}, max {self.staleness_max}; it took "
            f"{self.async_updates} updates to the target against {self.reference_updates} "
            f"for {self.reference_label} ({self.extra_updates:+d}, "
            f"{self.async_updates / self.reference_updates:.2f}×)"
        )


def staleness_of(row: RunResult) -> dict[str, Any] | None:
    """The staleness summary of an asynchronous run (the central server's, or the first
    sharded unit's)."""
    extras = [row.extra, *row.extra.get("ranks", {}).values()]
    for extra in extras:
        staleness = (extra.get("server") or {}).get("staleness")
        if staleness:
            return dict(staleness)
    return None


def same_batch_per_update(async_row: RunResult, other: RunResult) -> bool:
    """Whether ``other`` is a synchronous run of the same workload and target whose update
    trains as many samples as one asynchronous update (sequential at the local batch, or
    sync-split with that global batch)."""
    if other.strategy.endswith("async") or not other.ok:
        return False
    if (other.model, other.dataset) != (async_row.model, async_row.dataset):
        return False
    goal_a, goal_o = goal_of(async_row), goal_of(other)
    if goal_a is None or goal_o is None or goal_a.target != goal_o.target:
        return False
    keys = ("lr", "momentum", "weight_decay", "eval_every")
    same = all((async_row.config or {}).get(k) == (other.config or {}).get(k) for k in keys)
    return same and other.global_batch == async_row.local_batch


def staleness_price(async_row: RunResult, candidates: list[RunResult]) -> StalenessPrice | None:
    """What staleness cost ``async_row`` in updates against the first reference among
    ``candidates`` (same seed preferred); None without a reached target on both."""
    goal = goal_of(async_row)
    staleness = staleness_of(async_row)
    if goal is None or not goal.reached or goal.steps is None or staleness is None:
        return None
    seed = (async_row.config or {}).get("seed")
    references = [r for r in candidates if same_batch_per_update(async_row, r)]
    references.sort(key=lambda r: (r.config or {}).get("seed") != seed)
    for reference in references:
        ref_goal = goal_of(reference)
        if ref_goal is not None and ref_goal.reached and ref_goal.steps:
            return StalenessPrice(
                async_run=async_row.run_id,
                reference_run=reference.run_id,
                reference_label=run_label(reference),
                staleness_mean=staleness.get("mean"),
                staleness_max=staleness.get("max"),
                histogram=dict(staleness.get("histogram") or {}),
                async_updates=goal.steps,
                reference_updates=ref_goal.steps,
            )
    return None
