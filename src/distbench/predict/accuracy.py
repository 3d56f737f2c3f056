"""How good a prediction is: prediction beside measurement, errors, rank agreement.

Where to start: :func:`compare` puts one configuration's prediction (``core``) beside its
measured run as a :class:`ValidationRow`; :func:`summarize` gives the median errors, the
Spearman rank agreement and whether the predicted best configuration is the measured one
(:func:`best_configurations`). The error math is pure and tested on given numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from statistics import median
from typing import TYPE_CHECKING, Any

from distbench.compute.plan import is_faithful
from distbench.harness.monitor import stored_emulation
from distbench.measurement.rounds import median_interval
from distbench.predict.core import Case, case_of
from distbench.predict.engines import Engine, predict
from distbench.profiling.profiles import Profile

if TYPE_CHECKING:
    from distbench.config import RunConfig
    from distbench.store.result import RunResult


@dataclass(frozen=True)
class ValidationRow:
    """One configuration: prediction, measurement (``None`` when none) and relative errors
    ``(predicted - measured) / measured``."""

    model: str
    dataset: str
    strategy: str
    workers: int
    batch_size: int
    threads: int
    servers: str
    status: str
    run_id: str | None
    profile_id: int | None
    predicted_step: float | None
    measured_step: float | None
    step_error: float | None
    predicted_throughput: float | None
    measured_throughput: float | None
    predicted_speedup: float | None
    measured_speedup: float | None
    speedup_error: float | None
    formula: str
    note: str = ""
    #: The measured run's 95 % interval of throughput (samples/s), when stored.
    measured_throughput_ci: tuple[float, float] | None = None
    #: With ``--rounds`` K > 1: every round's measured throughput (samples/s); the row is
    #: the round with the median one.
    round_throughputs: list[float] = field(default_factory=list)
    #: False for an emulated run that did not replay its profile (cores saturated, or its
    #: waits off by more than the goal): its error is the emulation's, not the model's.
    faithful: bool = True

    @property
    def label(self) -> str:
        return f"{self.model} {self.strategy} x{self.workers}"

    @property
    def measurement_noise(self) -> float | None:
        """Half-width of the measured throughput's interval relative to its median: an
        error smaller than this cannot be told from the measurement's own spread."""
        if self.measured_throughput_ci is None or not self.measured_throughput:
            return None
        low, high = self.measured_throughput_ci
        centre = self.measured_throughput
        return max(centre - low, high - centre) / centre

    @property
    def within_noise(self) -> bool:
        """The predicted throughput lies inside the measured interval."""
        if self.measured_throughput_ci is None or self.predicted_throughput is None:
            return False
        low, high = self.measured_throughput_ci
        return low <= self.predicted_throughput <= high


@dataclass(frozen=True)
class BestPick:
    """For one workload (model, dataset, batch): the configuration with the highest
    throughput, predicted and measured, and what choosing the predicted one costs."""

    workload: str
    predicted: str
    measured: str
    matches: bool
    #: Measured throughput lost by following the prediction:
    #: ``1 - measured(predicted best) / measured(measured best)``; 0 when they match.
    regret: float = 0.0
    #: The predicted best is not the measured best, but the two cannot be told apart by
    #: the measurement: their measured 95 % intervals of throughput overlap.
    tied: bool = False


@dataclass(frozen=True)
class ValidationSummary:
    """Errors over the rows that have a prediction and a measurement."""

    configurations: int
    compared: int
    median_abs_step_error: float | None
    max_abs_step_error: float | None
    median_abs_speedup_error: float | None
    spearman: float | None
    spearman_within_workload: float | None
    best: list[BestPick] = field(default_factory=list)
    #: The step-time errors over the rows whose emulation was faithful (all rows when no
    #: compute was emulated): (rows, median |error|, max |error|).
    faithful: tuple[int, float | None, float | None] = (0, None, None)
    best_overall_predicted: str | None = None
    best_overall_measured: str | None = None

    @property
    def best_matches(self) -> bool:
        return bool(self.best) and all(pick.matches for pick in self.best)

    @property
    def best_within_noise(self) -> bool:
        """Every predicted best is the measured best or measures tied with it."""
        return bool(self.best) and all(pick.matches or pick.tied for pick in self.best)


@dataclass(frozen=True)
class ValidationReport:
    rows: list[ValidationRow]
    summary: ValidationSummary
    engine: str = "formulas"  # the prediction backend (predict.engines)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["summary"]["best_matches"] = self.summary.best_matches
        out["summary"]["best_within_noise"] = self.summary.best_within_noise
        return out


def relative_error(predicted: float | None, measured: float | None) -> float | None:
    """``(predicted - measured) / measured``; ``None`` without both or for a zero measure."""
    if predicted is None or measured is None or measured == 0:
        return None
    return (predicted - measured) / measured


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing the mean of their positions."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rank correlation (Pearson on tie-averaged ranks); ``None`` below two
    points or when either side is constant."""
    if len(xs) != len(ys):
        raise ValueError("spearman needs two sequences of equal length")
    if len(xs) < 2:
        return None
    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    if vx == 0 or vy == 0:
        return None
    return cov / math.sqrt(vx * vy)


def _workload(row: ValidationRow) -> str:
    return f"{row.model}/{row.dataset}/b{row.batch_size}"


def best_configurations(rows: Sequence[ValidationRow]) -> list[BestPick]:
    """Per workload, the highest predicted vs. the highest measured throughput."""
    groups: dict[str, list[ValidationRow]] = {}
    for row in _compared(rows):
        groups.setdefault(_workload(row), []).append(row)
    picks = []
    for name, group in groups.items():
        pred = max(group, key=lambda r: r.predicted_throughput or 0.0)
        meas = max(group, key=lambda r: r.measured_throughput or 0.0)
        regret = 1.0 - (pred.measured_throughput or 0.0) / (meas.measured_throughput or 1.0)
        picks.append(
            BestPick(
                name,
                pred.label,
                meas.label,
                pred is meas,
                regret,
                pred is not meas and intervals_overlap(pred, meas),
            )
        )
    return picks


def intervals_overlap(a: ValidationRow, b: ValidationRow) -> bool:
    """Whether the measured 95 % intervals of throughput of ``a`` and ``b`` overlap (False
    when either is unknown)."""
    if a.measured_throughput_ci is None or b.measured_throughput_ci is None:
        return False
    (a_low, a_high), (b_low, b_high) = a.measured_throughput_ci, b.measured_throughput_ci
    return a_low <= b_high and b_low <= a_high


def _compared(rows: Sequence[ValidationRow]) -> list[ValidationRow]:
    return [
        r
        for r in rows
        if r.step_error is not None
        and r.predicted_throughput is not None
        and r.measured_throughput is not None
    ]


def _within_workload_spearman(rows: Sequence[ValidationRow]) -> float | None:
    groups: dict[str, list[ValidationRow]] = {}
    for row in rows:
        groups.setdefault(_workload(row), []).append(row)
    values = [
        spearman(
            [r.predicted_throughput or 0.0 for r in g], [r.measured_throughput or 0.0 for r in g]
        )
        for g in groups.values()
    ]
    present = [v for v in values if v is not None]
    return median(present) if present else None


def summarize(rows: Sequence[ValidationRow]) -> ValidationSummary:
    """Median/max absolute step-time error, speedup error, rank correlations of throughput
    and whether the predicted best configuration is the measured best."""
    compared = _compared(rows)
    errors = [abs(r.step_error) for r in compared if r.step_error is not None]
    speedups = [abs(r.speedup_error) for r in compared if r.speedup_error is not None]
    best_pred = max(compared, key=lambda r: r.predicted_throughput or 0.0, default=None)
    best_meas = max(compared, key=lambda r: r.measured_throughput or 0.0, default=None)
    faithful = [abs(r.step_error) for r in compared if r.faithful and r.step_error is not None]
    return ValidationSummary(
        configurations=len(rows),
        compared=len(compared),
        median_abs_step_error=median(errors) if errors else None,
        max_abs_step_error=max(errors) if errors else None,
        median_abs_speedup_error=median(speedups) if speedups else None,
        spearman=spearman(
            [r.predicted_throughput or 0.0 for r in compared],
            [r.measured_throughput or 0.0 for r in compared],
        ),
        spearman_within_workload=_within_workload_spearman(compared),
        best=best_configurations(compared),
        faithful=(
            len(faithful),
            median(faithful) if faithful else None,
            max(faithful) if faithful else None,
        ),
        best_overall_predicted=best_pred.label if best_pred else None,
        best_overall_measured=best_meas.label if best_meas else None,
    )


def measured_step(case: Case, row: RunResult) -> float | None:
    """The measured time per step a prediction is compared with: the run's median step
    (an iteration when synchronous), and for an asynchronous run the mean step its
    throughput implies (every worker's batch over the samples per second of all). An
    asynchronous run's steps are not alike — while workers move in a convoy most steps
    wait for a crowd at the server's link and a few run alone — so the median of its
    steps is not its mean step, which is what the models predict and what throughput is."""
    if case.synchronous:
        return row.step_time_median
    if not row.throughput_median:
        return None
    return case.workers * case.local_batch / row.throughput_median


def compare(
    cfg: RunConfig,
    row: RunResult | None,
    profile: Profile,
    profile_id: int | None,
    baseline: RunConfig | None,
    engine: Engine = "formulas",
) -> ValidationRow:
    """Prediction for ``cfg`` by ``engine`` beside its measured ``row`` (speedup against
    ``baseline``)."""
    case = case_of(cfg)
    pred = predict(case, profile, engine, as_run=True)
    base_pred = (
        predict(case_of(baseline), profile, engine, as_run=True) if baseline is not None else None
    )
    measured = row is not None and row.ok
    m_tp = row.throughput_median if measured and row else None
    m_step = measured_step(case, row) if measured and row else None
    low, high = (row.throughput_ci_low, row.throughput_ci_high) if row else (0, 0)
    m_ci = (float(low), float(high)) if measured and low and high else None
    m_speedup = row.speedup if measured and row else None
    p_speedup = pred.throughput / base_pred.throughput if pred and base_pred else None
    status = "ok" if pred and measured else ("no model" if pred is None else "no measurement")
    faithful = is_faithful(stored_emulation(row.extra, row.resources)) if row is not None else True
    if measured and not faithful:
        status = "ok, emulation not faithful"
    if row is not None and not row.ok:
        status = f"run {row.status}"
    return ValidationRow(
        model=case.model,
        dataset=case.dataset,
        strategy=case.strategy,
        workers=case.workers,
        batch_size=case.batch_size,
        threads=case.threads,
        servers=case.servers,
        status=status,
        run_id=row.run_id if row else None,
        profile_id=profile_id,
        predicted_step=pred.step_time if pred else None,
        measured_step=m_step,
        step_error=relative_error(pred.step_time if pred else None, m_step),
        predicted_throughput=pred.throughput if pred else None,
        measured_throughput=m_tp,
        predicted_speedup=p_speedup,
        measured_speedup=m_speedup,
        speedup_error=relative_error(p_speedup, m_speedup),
        formula=pred.formula if pred else "",
        note=(row.error if row else None) or "",
        measured_throughput_ci=m_ci,
        faithful=faithful,
    )


def median_round(rounds: Sequence[ValidationRow]) -> ValidationRow:
    """Of one configuration's rounds, the one whose measured throughput is the median (the
    lower middle one for an even count), with every round's throughput beside it; rounds
    without a measurement only count when no round has one."""
    measured = [r for r in rounds if r.measured_throughput is not None]
    if not measured:
        return rounds[-1]
    ordered = sorted(measured, key=lambda r: float(r.measured_throughput or 0.0))
    chosen = ordered[(len(ordered) - 1) // 2]
    throughputs = [float(r.measured_throughput or 0.0) for r in measured]
    interval = median_interval(throughputs)
    # the interval over rounds replaces one round's (a run of one round has none)
    ci = (interval.low, interval.high) if interval.n >= 2 else chosen.measured_throughput_ci
    return replace(chosen, round_throughputs=throughputs, measured_throughput_ci=ci)


def rebased_speedups(rows: Sequence[ValidationRow]) -> list[ValidationRow]:
    """Measured speedups of one workload's median rounds over its sequential run's median
    round. A median round's stored speedup is over the sequential run of *its* round,
    which need not be the median one; both sides must be medians."""
    base = next(
        (
            r
            for r in rows
            if r.strategy == "sequential" and r.workers == 1 and r.measured_throughput
        ),
        None,
    )
    if base is None or not base.measured_throughput:
        return list(rows)
    out = []
    for row in rows:
        if row.measured_throughput is None:
            out.append(row)
            continue
        speedup = row.measured_throughput / base.measured_throughput
        out.append(
            replace(
                row,
                measured_speedup=speedup,
                speedup_error=relative_error(row.predicted_speedup, speedup),
            )
        )
    return out
