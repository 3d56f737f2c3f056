"""Run a list of benchmark configurations and store one result per run.

This is the plain function behind ``distbench run``: it checks everything it can before
the first process starts (so bad input stores nothing), then launches each run, aggregates
its records and stores it, ``ok`` or ``failed`` with the error.
"""

from __future__ import annotations

import os
import secrets
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


def describe_config(cfg: RunConfig) -> dict[str, Any]:
    """The columns a run has whether or not it succeeds."""
    strategy = strategy_facts(cfg.framework, cfg.strategy)
    count = processes(cfg)
    threads = resolved_threads(cfg)
    local_processes = count // cfg.nnodes
    return {
        "model": cfg.model,
        "dataset": cfg.dataset,
        "strategy": cfg.strategy,
        "framework": cfg.framework,
        "workers": cfg.workers,
        "processes": count,
        "threads_per_worker": threads,
        "global_batch": strategy.global_batch(cfg),
        "local_batch": strategy.local_batch(cfg),
        "scaling": strategy.scaling,
        "steps": cfg.steps,
        "warmup_steps": cfg.warmup,
        "oversubscribed": local_processes * threads > available_cores(),
        "config": cfg.to_dict(),
        "extra": {"network": network_info(cfg)},  # rate, hosts, ranks per host
    }


def execute_run(
    cfg: RunConfig,
    store: ResultStore,
    runs_dir: Path,
    env: dict[str, Any],
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, Any] | None:
    """Launch one run and store its result; returns the stored row (None on non-zero nodes)."""
    run_id = new_run_id()
    run_dir = runs_dir / run_id
    run_dir.mkdir(parents=True)
    row: dict[str, Any] = {
        "run_id": run_id,
        "created_at": datetime.now(UTC).isoformat(),
        "run_dir": str(run_dir),
        "env": env,
        **describe_config(cfg),
    }
    started = time.monotonic()
    try:
        outcome = launch(cfg, run_dir, on_progress)
    except KeyboardInterrupt:  # the launcher has stopped every rank; keep the record
        row.update(
            status="failed",
            error="interrupted (Ctrl-C or SIGTERM)",
            duration_s=time.monotonic() - started,
        )
        if cfg.node_rank == 0:
            store.insert(row)
        raise
    row["duration_s"] = time.monotonic() - started
    if cfg.node_rank != 0:
        return None  # the node with rank 0 gathers every rank's records and stores the run
    if outcome.returncode == 0:
        try:
            network = row["extra"]["network"]
            row.update(
                aggregate_run(
                    read_run_records(run_dir),
                    strategy_facts(cfg.framework, cfg.strategy).synchronous,
                )
            )
            row["extra"] = {**(row.get("extra") or {}), "network": network}
            row.update(status="ok", error=None)
        except RunFailed as exc:
            row.update(status="failed", error=str(exc))
    else:
        row.update(status="failed", error=outcome.error)
    # Operator profile (--profile-ops) and resource timelines, compact copies.
    row.update(
        operators=stored_operators(run_dir, row.get("governing_rank")),
        resources=compact_timelines(run_dir),
    )
    store.insert(row)
    return row


def runs_dir_for(db_path: str | Path) -> Path:
    """Run directories (records, logs) live beside the database they belong to."""
    return Path(db_path).resolve().parent / "distbench-runs"


def run_benchmarks(
    configs: list[RunConfig], db_path: str | Path, on_event: ProgressHook | None = None
) -> list[dict[str, Any]]:
    """Run every config in order; returns the stored rows with speedup and efficiency."""
    configs = [resolve_nodefile(cfg) for cfg in configs]  # --nodefile
    cleanup_stale()  # namespaces left by a run that was killed (SIGKILL)
    preflight(configs)
    store = open_store(db_path)
    env = capture_environment()
    runs_dir = runs_dir_for(db_path)
    rows: list[dict[str, Any]] = []
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
