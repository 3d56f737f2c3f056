"""Run a list of benchmark configurations and store one result per run.

This is the plain function behind ``distbench run``: it checks everything it can before
the first process starts (so bad input stores nothing), then measures each configuration
in rounds (``--rounds``; each a fresh process group with its own warm-up), interleaved
across configurations, and stores one result per configuration, ``ok`` or ``failed`` with
the error. The result's median and interval are over its rounds
(``measurement.rounds``); every round is stored beside it, with the CPU that processes
outside the run took while it ran (``harness.noise``).
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

import torch

from distbench.compute.plan import ComputePlan, emulation_report, parse_compute, write_plan
from distbench.compute.resolve import compute_plan, resolve_compute
from distbench.config import MIN_PRECISION_ROUNDS, RunConfig, available_cores
from distbench.data import check_dataset
from distbench.errors import RunFailed, UserError
from distbench.harness.aggregate import aggregate_run
from distbench.harness.capacity import check_memory
from distbench.harness.environment import capture_environment
from distbench.harness.launchers import launch
from distbench.harness.monitor import (
    compact_timelines,
    machine_busy_share,
    measured_cpu_cores,
)
from distbench.harness.noise import OutsideLoadMeter
from distbench.measurement.records import read_run_records
from distbench.measurement.rounds import median_interval
from distbench.netem import cleanup_stale, network_info, preflight_network, resolve_nodefile
from distbench.profiling.operators import (
    profiled_throughout,
    profiling_warning,
    stored_operators,
)
from distbench.registry import processes, resolved_threads, strategy_facts
from distbench.store import ResultStore, open_store
from distbench.store.db import orchestrator
from distbench.store.result import Round, RunMetrics, RunResult
from distbench.strategies.common import state_bytes

ProgressHook = Callable[[str, dict[str, Any]], None]


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def preflight(configs: list[RunConfig]) -> None:
    """Checks that need the file system; config validation already ran on construction."""
    if not configs:
        raise UserError("nothing to run")
    for cfg in configs:
        check_dataset(cfg.dataset, cfg.data_dir)
        if cfg.device == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda requested but this machine has no CUDA device")
        if cfg.save_weights:
            parent = Path(cfg.save_weights).resolve().parent
            if not os.access(parent if parent.exists() else parent.parent, os.W_OK):
                raise UserError(f"cannot write --save-weights {cfg.save_weights}")
    if any(cfg.precision is not None and cfg.nnodes > 1 for cfg in configs):
        raise UserError(
            "--precision decides the rounds on node 0 alone; across nodes give --rounds"
        )
    profiled = [c for c in configs if c.profile_ops and not c.trains_to_goal]
    throughout = [c for c in profiled if profiled_throughout(c.warmup, c.steps)]
    if throughout:  # said once: the configurations of a suite share the flag
        sys.stderr.write(profiling_warning(throughout[0].steps) + "\n")
    check_memory(configs, workload_state_bytes())  # every process must fit in memory
    preflight_network(configs)  # emulated hosts: root, iproute2, netem for delay=
    for cfg in configs:  # another framework's environment must be installed
        if cfg.framework != "torch":
            from distbench.frameworks import get_adapter
            from distbench.frameworks.envs import require_env

            require_env(get_adapter(cfg.framework).env)


def workload_state_bytes() -> Callable[[RunConfig], int]:
    """``state_bytes`` of a config's model, computed once per workload."""
    known: dict[tuple[Any, ...], int] = {}

    def of(cfg: RunConfig) -> int:
        key = (cfg.model, cfg.dataset, cfg.data_dir, cfg.input_size, cfg.num_classes)
        if key not in known:
            known[key] = state_bytes(cfg)
        return known[key]

    return of


def describe_run(cfg: RunConfig, run_id: str, runs_dir: Path, env: dict[str, Any]) -> RunResult:
    """The facts a run has whether or not it succeeds (status "failed" until it does)."""
    strategy = strategy_facts(cfg.framework, cfg.strategy)
    count = processes(cfg)
    threads = resolved_threads(cfg)
    local_processes = count // cfg.nnodes
    return RunResult(
        run_id=run_id,
        status="failed",
        created_at=datetime.now(UTC).isoformat(),
        run_dir=str(round_dir(runs_dir, run_id, 1, planned_rounds(cfg) == 1)),
        env=env,
        model=cfg.model,
        dataset=cfg.dataset,
        strategy=cfg.strategy,
        framework=cfg.framework,
        workers=cfg.workers,
        processes=count,
        threads_per_worker=threads,
        global_batch=strategy.global_batch(cfg),
        local_batch=strategy.local_batch(cfg),
        scaling=strategy.scaling,
        # training to a target runs as many steps as it takes (the curve counts them)
        steps=None if cfg.trains_to_goal else cfg.steps,
        warmup_steps=cfg.warmup,
        # Emulated compute waits instead of computing: whether its processes saturated the
        # cores is measured after each round instead (``emulation_report``).
        oversubscribed=(
            local_processes * threads > available_cores()
            and not parse_compute(cfg.compute).emulated
        ),
        config=cfg.to_dict(),
        extra={"network": network_info(cfg)},  # rate, hosts, ranks per host
    )


class Measured:
    """One configuration measured over rounds: its facts, every round so far, and the
    figures of each round that succeeded (the median one becomes the result's)."""

    def __init__(self, cfg: RunConfig, facts: RunResult, plan: ComputePlan | None = None) -> None:
        self.cfg = cfg
        self.facts = facts
        self.plan = plan  # emulated compute: what every rank replays
        self.rounds: list[Round] = []
        self.figures: dict[int, RoundFigures] = {}  # by round number, ok rounds only
        self.stored = False  # its final result is in the store
        self.precision: dict[str, Any] | None = None

    @property
    def failed(self) -> bool:
        return any(r.status != "ok" for r in self.rounds)

    def throughputs(self) -> list[float]:
        return [float(r.throughput) for r in self.rounds if r.status == "ok" and r.throughput]

    def result(self, status: str) -> RunResult:
        """The stored form: the facts, every round, and the median round's figures with the
        median and interval taken over rounds."""
        result = replace(self.facts, extra=dict(self.facts.extra), status=status)
        result.rounds = [r.to_dict() for r in self.rounds]
        result.duration_s = sum(r.duration_s for r in self.rounds)
        if self.precision is not None:
            result.extra["precision"] = dict(self.precision)
        failed = next((r for r in self.rounds if r.status != "ok"), None)
        if failed is not None:
            result.status = "failed"
            where = f"round {failed.round}: " if len(self.rounds) > 1 else ""
            result.error = f"{where}{failed.error}"
            result.run_dir = failed.run_dir
            return result
        if not self.figures:
            return result
        chosen = median_round(self.rounds)
        figures = self.figures[chosen.round]
        result.add_metrics(figures.metrics)
        result.operators, result.resources = figures.operators, figures.resources
        result.run_dir = chosen.run_dir
        interval = median_interval(self.throughputs())
        result.throughput_median = interval.median
        if interval.n >= 2:
            result.throughput_ci_low, result.throughput_ci_high = interval.low, interval.high
        else:
            result.throughput_ci_low = result.throughput_ci_high = None
        steps = [float(r.step_time_median or 0.0) for r in self.rounds if r.status == "ok"]
        result.step_time_median = float(median(steps))
        return result


class RoundFigures:
    """What a successful round yields besides its ``Round`` entry."""

    def __init__(
        self,
        metrics: RunMetrics,
        operators: dict[str, Any] | None,
        resources: dict[str, Any] | None,
    ) -> None:
        self.metrics, self.operators, self.resources = metrics, operators, resources


def median_round(rounds: list[Round]) -> Round:
    """The successful round whose throughput is the median (the lower middle one)."""
    ok = sorted((r for r in rounds if r.status == "ok"), key=lambda r: float(r.throughput or 0))
    return ok[(len(ok) - 1) // 2]


def round_directory(row: RunResult, number: int | None = None) -> Path:
    """The run directory of round ``number``, else of the round whose figures the result
    reports (``session.median_round``), else the run's own directory."""
    rounds = [Round(**r) for r in row.rounds]
    if number is not None:
        chosen = [r for r in rounds if r.round == number]
        if not chosen:
            have = ", ".join(str(r.round) for r in rounds) or "none"
            raise UserError(f"run {row.run_id} has no round {number} (rounds: {have})")
        return Path(chosen[0].run_dir)
    if any(r.status == "ok" for r in rounds):
        return Path(median_round(rounds).run_dir)
    return Path(rounds[0].run_dir if rounds else row.run_dir or ".")


def round_dir(runs_dir: Path, run_id: str, number: int, single: bool) -> Path:
    """A one-round run keeps the run id as its directory; rounds get ``RUNID-rK``."""
    return runs_dir / (run_id if single else f"{run_id}-r{number}")


def execute_round(
    item: Measured,
    number: int,
    runs_dir: Path,
    on_progress: Callable[[int], None] | None = None,
) -> Round | None:
    """Launch one round of ``item`` and record it; None on nodes other than rank 0's."""
    cfg = item.cfg
    run_dir = round_dir(runs_dir, item.facts.run_id, number, planned_rounds(cfg) == 1)
    run_dir.mkdir(parents=True)
    if item.plan is not None:
        write_plan(run_dir, item.plan)
    started_at = datetime.now(UTC).isoformat()
    meter = OutsideLoadMeter()
    started = time.monotonic()
    try:
        outcome = launch(cfg, run_dir, on_progress)
    except KeyboardInterrupt:  # the launcher has stopped every rank; keep the record
        item.rounds.append(
            Round(
                number,
                "failed",
                str(run_dir),
                started_at,
                time.monotonic() - started,
                error="interrupted (Ctrl-C or SIGTERM)",
            )
        )
        raise
    load = meter.stop()
    if cfg.node_rank != 0:  # node 0 gathers every rank's records and stores the run
        if outcome.returncode != 0:
            raise RunFailed(f"node {cfg.node_rank}: {outcome.error}")
        sys.stderr.write(f"node {cfg.node_rank}: done; node 0 stores the result\n")
        return None
    entry = Round(
        number,
        "failed",
        str(run_dir),
        started_at,
        time.monotonic() - started,
        error=outcome.error,
        outside_cores=round(load.cores, 3),
        busy=load.busy,
    )
    if outcome.returncode == 0:
        try:
            synchronous = strategy_facts(cfg.framework, cfg.strategy).synchronous
            records = read_run_records(run_dir)
            metrics = aggregate_run(records, synchronous)
        except RunFailed as exc:
            entry.error = str(exc)
        else:
            entry.status, entry.error = "ok", None
            entry.throughput = metrics.throughput_median
            entry.step_time_median = metrics.step_time_median
            entry.step_jitter = [metrics.step_jitter_low, metrics.step_jitter_high]
            timelines = compact_timelines(run_dir)
            if item.plan is not None:
                report = emulation_report(
                    [
                        ((r.summary or {}).get("extra") or {}).get("compute") or {}
                        for r in records.values()
                        if r.role == "worker"
                    ],
                    measured_cpu_cores(run_dir),
                    available_cores(),
                    machine_busy_share(timelines),
                )
                metrics.extra["compute"] = report
                item.facts.oversubscribed |= not report["faithful"]
            operators = stored_operators(run_dir, metrics.governing_rank)
            item.figures[number] = RoundFigures(metrics, operators, timelines)
    item.rounds.append(entry)
    return entry


def local_batch(cfg: RunConfig) -> int:
    return int(strategy_facts(cfg.framework, cfg.strategy).local_batch(cfg))


def planned_rounds(cfg: RunConfig) -> int:
    """Rounds a configuration runs at least (``--precision`` may add more)."""
    if cfg.precision is None:
        return cfg.rounds
    return max(cfg.rounds, MIN_PRECISION_ROUNDS)


#: With --precision, no configuration runs more rounds than this, whatever the budget.
MAX_PRECISION_ROUNDS = 50


def wants_round(item: Measured, number: int, elapsed: float) -> bool:
    """Whether ``item`` runs round ``number``: its planned rounds, then, with
    ``--precision``, more until the interval is narrow enough, the budget is spent or the
    round limit is reached (which of them is recorded in ``item.precision``)."""
    cfg = item.cfg
    if item.failed:
        return False
    if number <= planned_rounds(cfg):
        return True
    if cfg.precision is None:
        return False
    interval = median_interval(item.throughputs())
    half = interval.half_width * 100
    item.precision = {
        "target_percent": cfg.precision,
        "half_width_percent": round(half, 2),
        "rounds": interval.n,
    }
    if half <= cfg.precision:
        item.precision["outcome"] = "reached"
    elif elapsed >= cfg.budget:
        item.precision["outcome"] = f"time budget of {cfg.budget:g} s spent"
    elif number > MAX_PRECISION_ROUNDS:
        item.precision["outcome"] = f"round limit of {MAX_PRECISION_ROUNDS} reached"
    else:
        return True
    return False


def runs_dir_for(db_path: str | Path) -> Path:
    """Run directories (records, logs) live beside the database they belong to."""
    return Path(db_path).resolve().parent / "distbench-runs"


def run_benchmarks(
    configs: list[RunConfig], db_path: str | Path, on_event: ProgressHook | None = None
) -> list[RunResult]:
    """Run every config's rounds, interleaved (round 1 of every config, then round 2, ...),
    so that drift in the machine falls on all of them alike; returns the stored rows with
    speedup and efficiency. A configuration whose round fails runs no more rounds."""
    configs = [resolve_nodefile(cfg) for cfg in configs]  # --nodefile
    cleanup_stale()  # namespaces left by a run that was killed (SIGKILL)
    preflight(configs)
    configs = [resolve_compute(cfg, db_path) for cfg in configs]  # the profile replayed
    plans = [compute_plan(cfg, db_path, local_batch(cfg)) for cfg in configs]
    store = open_store(db_path)
    env = capture_environment()
    runs_dir = runs_dir_for(db_path)
    items = [
        Measured(cfg, describe_run(cfg, new_run_id(), runs_dir, env), plan)
        for cfg, plan in zip(configs, plans, strict=True)
    ]
    notify: ProgressHook = on_event or (lambda kind, info: None)
    started = time.monotonic()
    try:
        try:
            number = 1
            while todo := [i for i in items if wants_round(i, number, time.monotonic() - started)]:
                for index, item in enumerate(todo):
                    _one_round(item, number, store, runs_dir, notify, (index, len(todo)))
                number += 1
        except KeyboardInterrupt:
            _store_interrupted(items, store)
            raise
        if configs[0].node_rank != 0:
            return []
        rows = [item.result("ok") for item in items]
        for item, row in zip(items, rows, strict=True):
            if not item.stored:
                store.insert(row)
        return store.with_scaling(rows)
    finally:
        store.close()


def _one_round(
    item: Measured,
    number: int,
    store: ResultStore,
    runs_dir: Path,
    notify: ProgressHook,
    position: tuple[int, int],
) -> None:
    """Round ``number`` of ``item``, stored as ``running`` before and after it."""
    info = {
        "index": position[0],
        "total": position[1],
        "config": item.cfg,
        "round": number,
        "rounds": planned_rounds(item.cfg),
    }
    notify("start", info)
    on_node_0 = item.cfg.node_rank == 0
    if on_node_0:  # stored now, so that a distbench killed mid-run leaves a trace
        running = item.result("running")
        running.extra["orchestrator"] = orchestrator()
        store.insert(running)
    entry = execute_round(item, number, runs_dir, lambda steps: notify("steps", {"done": steps}))
    if entry is None:
        return
    if item.failed or (item.cfg.precision is None and len(item.rounds) >= item.cfg.rounds):
        store.insert(item.result("ok"))  # its last round: the result is final now
        item.stored = True
        notify("done", {**info, "round_result": entry})
        return
    partial = item.result("running")
    partial.extra["orchestrator"] = orchestrator()
    store.insert(partial)
    notify("done", {**info, "round_result": entry})


def _store_interrupted(items: list[Measured], store: ResultStore) -> None:
    """After Ctrl-C: every configuration that had started is stored as failed, saying so."""
    for item in items:
        if not item.rounds or item.stored or item.cfg.node_rank != 0:
            continue
        row = item.result("failed")
        row.status = "failed"
        row.error = row.error or (
            f"interrupted (Ctrl-C or SIGTERM) after {len(item.rounds)} of "
            f"{planned_rounds(item.cfg)} rounds"
        )
        store.insert(row)
