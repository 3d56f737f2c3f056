"""Prediction beside measurement: predicted and measured time per step and speedup.

Where to start: :func:`validate_configs` takes run configurations, makes sure a calibration
profile exists for each workload (taking one if not), runs the configurations or reads
their stored runs (``reuse``), predicts each one with :func:`predict_case`, and returns a
:class:`ValidationReport` (per-configuration :class:`ValidationRow` plus a
:class:`ValidationSummary`). The model uses only the calibration profile (gradient times
under the matching CPU contention, ``t_comm``, the fitted all-reduce ``alpha``/``beta``),
never the measured run's own timings. The error math (:func:`relative_error`,
:func:`spearman`, :func:`best_configurations`, :func:`summarize`) is pure and tested on
given numbers. Nothing here prints.

torch, the harness and the calibration are imported inside the functions that need them,
so that the model and the math import in milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from statistics import median
from typing import TYPE_CHECKING, Any

from distbench.errors import UserError
from distbench.predict import formulas as f
from distbench.profiling.profiles import Profile, StepTimes
from distbench.registry import resolved_threads, strategy_facts

if TYPE_CHECKING:
    from distbench.config import RunConfig
    from distbench.profiling.calibrate import Progress
    from distbench.store import ResultStore

PREDICTED_STRATEGIES = ("sequential", "ddp", "ps-sync-join", "ps-sync-split", "ps-async")

#: Hook for progress: (event kind, details); kinds "profile", "run" and the run hook's own.
EventHook = Callable[[str, dict[str, Any]], None]


# --- what is predicted -------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """The facts of one configuration that the model needs (no timings)."""

    model: str
    dataset: str
    strategy: str
    workers: int
    batch_size: int
    local_batch: int
    global_batch: int
    threads: int
    servers: str
    steps: int
    synchronous: bool


@dataclass(frozen=True)
class Prediction:
    """Predicted time per step (one worker step; one iteration when synchronous), the
    throughput it implies (samples/s of all workers), and how it was composed."""

    step_time: float
    throughput: float
    compute: float
    comm: float
    formula: str


def case_of(cfg: RunConfig) -> Case:
    strategy = strategy_facts(cfg.framework, cfg.strategy)
    return Case(
        model=cfg.model,
        dataset=cfg.dataset,
        strategy=cfg.strategy,
        workers=cfg.workers,
        batch_size=cfg.batch_size,
        local_batch=strategy.local_batch(cfg),
        global_batch=strategy.global_batch(cfg),
        threads=resolved_threads(cfg),
        servers=cfg.servers,
        steps=cfg.steps,
        synchronous=strategy.synchronous,
    )


def compute_times(profile: Profile, processes: int, threads: int) -> tuple[StepTimes, str]:
    """The contention measurement for ``processes`` x ``threads``; when the profile lacks it,
    the one-worker measurement scaled by threads and by CPU oversubscription (labelled)."""
    exact = profile.step_times(processes, threads)
    if exact is not None:
        return exact, f"{processes}x{threads} threads measured"
    base = profile.contended[0]
    scale = base.threads / threads * max(1.0, processes * threads / profile.cores)

    def s(v: float) -> float:
        return v * scale

    scaled = replace(
        base,
        processes=processes,
        threads=threads,
        data=s(base.data),
        forward=s(base.forward),
        backward=s(base.backward),
        update=s(base.update),
        t_grad=s(base.t_grad),
        t_grad_max=s(base.t_grad_max),
        t_step=s(base.t_step),
        t_step_max=s(base.t_step_max),
    )
    return scaled, f"{processes}x{threads} threads extrapolated"


def _worker_compute(case: Case, profile: Profile) -> tuple[float, float, float, str]:
    """(forward+backward, its backward part, data+update) of one worker step in ``case``.

    A synchronous step with several workers waits for the slowest, so it uses the median
    of each repetition's slowest process."""
    times, label = compute_times(profile, case.workers, case.threads)
    grad = times.t_grad_max if case.synchronous and case.workers > 1 else times.t_grad
    if case.strategy == "ps-sync-split":
        split = profile.t_grad_split
        if len(split) >= case.workers:
            grad *= split[case.workers - 1] / split[0]
            label += f", 1/{case.workers} batch ratio"
        else:
            grad /= case.workers
            label += f", t_grad/{case.workers} fallback"
    share = times.backward / (times.forward + times.backward)
    return grad, grad * share, times.data + times.update, label


def predict_case(case: Case, profile: Profile) -> Prediction | None:
    """Predicted step of ``case`` from ``profile``; ``None`` for strategies without a model."""
    if case.strategy not in PREDICTED_STRATEGIES:
        return None
    grad, backward, overhead, label = _worker_compute(case, profile)
    n = case.workers
    if case.strategy == "sequential":
        step, comm, formula = grad + overhead, 0.0, "t_grad + data + update"
    elif case.strategy == "ddp":
        step, comm, formula = _ddp_step(case, profile, grad, backward, overhead)
    elif case.strategy == "ps-async":
        step, comm, formula = _ps_async_step(case, profile, grad + overhead)
    else:
        step, comm, formula = _ps_sync_step(case, profile, grad + overhead)
    samples = case.global_batch if case.synchronous else n * case.local_batch
    return Prediction(
        step_time=step,
        throughput=samples / step,
        compute=grad + overhead,
        comm=comm,
        formula=f"{formula}; compute {label}",
    )


def _ddp_step(
    case: Case, profile: Profile, grad: float, backward: float, overhead: float
) -> tuple[float, float, str]:
    """DDP's step: compute, the all-reduce and DDP's per-step machinery
    (``profile.ddp_overhead``, 0 in older profiles).

    The all-reduce is the ring formula, hidden behind backward by the bucket overlap, when
    it has room: behind a shaped link the wire sets the pace and the CPU is free, and with a
    spare core gloo's threads run beside the backward pass. When the workers' threads fill
    every core on loopback moving bytes is CPU work that nothing hides, and it is slower
    than between idle ranks: the profile's all-reduce measured right after a step is added
    in full (the ring formula, unhidden, where the profile lacks it)."""
    n, machinery = case.workers, profile.ddp_overhead or 0.0
    if n == 1:
        return grad + overhead + machinery, 0.0, "ddp, one rank: compute + DDP machinery"
    saturated = profile.network is None and n * case.threads >= profile.cores
    loaded = profile.loaded_allreduce(n, case.threads) if saturated else None
    if loaded is not None:
        return (
            grad + loaded + overhead + machinery,
            loaded,
            "ddp: all-reduce after a step (measured, no spare core) + DDP machinery",
        )
    ar = profile.allreduce
    t_ar = f.ring_allreduce_time(n, profile.grad_bytes, ar.alpha, ar.beta)
    overlap = 0.0 if saturated else f.ddp_default_overlap(profile.grad_bytes)
    step = f.ddp_step_time(grad, t_ar, backward, overlap) + overhead + machinery
    why = "no spare core" if saturated else "bucket"
    return (
        step,
        t_ar,
        (f"ddp: ring all-reduce (alpha, beta), {why} overlap {overlap:.2f} + DDP machinery"),
    )


def ps_transfer_time(profile: Profile) -> float:
    """``t_comm`` for the parameter-server formulas: the raw transfer of the weights plus
    the protocol's measured cost per transfer (``ps_transfer``; 0 for older profiles)."""
    return profile.t_comm + (profile.ps_overhead or 0.0)


def _ps_sync_step(case: Case, profile: Profile, t_grad: float) -> tuple[float, float, str]:
    n, t_comm = case.workers, ps_transfer_time(profile)
    if case.servers == "sharded":
        step = f.sync_distributed(t_grad, t_comm, n)
        return step, step - t_grad, "ps sync, distributed server (eq. 4.12)"
    step = f.sync_central_estimate(t_grad, t_comm, n)
    return step, step - t_grad, "ps sync, central server, mean of best and worst (eq. 4.11)"


def _ps_async_step(case: Case, profile: Profile, t_grad: float) -> tuple[float, float, str]:
    """Whole-training formulas for D = N·steps batches, divided by the D/N steps a worker
    takes: the time of one worker step."""
    n, t_comm = case.workers, ps_transfer_time(profile)
    d = n * case.steps
    if case.servers == "sharded":
        total, label = f.async_distributed(t_grad, t_comm, n, d), "distributed server (eq. 4.21)"
    else:
        total = f.async_central_estimate(t_grad, t_comm, n, d)
        label = "central server, mean of best and worst (eq. 4.20)"
    step = total / (d / n)
    return step, step - t_grad, f"ps async, {label}"


# --- comparison rows and the math --------------------------------------------------------------


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

    @property
    def label(self) -> str:
        return f"{self.model} {self.strategy} x{self.workers}"


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
        best_overall_predicted=best_pred.label if best_pred else None,
        best_overall_measured=best_meas.label if best_meas else None,
    )


# --- orchestration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalibrationOptions:
    """How ``validate`` calibrates (see ``calibrate.ProfileRequest``). ``refresh``: re-take
    each configuration's contention measurement just before its run (not with ``reuse``)."""

    repeats: int = 10
    warmup: int = 2
    sweep_max_bytes: int | None = None  # None: calibrate.sweep_limit decides
    timeout: float = 600.0
    reprofile: bool = False
    refresh: bool = True


def _profile_cfg(cfg: RunConfig) -> RunConfig:
    from distbench.config import RunConfig

    return RunConfig(
        model=cfg.model,
        dataset=cfg.dataset,
        data_dir=cfg.data_dir,
        batch_size=cfg.batch_size,
        input_size=cfg.input_size,
        num_classes=cfg.num_classes,
        seed=cfg.seed,
        device="cpu",
        network=cfg.network,
    )


def profile_request(cfg: RunConfig, workers: int, options: CalibrationOptions, splits: bool) -> Any:
    """The ``calibrate.ProfileRequest`` for ``cfg``'s workload."""
    from distbench.profiling.calibrate import ProfileRequest

    return ProfileRequest(
        cfg=_profile_cfg(cfg),
        workers=workers,
        repeats=options.repeats,
        warmup=options.warmup,
        sweep_max_bytes=options.sweep_max_bytes,
        timeout=options.timeout,
        splits=splits,
    )


def ensure_profile(
    db: str, request: Any, options: CalibrationOptions, progress: Progress | None = None
) -> tuple[Profile, int, bool]:
    """The newest stored profile for the request's workload covering its workers (and its
    splits when asked), or a new one measured now and stored: ``(profile, id, new)``."""
    import os

    from distbench.profiling.calibrate import profile_model
    from distbench.profiling.profiles import find_profile_row, save_profile

    cfg = request.cfg
    if not options.reprofile:
        found = find_profile_row(
            db, cfg.model, cfg.dataset, cfg.batch_size, os.cpu_count() or 1, network=cfg.network
        )
        if found is not None and _covers(found[0], request):
            return found[0], found[1], False
    profile = profile_model(request, progress)
    return profile, save_profile(db, profile), True


def _covers(profile: Profile, request: Any) -> bool:
    splits_ok = not request.splits or len(profile.t_grad_split) >= request.workers
    return (
        profile.workers >= request.workers
        and splits_ok
        and profile.input_size == request.cfg.input_size
        and profile.network == request.cfg.network
    )


TIMING_KEYS = (
    "model",
    "dataset",
    "strategy",
    "workers",
    "batch_size",
    "servers",
    "ps_semaphore",
    "input_size",
    "num_classes",
    "microbatches",
    "partition",
    "framework",
    "device",
    "nnodes",
    "data_dir",
    "network",
    "hosts",
)


def find_measured(store: ResultStore, cfg: RunConfig) -> dict[str, Any] | None:
    """The newest successful stored run with the same timing-relevant settings and threads."""
    wanted = {k: getattr(cfg, k, None) for k in TIMING_KEYS}
    threads = resolved_threads(cfg)
    for row in reversed(
        store.query(
            model=cfg.model,
            strategy=cfg.strategy,
            workers=cfg.workers,
            status="ok",
            dataset=cfg.dataset,
        )
    ):
        stored = row.get("config") or {}
        if (
            all(stored.get(k) == v for k, v in wanted.items())
            and row.get("threads_per_worker") == threads
        ):
            return store.with_scaling([row])[0]
    return None


def compare(
    cfg: RunConfig,
    row: dict[str, Any] | None,
    profile: Profile,
    profile_id: int | None,
    baseline: RunConfig | None,
) -> ValidationRow:
    """Prediction for ``cfg`` beside its measured ``row`` (speedup against ``baseline``)."""
    case = case_of(cfg)
    pred = predict_case(case, profile)
    base_pred = predict_case(case_of(baseline), profile) if baseline is not None else None
    measured = row is not None and row.get("status") == "ok"
    m_step = row.get("step_time_median") if measured and row else None
    m_tp = row.get("throughput_median") if measured and row else None
    low, high = (row.get("throughput_ci_low"), row.get("throughput_ci_high")) if row else (0, 0)
    m_ci = (float(low), float(high)) if measured and low and high else None
    m_speedup = row.get("speedup") if measured and row else None
    p_speedup = pred.throughput / base_pred.throughput if pred and base_pred else None
    status = "ok" if pred and measured else ("no model" if pred is None else "no measurement")
    if row is not None and row.get("status") != "ok":
        status = f"run {row.get('status')}"
    return ValidationRow(
        model=case.model,
        dataset=case.dataset,
        strategy=case.strategy,
        workers=case.workers,
        batch_size=case.batch_size,
        threads=case.threads,
        servers=case.servers,
        status=status,
        run_id=row.get("run_id") if row else None,
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
        note=(row or {}).get("error") or "",
        measured_throughput_ci=m_ci,
    )


def _profile_groups(configs: Sequence[RunConfig]) -> dict[tuple[Any, ...], list[RunConfig]]:
    groups: dict[tuple[Any, ...], list[RunConfig]] = {}
    for cfg in configs:
        key = (
            cfg.model,
            cfg.dataset,
            cfg.batch_size,
            cfg.data_dir,
            cfg.input_size,
            cfg.num_classes,
            cfg.network,
        )
        groups.setdefault(key, []).append(cfg)
    return groups


def _baseline_config(db: str, row: dict[str, Any] | None) -> RunConfig | None:
    from distbench.config import RunConfig
    from distbench.store import open_store

    if row is None or row.get("status") != "ok":
        return None
    store = open_store(db)
    try:
        base = store.baseline_for(row)
    finally:
        store.close()
    return RunConfig.from_dict(base["config"]) if base and base.get("config") else None


def _reused(db: str, cfgs: list[RunConfig]) -> list[dict[str, Any] | None]:
    from distbench.store import open_store

    store = open_store(db)
    try:
        return [find_measured(store, cfg) for cfg in cfgs]
    finally:
        store.close()


def _renumbered(hook: EventHook | None, index: int, total: int) -> EventHook | None:
    """A run hook that sees one run of a one-run call as run ``index`` of ``total``."""
    if hook is None:
        return None
    inner = hook

    def renumber(kind: str, info: dict[str, Any]) -> None:
        if "index" in info:
            info = {**info, "index": index, "total": total}
        inner(kind, info)

    return renumber


@dataclass
class _Workload:
    """One workload's profile while its configurations are measured."""

    request: Any
    profile: Profile
    profile_id: int


def _calibrate_for(db: str, work: _Workload, cfg: RunConfig) -> None:
    """Re-take ``cfg``'s contention pair just before its run, also right after a new
    profile: the profile's own measurement of that pair can be a minute old by then, and
    on a shared host a two-thread measurement of a small model drifts 2-3x in a minute."""
    from distbench.profiling.calibrate import refresh_contention
    from distbench.profiling.profiles import save_profile

    if cfg.strategy in PREDICTED_STRATEGIES:
        work.profile = refresh_contention(
            work.profile, work.request, cfg.workers, resolved_threads(cfg)
        )
        work.profile_id = save_profile(db, work.profile)


def median_round(rounds: Sequence[ValidationRow]) -> ValidationRow:
    """Of one configuration's rounds, the one whose measured throughput is the median (the
    lower middle one for an even count), with every round's throughput beside it; rounds
    without a measurement only count when no round has one."""
    measured = [r for r in rounds if r.measured_throughput is not None]
    if not measured:
        return rounds[-1]
    ordered = sorted(measured, key=lambda r: float(r.measured_throughput or 0.0))
    chosen = ordered[(len(ordered) - 1) // 2]
    return replace(
        chosen, round_throughputs=[float(r.measured_throughput or 0.0) for r in measured]
    )


def validate_configs(
    configs: Sequence[RunConfig],
    db: str,
    *,
    reuse: bool = False,
    options: CalibrationOptions | None = None,
    profile_progress: Progress | None = None,
    run_hook: EventHook | None = None,
    on_event: EventHook | None = None,
    rounds: int = 1,
) -> ValidationReport:
    """Profile (if needed), measure (run or reuse) and predict every configuration.

    Workloads are handled one at a time (profile, then its runs) and, unless ``reuse`` or
    ``options.refresh`` is off, each run is preceded by a fresh measurement of its CPU
    contention, so calibration and measurement see the same load on a shared host. With
    ``rounds`` > 1 a workload's configurations are measured that many times, interleaved
    (all of them once, then all again), and each is reported by its median round
    (``median_round``): drift over the minutes a pass takes then moves every
    configuration alike instead of favouring the ones measured in a quiet minute."""
    from distbench.harness.session import run_benchmarks

    if rounds < 1:
        raise UserError(f"--rounds must be at least 1, got {rounds}")
    options = options or CalibrationOptions()
    notify = on_event or (lambda kind, info: None)
    rows: list[ValidationRow] = []
    total = len(configs) * (1 if reuse else rounds)
    done = 0
    for cfgs in _profile_groups(configs).values():
        notify("profile", {"config": cfgs[0]})
        splits = any(c.strategy == "ps-sync-split" for c in cfgs)
        request = profile_request(cfgs[0], max(c.workers for c in cfgs), options, splits)
        profile, pid, _ = ensure_profile(db, request, options, profile_progress)
        if reuse:
            for cfg, row in zip(cfgs, _reused(db, cfgs), strict=True):
                rows.append(compare(cfg, row, profile, pid, _baseline_config(db, row)))
            continue
        work = _Workload(request, profile, pid)
        measured: list[list[ValidationRow]] = [[] for _ in cfgs]
        for round_index in range(rounds):
            notify(
                "measure",
                {"config": cfgs[0], "runs": len(cfgs), "round": round_index + 1, "rounds": rounds},
            )
            for cfg, results in zip(cfgs, measured, strict=True):
                if options.refresh:
                    _calibrate_for(db, work, cfg)
                stored = run_benchmarks([cfg], db, _renumbered(run_hook, done, total))
                done += 1
                row = stored[0] if stored else None  # none on a node other than rank 0's
                results.append(
                    compare(cfg, row, work.profile, work.profile_id, _baseline_config(db, row))
                )
        chosen = [median_round(results) for results in measured]
        rows.extend(rebased_speedups(chosen) if rounds > 1 else chosen)
    return ValidationReport(rows=rows, summary=summarize(rows))


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
