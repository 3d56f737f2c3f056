"""Prediction beside measurement, end to end: the work behind ``distbench validate``.

Where to start: :func:`validate_configs` takes run configurations, makes sure a calibration
profile exists for each workload (taking one if not), runs the configurations or reads
their stored runs (``reuse``), predicts each one (``predict.engines.predict``: the
formulas or the simulator) and returns a ``predict.accuracy.ValidationReport``. The
prediction uses only the calibration profile, never the measured run's own timings.
Nothing here prints.

torch, the harness and the calibration are imported inside the functions that need them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from distbench.compute.plan import parse_compute
from distbench.config import TIMING_KEYS, WORKLOAD_KEYS
from distbench.errors import UserError
from distbench.predict.accuracy import (
    ValidationReport,
    ValidationRow,
    compare,
    median_round,
    rebased_speedups,
    summarize,
)
from distbench.predict.core import predicts
from distbench.predict.engines import Engine
from distbench.profiling.profiles import Profile
from distbench.registry import resolved_threads, strategy_facts
from distbench.store.db import stored_setting

if TYPE_CHECKING:
    from distbench.config import RunConfig
    from distbench.profiling.calibrate import Progress
    from distbench.store import ResultStore
    from distbench.store.result import RunResult


#: Hook for progress: (event kind, details); kinds "profile", "run" and the run hook's own.
EventHook = Callable[[str, dict[str, Any]], None]


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
    """The workload ``cfg`` trains, as the one-worker configuration a profile measures."""
    from distbench.config import RunConfig

    workload = {key: getattr(cfg, key) for key in WORKLOAD_KEYS}
    return RunConfig(**workload, seed=cfg.seed, device="cpu")


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
    db: str,
    request: Any,
    options: CalibrationOptions,
    progress: Progress | None = None,
    emulated: bool = False,
) -> tuple[Profile, int, bool]:
    """The newest stored profile for the request's workload covering its workers (and its
    splits when asked, its per-step phase times for ``emulated`` compute), or a new one
    measured now and stored: ``(profile, id, new)``."""
    import os

    from distbench.profiling.calibrate import profile_model
    from distbench.profiling.profiles import find_profile_row, save_profile

    cfg = request.cfg
    if not options.reprofile:
        found = find_profile_row(
            db, cfg.model, cfg.dataset, cfg.batch_size, os.cpu_count() or 1, network=cfg.network
        )
        if found is not None and _covers(found[0], request, emulated):
            return found[0], found[1], False
    profile = profile_model(request, progress)
    return profile, save_profile(db, profile), True


def _group_profile(
    db: str,
    cfg: RunConfig,
    request: Any,
    options: CalibrationOptions,
    progress: Progress | None,
    emulated: bool,
) -> tuple[Profile, int]:
    """The profile a group is predicted from. With ``--compute-profile ID`` that very
    profile, since its runs replay it; else ``ensure_profile``'s. An older profile gets
    its tensors' sizes from the model's definition (``with_model_sizes``)."""
    from distbench.profiling.grad_ready import with_model_sizes

    if emulated and cfg.compute_profile is not None:
        from distbench.compute.resolve import replayed_profile

        chosen = replayed_profile(db, cfg)
        assert chosen is not None  # an id that is not stored is a UserError there
        return with_model_sizes(chosen[0], cfg), chosen[1]
    profile, pid, _ = ensure_profile(db, request, options, progress, emulated)
    return with_model_sizes(profile, cfg), pid


def _covers(profile: Profile, request: Any, emulated: bool = False) -> bool:
    splits_ok = not request.splits or len(profile.t_grad_split) >= request.workers
    return (
        profile.workers >= request.workers
        and splits_ok
        and (bool(profile.phase_samples) or not emulated)
        and profile.input_size == request.cfg.input_size
        and profile.network == request.cfg.network
    )


def find_measured(store: ResultStore, cfg: RunConfig) -> RunResult | None:
    """The newest successful stored run with the same timing-relevant settings and threads."""
    found = find_measured_runs(store, cfg, 1)
    return found[0] if found else None


def find_measured_runs(store: ResultStore, cfg: RunConfig, count: int) -> list[RunResult]:
    """The newest ``count`` successful stored runs of ``cfg`` (as ``find_measured``),
    newest first: a configuration's rounds."""
    wanted = {k: getattr(cfg, k, None) for k in TIMING_KEYS}
    threads = resolved_threads(cfg)
    found = []
    for row in reversed(
        store.query(
            model=cfg.model,
            strategy=cfg.strategy,
            workers=cfg.workers,
            status="ok",
            dataset=cfg.dataset,
        )
    ):
        same = all(stored_setting(row, k) == v for k, v in wanted.items())
        if same and row.threads_per_worker == threads:
            found.append(row)
            if len(found) == count:
                break
    return store.with_scaling(found)


def _profile_groups(configs: Sequence[RunConfig]) -> dict[tuple[Any, ...], list[RunConfig]]:
    """Configurations by the workload they train: one calibration profile each."""
    groups: dict[tuple[Any, ...], list[RunConfig]] = {}
    for cfg in configs:
        groups.setdefault(tuple(getattr(cfg, key) for key in WORKLOAD_KEYS), []).append(cfg)
    return groups


def _baseline_config(db: str, row: RunResult | None) -> RunConfig | None:
    from distbench.config import RunConfig
    from distbench.store import open_store

    if row is None or not row.ok:
        return None
    store = open_store(db)
    try:
        base = store.baseline_for(row)
    finally:
        store.close()
    return RunConfig.from_dict(base.config) if base and base.config else None


def _reused(db: str, cfgs: list[RunConfig], rounds: int) -> list[list[RunResult]]:
    """Every configuration's newest ``rounds`` stored runs (its rounds, when it was
    measured with as many)."""
    from distbench.store import open_store

    store = open_store(db)
    try:
        return [find_measured_runs(store, cfg, rounds) for cfg in cfgs]
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

    if predicts(cfg):
        work.profile = refresh_contention(
            work.profile, work.request, cfg.workers, resolved_threads(cfg)
        )
        work.profile_id = save_profile(db, work.profile)


def replayed(cfg: RunConfig, profile_id: int) -> RunConfig:
    """Emulated compute replays the very profile the prediction uses."""
    if parse_compute(cfg.compute).emulated:
        return cfg.replace(compute_profile=profile_id)
    return cfg


def calibrated_workers(cfgs: Sequence[RunConfig]) -> int:
    """Worker count a group's profile is calibrated for. Emulated compute is predicted from
    the one-worker profile and the two-host link probe alone, so a group of only emulated
    configurations measures nothing at more than two processes."""
    largest = max(c.workers for c in cfgs)
    if all(parse_compute(c.compute).emulated for c in cfgs):
        return min(largest, 2)
    return largest


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
    engine: Engine = "formulas",
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
        splits = any(
            strategy_facts(c.framework, c.strategy).prediction_model == "sync-split" for c in cfgs
        )
        emulated = any(parse_compute(c.compute).emulated for c in cfgs)
        request = profile_request(cfgs[0], calibrated_workers(cfgs), options, splits)
        profile, pid = _group_profile(db, cfgs[0], request, options, profile_progress, emulated)
        if profile.beside_other_load:
            notify(
                "busy profile",
                {"config": cfgs[0], "profile": pid, "cores": profile.outside_load_cores},
            )
        if reuse:
            # the stored rounds compared as measured ones are: each, then the median round
            cfgs = [replayed(c, pid) for c in cfgs]
            reused = []
            for cfg, runs in zip(cfgs, _reused(db, cfgs, rounds), strict=True):
                found: list[RunResult | None] = list(runs) if runs else [None]
                rounds_of = [
                    compare(cfg, row, profile, pid, _baseline_config(db, row), engine)
                    for row in found
                ]
                reused.append(median_round(rounds_of))
            rows.extend(rebased_speedups(reused) if rounds > 1 else reused)
            continue
        work = _Workload(request, profile, pid)
        measured: list[list[ValidationRow]] = [[] for _ in cfgs]
        for round_index in range(rounds):
            notify(
                "measure",
                {"config": cfgs[0], "runs": len(cfgs), "round": round_index + 1, "rounds": rounds},
            )
            for cfg, results in zip(cfgs, measured, strict=True):
                if options.refresh and not parse_compute(cfg.compute).emulated:
                    _calibrate_for(db, work, cfg)
                # one round per call: validate interleaves and refreshes contention itself
                one = replayed(cfg, work.profile_id).replace(rounds=1, precision=None)
                stored = run_benchmarks([one], db, _renumbered(run_hook, done, total))
                done += 1
                row = stored[0] if stored else None  # none on a node other than rank 0's
                results.append(
                    compare(
                        cfg,
                        row,
                        work.profile,
                        work.profile_id,
                        _baseline_config(db, row),
                        engine,
                    )
                )
        chosen = [median_round(results) for results in measured]
        rows.extend(rebased_speedups(chosen) if rounds > 1 else chosen)
    return ValidationReport(rows=rows, summary=summarize(rows), engine=engine)


def predicted_speedups(
    db: str, rows: Sequence[RunResult], engines: Sequence[Engine] = ("formulas", "simulator")
) -> dict[str, dict[str, float]]:
    """For every stored ``ok`` run whose workload has a stored profile: its predicted
    speedup by each engine, keyed by run id (what the report draws beside the measured
    points). Nothing is measured here: a run without a stored profile gets no prediction.
    Emulated runs are predicted from the profile they replayed."""
    from distbench.config import RunConfig

    out: dict[str, dict[str, float]] = {}
    for row in rows:
        if not row.ok or not row.config:
            continue
        cfg = RunConfig.from_dict(row.config)
        found = _stored_profile(db, cfg)
        if found is None:
            continue
        profile, pid = found
        baseline = _baseline_config(db, row)
        speedups: dict[str, float] = {}
        for engine in engines:
            try:
                predicted = compare(cfg, row, profile, pid, baseline, engine).predicted_speedup
            except UserError:  # a profile too old for this engine's inputs
                predicted = None
            if predicted is not None:
                speedups[engine] = predicted
        if speedups:
            out[row.run_id] = speedups
    return out


def _stored_profile(db: str, cfg: RunConfig) -> tuple[Profile, int] | None:
    from distbench.compute.resolve import replayed_profile
    from distbench.profiling.profiles import find_profile_row

    if cfg.compute != "real":
        try:
            return replayed_profile(db, cfg)
        except UserError:
            return None
    return find_profile_row(db, cfg.model, cfg.dataset, cfg.batch_size, network=cfg.network)
