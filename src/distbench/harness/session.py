"""Run a list of benchmark configurations and store one result per run.

This is the plain function behind ``distbench run``: it checks everything it can before
the first process starts (so bad input stores nothing), then launches each run, aggregates
its records and stores it, ``ok`` or ``failed`` with the error.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from distbench.config import RunConfig, available_cores
from distbench.data import check_dataset
from distbench.errors import RunFailed, UserError
from distbench.harness.aggregate import aggregate_run
from distbench.harness.environment import capture_environment
from distbench.harness.launchers import launch
from distbench.harness.monitor import compact_timelines
from distbench.measurement.records import read_run_records
from distbench.netem import cleanup_stale, network_info, preflight_network, resolve_nodefile
from distbench.profiling.operators import stored_operators
from distbench.registry import processes, resolved_threads, strategy_facts
from distbench.store import ResultStore, open_store
from distbench.store.db import orchestrator
from distbench.store.result import RunResult

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
    preflight_network(configs)  # emulated hosts: root, iproute2, netem for delay=
    for cfg in configs:  # another framework's environment must be installed
        if cfg.framework != "torch":
            from distbench.frameworks import get_adapter
            from distbench.frameworks.envs import require_env

            require_env(get_adapter(cfg.framework).env)


def describe_run(cfg: RunConfig, run_id: str, run_dir: Path, env: dict[str, Any]) -> RunResult:
    """The facts a run has whether or not it succeeds (status "failed" until it does)."""
    strategy = strategy_facts(cfg.framework, cfg.strategy)
    count = processes(cfg)
    threads = resolved_threads(cfg)
    local_processes = count // cfg.nnodes
    return RunResult(
        run_id=run_id,
        status="failed",
        created_at=datetime.now(UTC).isoformat(),
        run_dir=str(run_dir),
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
        steps=cfg.steps,
        warmup_steps=cfg.warmup,
        oversubscribed=local_processes * threads > available_cores(),
        config=cfg.to_dict(),
        extra={"network": network_info(cfg)},  # rate, hosts, ranks per host
    )


def execute_run(
    cfg: RunConfig,
    store: ResultStore,
    runs_dir: Path,
    env: dict[str, Any],
    on_progress: Callable[[int], None] | None = None,
) -> RunResult | None:
    """Launch one run and store its result; returns it (None on nodes other than rank 0's)."""
    run_id = new_run_id()
    run_dir = runs_dir / run_id
    run_dir.mkdir(parents=True)
    result = describe_run(cfg, run_id, run_dir, env)
    if cfg.node_rank == 0:  # stored now, so that a distbench killed mid-run leaves a trace
        result.status = "running"
        result.extra["orchestrator"] = orchestrator()
        store.insert(result)
        result.status = "failed"
    started = time.monotonic()
    try:
        outcome = launch(cfg, run_dir, on_progress)
    except KeyboardInterrupt:  # the launcher has stopped every rank; keep the record
        result.error = "interrupted (Ctrl-C or SIGTERM)"
        result.duration_s = time.monotonic() - started
        if cfg.node_rank == 0:
            store.insert(result)
        raise
    result.duration_s = time.monotonic() - started
    if cfg.node_rank != 0:  # node 0 gathers every rank's records and stores the run
        if outcome.returncode != 0:
            raise RunFailed(f"node {cfg.node_rank}: {outcome.error}")
        sys.stderr.write(f"node {cfg.node_rank}: done; node 0 stores the result\n")
        return None
    if outcome.returncode == 0:
        try:
            synchronous = strategy_facts(cfg.framework, cfg.strategy).synchronous
            result.add_metrics(aggregate_run(read_run_records(run_dir), synchronous))
            result.status = "ok"
        except RunFailed as exc:
            result.error = str(exc)
    else:
        result.error = outcome.error
    # Operator profile (--profile-ops) and resource timelines, compact copies.
    result.operators = stored_operators(run_dir, result.governing_rank)
    result.resources = compact_timelines(run_dir)
    store.insert(result)
    return result


def runs_dir_for(db_path: str | Path) -> Path:
    """Run directories (records, logs) live beside the database they belong to."""
    return Path(db_path).resolve().parent / "distbench-runs"


def run_benchmarks(
    configs: list[RunConfig], db_path: str | Path, on_event: ProgressHook | None = None
) -> list[RunResult]:
    """Run every config in order; returns the stored rows with speedup and efficiency."""
    configs = [resolve_nodefile(cfg) for cfg in configs]  # --nodefile
    cleanup_stale()  # namespaces left by a run that was killed (SIGKILL)
    preflight(configs)
    store = open_store(db_path)
    env = capture_environment()
    runs_dir = runs_dir_for(db_path)
    rows: list[RunResult] = []
    notify: ProgressHook = on_event or (lambda kind, info: None)
    try:
        for index, cfg in enumerate(configs):
            notify("start", {"index": index, "total": len(configs), "config": cfg})
            row = execute_run(
                cfg, store, runs_dir, env, lambda steps: notify("steps", {"done": steps})
            )
            if row is not None:
                rows.append(row)
                notify("done", {"index": index, "row": row})
        return store.with_scaling(rows)
    finally:
        store.close()
