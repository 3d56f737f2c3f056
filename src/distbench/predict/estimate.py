"""Estimate tables and a recommendation built from the analytic formulas.

Where to start: ``estimate_table`` turns one-worker measurements into one ``EstimateRow``
per worker count for a strategy; ``estimate_report`` adds the other server type, the
semaphore bound and a ``Recommendation``; ``render_text`` / ``render_csv`` format a
report as strings. Nothing here prints or plots (``distbench.report`` draws).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal, get_args

from distbench.errors import UserError
from distbench.predict import formulas as f
from distbench.predict.core import (
    Server,
    canonical_server,
    ps_async_training,
    ps_sync_iteration,
)

Kind = Literal["async", "sync-join", "sync-split", "ddp", "pipeline"]
KINDS: tuple[str, ...] = get_args(Kind)
PS_KINDS = ("async", "sync-join", "sync-split")
#: An added worker pays while it adds at least this share of one worker's throughput.
DEFAULT_MIN_GAIN = 0.1


@dataclass(frozen=True)
class EstimateRow:
    """Whole-training estimate for ``workers`` workers (seconds for D batches).

    ``t_best`` / ``t_worst`` (and their speedups) are ``None`` where the model has no
    band; ``time_per_iteration`` is ``None`` where training has no iterations (async).
    """

    workers: int
    t_best: float | None
    t_worst: float | None
    t_estimate: float
    time_per_iteration: float | None
    speedup_best: float | None
    speedup_worst: float | None
    speedup_estimate: float
    formula: str


@dataclass(frozen=True)
class EstimateInputs:
    """Everything a table needs; validated piecewise by the formulas it reaches."""

    kind: Kind
    server: Server
    t_grad: float | None
    t_comm: float | None
    workers: tuple[int, ...]
    batches: int = 128
    t_grad_split: tuple[float, ...] | None = None
    alpha: float | None = None
    beta: float | None = None
    grad_bytes: float | None = None
    t_backward: float | None = None
    overlap: float | None = None
    bucket_bytes: float = f.DDP_DEFAULT_BUCKET_BYTES
    stage_times: tuple[float, ...] | None = None
    microbatches: int | None = None
    rounding: f.Rounding = "exact"

    def __post_init__(self) -> None:
        # one vocabulary: "distributed" (the thesis' word) is read as "sharded"
        object.__setattr__(self, "server", canonical_server(self.server))


@dataclass(frozen=True)
class SemaphoreBounds:
    """Thesis eq. 7.3: a semaphore-guarded transfer takes t_comm <= t_sem <= N·t_comm."""

    workers: int
    t_best: float
    t_worst: float


@dataclass(frozen=True)
class Recommendation:
    """The fastest (strategy, workers) within the budget, and where adding workers stops paying.

    ``stops_paying[strategy]`` is the first N whose N-th worker adds less than ``min_gain``
    of one worker's throughput (``S(N) - S(N-1) < min_gain``; an ideal worker adds 1), or
    ``None`` if every worker up to the budget still pays.
    """

    strategy: str
    workers: int
    t_estimate: float
    speedup: float
    budget_workers: int
    min_gain: float
    stops_paying: Mapping[str, int | None] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class EstimateReport:
    """A requested table plus the tables compared for the recommendation."""

    inputs: EstimateInputs
    strategy: str
    rows: list[EstimateRow]
    compared: Mapping[str, list[EstimateRow]]
    semaphore: SemaphoreBounds | None
    recommendation: Recommendation


# --- tables --------------------------------------------------------------------------


def estimate_table(
    kind: Kind,
    server: str,
    t_grad: float | None,
    t_comm: float | None,
    workers: Sequence[int],
    batches: int = 128,
    t_grad_split: Sequence[float] | None = None,
    *,
    alpha: float | None = None,
    beta: float | None = None,
    grad_bytes: float | None = None,
    t_backward: float | None = None,
    overlap: float | None = None,
    bucket_bytes: float = f.DDP_DEFAULT_BUCKET_BYTES,
    stage_times: Sequence[float] | None = None,
    microbatches: int | None = None,
    rounding: f.Rounding = "exact",
) -> list[EstimateRow]:
    """One row per worker count; see ``docs/model.md`` for each kind's formulas."""
    inputs = EstimateInputs(
        kind=kind,
        server=canonical_server(server),
        t_grad=t_grad,
        t_comm=t_comm,
        workers=tuple(workers),
        batches=batches,
        t_grad_split=None if t_grad_split is None else tuple(t_grad_split),
        alpha=alpha,
        beta=beta,
        grad_bytes=grad_bytes,
        t_backward=t_backward,
        overlap=overlap,
        bucket_bytes=bucket_bytes,
        stage_times=None if stage_times is None else tuple(stage_times),
        microbatches=microbatches,
        rounding=rounding,
    )
    return table_for(inputs)


def table_for(inputs: EstimateInputs) -> list[EstimateRow]:
    """Dispatch on ``inputs.kind`` after the checks every kind shares."""
    if inputs.kind not in KINDS:
        raise UserError(f"unknown estimate type {inputs.kind!r}; choose from {', '.join(KINDS)}")
    if not inputs.workers:
        raise UserError("workers must list at least one worker count")
    for n in inputs.workers:
        f.check_count("workers", n)
    f.check_count("batches", inputs.batches)
    if inputs.kind == "pipeline":
        return _pipeline_rows(inputs)
    t_grad = _required(inputs.t_grad, "t_grad", inputs.kind)
    if inputs.kind == "ddp":
        return [_ddp_row(inputs, t_grad, n) for n in inputs.workers]
    t_comm = _required(inputs.t_comm, "t_comm", inputs.kind)
    if inputs.kind == "async":
        return [_async_row(inputs, t_grad, t_comm, n) for n in inputs.workers]
    return [_sync_row(inputs, t_grad, t_comm, n) for n in inputs.workers]


def _required(value: float | None, name: str, kind: str) -> float:
    if value is None:
        raise UserError(f"{kind} estimates need {name} (--{name.replace('_', '-')})")
    return value


def _row(
    inputs: EstimateInputs,
    t_grad: float,
    n: int,
    times: tuple[float | None, float | None, float],
    t_iter: float | None,
    formula: str,
) -> EstimateRow:
    best, worst, estimate = times
    d = inputs.batches

    def s(t: float | None) -> float | None:
        return None if t is None else f.speedup(t_grad, d, t)

    return EstimateRow(
        workers=n,
        t_best=best,
        t_worst=worst,
        t_estimate=estimate,
        time_per_iteration=t_iter,
        speedup_best=s(best),
        speedup_worst=s(worst),
        speedup_estimate=f.speedup(t_grad, d, estimate),
        formula=formula,
    )


def _split_grad(inputs: EstimateInputs, t_grad: float, n: int) -> tuple[float, str]:
    """Gradient time of a 1/N batch: measured if given, else the labelled t_grad/N fallback."""
    split = inputs.t_grad_split
    if split is None:
        return f.split_grad_fallback(t_grad, n), "t_grad/N fallback"
    if n > len(split):
        raise UserError(
            f"t_grad_split gives {len(split)} values but {n} workers were asked for;"
            " give one value per worker count 1..N"
        )
    return f.check_positive(f"t_grad_split[{n}]", split[n - 1]), "measured t_grad_split"


def _sync_row(inputs: EstimateInputs, t_grad: float, t_comm: float, n: int) -> EstimateRow:
    """Thesis eq. 4.2 with 4.4/4.7/4.11 (central) or 4.12 (sharded)."""
    if inputs.kind == "sync-join":
        iterations = f.sync_join_iterations(inputs.batches, n, inputs.rounding)
        t_iter_grad, label = t_grad, f"sync-join I=D/N ({inputs.rounding})"
    else:
        iterations = f.sync_split_iterations(inputs.batches)
        t_iter_grad, source = _split_grad(inputs, t_grad, n)
        label = f"sync-split I=D, {source}"
    band = ps_sync_iteration(t_iter_grad, t_comm, n, inputs.server)
    t_iter = band.estimate
    if band.best is None or band.worst is None:
        total = f.sync_training_time(iterations, t_iter)
        return _row(inputs, t_grad, n, (None, None, total), t_iter, f"{label}; eq. 4.12")
    times = (
        iterations * band.best,
        iterations * band.worst,
        f.sync_training_time(iterations, t_iter),
    )
    return _row(inputs, t_grad, n, times, t_iter, f"{label}; eq. 4.4/4.7/4.11")


def _async_row(inputs: EstimateInputs, t_grad: float, t_comm: float, n: int) -> EstimateRow:
    """Thesis eq. 4.15/4.16/4.20 (central) or 4.21 (sharded)."""
    band = ps_async_training(t_grad, t_comm, n, inputs.batches, inputs.server)
    if band.best is None:
        return _row(inputs, t_grad, n, (None, None, band.estimate), None, "async; eq. 4.21")
    times = (band.best, band.worst, band.estimate)
    return _row(inputs, t_grad, n, times, None, "async; eq. 4.15/4.16/4.20")


def _allreduce(inputs: EstimateInputs, n: int) -> tuple[float, str]:
    if inputs.beta is not None and inputs.grad_bytes is not None:
        alpha = 0.0 if inputs.alpha is None else inputs.alpha
        return f.ring_allreduce_time(n, inputs.grad_bytes, alpha, inputs.beta), "ring α-β"
    if inputs.t_comm is not None:
        return f.ring_allreduce_bandwidth_time(n, inputs.t_comm), "ring from t_comm (α=0)"
    raise UserError(
        "ddp estimates need --beta and --grad-bytes (and optionally --alpha), or --t-comm"
    )


def _overlap(inputs: EstimateInputs) -> tuple[float, str]:
    if inputs.overlap is not None:
        return inputs.overlap, "given overlap"
    if inputs.grad_bytes is not None:
        return f.ddp_default_overlap(inputs.grad_bytes, inputs.bucket_bytes), "bucket overlap"
    return 0.0, "no overlap (grad bytes unknown)"


def _ddp_row(inputs: EstimateInputs, t_grad: float, n: int) -> EstimateRow:
    """DDP, one batch per worker per step (I = D/N like sync-join); band = overlap 1..0."""
    t_ar, ar_label = _allreduce(inputs, n)
    overlap, ov_label = _overlap(inputs)
    iterations = f.sync_join_iterations(inputs.batches, n, inputs.rounding)
    step = f.ddp_step_time(t_grad, t_ar, inputs.t_backward, overlap)
    best = f.ddp_step_time(t_grad, t_ar, inputs.t_backward, 1.0)
    worst = f.ddp_step_time(t_grad, t_ar, inputs.t_backward, 0.0)
    times = (iterations * best, iterations * worst, iterations * step)
    label = f"ddp I=D/N; {ar_label}; {ov_label} {overlap:.2f}"
    return _row(inputs, t_grad, n, times, step, label)


def _pipeline_rows(inputs: EstimateInputs) -> list[EstimateRow]:
    """GPipe/1F1B flush: measured stages give one row at S stages; else a balanced split."""
    m = inputs.microbatches
    if m is None:
        raise UserError("pipeline estimates need --microbatches")
    f.check_count("microbatches", m)
    if inputs.stage_times is not None:
        stages = inputs.stage_times
        t_grad = inputs.t_grad if inputs.t_grad is not None else m * sum(stages)
        batch = f.gpipe_batch_time(stages, m)
        bubble = f.bubble_fraction(len(stages), m)
        label = f"pipeline (M-1)·max stage + Σ stages, measured stages, bubble {bubble:.2f}"
        return [
            _row(inputs, t_grad, len(stages), (None, None, inputs.batches * batch), batch, label)
        ]
    t_grad = _required(inputs.t_grad, "t_grad", "pipeline (without --stage-times)")
    rows = []
    for n in inputs.workers:
        batch = f.gpipe_batch_time([f.balanced_stage_time(t_grad, n, m)] * n, m)
        bubble = f.bubble_fraction(n, m)
        label = f"pipeline (M+S-1)·t_grad/(S·M), balanced stages, bubble {bubble:.2f}"
        rows.append(_row(inputs, t_grad, n, (None, None, inputs.batches * batch), batch, label))
    return rows


# --- semaphore and recommendation ----------------------------------------------------


def semaphore_bounds(t_comm: float, n: int) -> SemaphoreBounds:
    """Bounds on one semaphore-guarded transfer among ``n`` workers (thesis eq. 7.1-7.3)."""
    return SemaphoreBounds(
        workers=n, t_best=f.semaphore_best(t_comm, n), t_worst=f.semaphore_worst(t_comm, n)
    )


def stops_paying(rows: Sequence[EstimateRow], min_gain: float = DEFAULT_MIN_GAIN) -> int | None:
    """First N whose N-th worker adds less than ``min_gain`` of one worker's throughput
    (``S(N) - S(N-1) < min_gain``), else ``None``.

    The gain is measured against what one more worker ideally adds (a speedup of 1), not
    relative to the speedup so far: a relative rule calls perfectly linear scaling
    "stopped paying" as soon as 1/(N-1) < min_gain (N = 22 at 5 %)."""
    by_n = {row.workers: row.speedup_estimate for row in rows}
    for n in sorted(by_n):
        previous = by_n.get(n - 1)
        if previous is not None and by_n[n] - previous < min_gain:
            return n
    return None


def recommend(
    rows_by_strategy: Mapping[str, Sequence[EstimateRow]],
    budget_workers: int,
    min_gain: float = DEFAULT_MIN_GAIN,
) -> Recommendation:
    """Fastest (strategy, workers) with at most ``budget_workers`` workers.

    When nothing beats one worker training sequentially (speedup <= 1), the answer is
    ``sequential`` on one worker.
    """
    f.check_count("budget", budget_workers)
    candidates = [
        (row.t_estimate, row.workers, name, row)
        for name, rows in rows_by_strategy.items()
        for row in rows
        if row.workers <= budget_workers
    ]
    if not candidates:
        raise UserError(f"no estimate within a budget of {budget_workers} workers")
    _, _, name, best = min(candidates, key=lambda c: (c[0], c[1]))
    knees = {
        key: stops_paying([r for r in rows if r.workers <= budget_workers], min_gain)
        for key, rows in rows_by_strategy.items()
    }
    if best.speedup_estimate <= 1.0:
        name, note = "sequential", "no parallel setting beats one worker training alone"
        best = replace(
            best,
            workers=1,
            t_estimate=best.t_estimate * best.speedup_estimate,
            speedup_estimate=1.0,
        )
    else:
        note = ""
    return Recommendation(
        strategy=name,
        workers=best.workers,
        t_estimate=best.t_estimate,
        speedup=best.speedup_estimate,
        budget_workers=budget_workers,
        min_gain=min_gain,
        stops_paying=knees,
        note=note,
    )


def strategy_name(kind: str, server: str) -> str:
    """``sync-join/central`` for parameter-server kinds, the bare kind otherwise."""
    return f"{kind}/{server}" if kind in PS_KINDS else kind


def estimate_report(
    inputs: EstimateInputs,
    budget_workers: int | None = None,
    min_gain: float = DEFAULT_MIN_GAIN,
) -> EstimateReport:
    """The requested table; for parameter-server kinds also the other server, compared."""
    rows = table_for(inputs)
    name = strategy_name(inputs.kind, inputs.server)
    compared: dict[str, list[EstimateRow]] = {name: rows}
    if inputs.kind in PS_KINDS:
        for server in get_args(Server):
            if server != inputs.server:
                other = replace(inputs, server=server)
                compared[strategy_name(inputs.kind, server)] = table_for(other)
    budget = max(inputs.workers) if budget_workers is None else budget_workers
    semaphore = None
    if inputs.kind in PS_KINDS and inputs.t_comm is not None:
        semaphore = semaphore_bounds(inputs.t_comm, max(inputs.workers))
    return EstimateReport(
        inputs=inputs,
        strategy=name,
        rows=rows,
        compared=compared,
        semaphore=semaphore,
        recommendation=recommend(compared, budget, min_gain),
    )


# --- rendering as strings (printed by the CLI, never here) ----------------------------

CSV_COLUMNS = tuple(fl.name for fl in fields(EstimateRow))


def render_csv(rows: Sequence[EstimateRow]) -> str:
    """Header plus one line per worker count; empty cells where a row has no band."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow(["" if v is None else _csv_value(v) for v in asdict(row).values()])
    return out.getvalue()


def _csv_value(value: object) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _cell(value: float | None, width: int, decimals: int) -> str:
    return "-".rjust(width) if value is None else f"{value:{width}.{decimals}f}"


def render_text(report: EstimateReport) -> str:
    """A readable table (times in seconds for D batches) with bounds and recommendation."""
    inp = report.inputs
    lines = [
        f"Estimated speedup: {report.strategy}, D={inp.batches} batches",
        f"{'N':>3} {'t_best':>10} {'t_worst':>10} {'t_est':>10} {'t_iter':>9}"
        f" {'S_best':>7} {'S_worst':>7} {'S_est':>7}",
    ]
    for r in report.rows:
        lines.append(
            f"{r.workers:>3} {_cell(r.t_best, 10, 2)} {_cell(r.t_worst, 10, 2)}"
            f" {r.t_estimate:10.2f} {_cell(r.time_per_iteration, 9, 4)}"
            f" {_cell(r.speedup_best, 7, 3)} {_cell(r.speedup_worst, 7, 3)}"
            f" {r.speedup_estimate:7.3f}"
        )
    lines.append(f"formula: {report.rows[-1].formula}")
    if report.semaphore is not None:
        sem = report.semaphore
        lines.append(
            f"semaphore bound (N={sem.workers}): {sem.t_best:.4f} s <= t_sem <= {sem.t_worst:.4f} s"
        )
    lines.extend(_recommendation_lines(report.recommendation))
    return "\n".join(lines) + "\n"


def _recommendation_lines(rec: Recommendation) -> list[str]:
    head = (
        f"recommendation (budget {rec.budget_workers} workers): {rec.strategy} on"
        f" {rec.workers} worker(s), speedup {rec.speedup:.2f}, {rec.t_estimate:.1f} s"
    )
    lines = [head + (f" ({rec.note})" if rec.note else "")]
    for name, knee in rec.stops_paying.items():
        verdict = (
            f"stops paying at N={knee} (the N-th worker adds < {rec.min_gain:.0%} of a worker)"
            if knee is not None
            else f"each worker adds >= {rec.min_gain:.0%} of a worker up to the budget"
        )
        lines.append(f"  {name}: {verdict}")
    return lines


def report_as_dict(report: EstimateReport) -> dict[str, Any]:
    """JSON-ready form of a report."""
    return {
        "strategy": report.strategy,
        "inputs": asdict(report.inputs),
        "rows": [asdict(r) for r in report.rows],
        "compared": {k: [asdict(r) for r in v] for k, v in report.compared.items()},
        "semaphore": None if report.semaphore is None else asdict(report.semaphore),
        "recommendation": {
            **asdict(report.recommendation),
            "stops_paying": dict(report.recommendation.stops_paying),
        },
    }
