"""Launch an adapter run: the framework's own processes, in its own environment.

Start at ``launch_adapter`` (the harness calls it instead of torchrun when ``framework`` is
not ``torch``). It prepares, in the main environment, what every framework gets alike:

- ``spec.json``: the architecture of the zoo model (``spec.py``);
- ``weights.npz``: the model's initial weights, built by PyTorch from ``cfg.seed`` exactly as
  the PyTorch strategies build them, converted to the framework's layout (``weights.py``);
- ``batches_rank{R}.npz``: rank R's first batches from distbench's own data pipeline (the
  same shard and order as a PyTorch rank), in the framework's layout;
- with ``--target-accuracy`` or ``--epochs``, ``held_out.npz``: the test split, and in the
  job the stopping rule's settings (``goal_job``), so the worker trains to the goal by the
  same rule as a PyTorch rank (``measurement/goal.py``);
- ``job.json``: everything else;

then starts the processes the strategy needs (workers, parameter servers, a scheduler or a
coordinator; ``PROCESS_PLANS``), each with its own log under ``logs/``, waits with the
run's timeout, and stops every process it started (process groups; SIGTERM, then SIGKILL).
The workers write ``rank{R}.jsonl`` in the harness's record format, so the harness
aggregates and stores the run like any other.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from distbench.config import RunConfig
from distbench.frameworks import adapter_strategy, get_adapter
from distbench.frameworks.adapter_common import op_events_file
from distbench.frameworks.envs import require_env
from distbench.frameworks.weights import batch_to_framework, save_npz, to_framework
from distbench.harness.processes import (
    LaunchOutcome,
    earliest_recorded_error,
    free_port,
    last_log_line,
    rank0_progress,
    spawn,
    stop_all,
    timed_out,
    watch,
    worker_environment,
    write_run_config,
)
from distbench.measurement.records import read_run_records
from distbench.netem.namespaces import loopback_only
from distbench.registry import resolved_threads

#: At most this many bytes of pre-made batches per run; past it, ranks cycle fewer batches.
BATCH_BYTES_LIMIT = 512 * 2**20


@dataclass
class Process:
    """One process to start: a role, its index, extra environment; ``main`` processes are
    the ones whose exit ends the run (servers only serve)."""

    role: str
    index: int
    env: dict[str, str]
    main: bool
    #: A launcher that runs the worker program (``horovodrun ...``), else the env's python.
    launcher: list[str] | None = None


# ------------------------------------------------------------------------------ inputs


def prepare_inputs(cfg: RunConfig, run_dir: Path, threads: int) -> dict[str, Any]:
    """Write spec, weights and batches; returns the job (also written as job.json)."""
    import torch

    from distbench.frameworks.spec import export_spec
    from distbench.strategies.common import build_module, input_shape_of, make_batches

    model, num_classes = build_module(cfg, torch.device("cpu"))
    shape = input_shape_of(cfg)
    spec = export_spec(model, shape, num_classes)
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    save_npz(run_dir / "weights.npz", to_framework(cfg.framework, spec, state))
    batch_paths = []
    goal = goal_job(cfg)
    count = batches_per_rank(cfg, shape, goal)
    for rank in range(cfg.workers):
        stream = make_batches(cfg, cfg.batch_size, rank, cfg.workers, num_classes)
        xs, ys = zip(*(next(stream) for _ in range(count)), strict=True)
        x = batch_to_framework(cfg.framework, torch.stack(xs).numpy())
        path = run_dir / f"batches_rank{rank}.npz"
        save_npz(path, {"x": x, "y": torch.stack(ys).numpy().astype(np.int64)})
        batch_paths.append(str(path))
    job = {
        "mode": "train",
        "framework": cfg.framework,
        "strategy": cfg.strategy,
        "spec": spec,
        "weights": str(run_dir / "weights.npz"),
        "batches": batch_paths,
        "lr": cfg.lr,
        "momentum": cfg.momentum,
        "weight_decay": cfg.weight_decay,
        "steps": cfg.steps,
        "warmup": cfg.warmup,
        "threads": threads,
        "workers": cfg.workers,
        "batch_size": cfg.batch_size,
        "run_dir": str(run_dir),
        "seed": cfg.seed,
        "profile": profile_job(cfg),
        "goal": goal,
    }
    if goal is not None:
        job["held_out"] = write_held_out(cfg, run_dir)
    return job


def goal_job(cfg: RunConfig) -> dict[str, Any] | None:
    """The stopping rule's settings and sizes, as ``adapter_common.job_goal`` reads them:
    a synchronous update trains the global batch, an asynchronous one a worker's batch
    (every worker's steps are separate updates), as on the PyTorch strategies."""
    if not cfg.trains_to_goal:
        return None
    from distbench.measurement.goal import GoalSettings
    from distbench.strategies.evaluation import train_size

    facts = adapter_strategy(cfg.framework, cfg.strategy)
    return {
        "settings": asdict(GoalSettings.of(cfg)),
        "samples_per_step": facts.global_batch(cfg) if facts.synchronous else cfg.batch_size,
        "train_size": train_size(cfg),
        "updaters": 1 if facts.synchronous else cfg.workers,
        "asynchronous": not facts.synchronous,
    }


def write_held_out(cfg: RunConfig, run_dir: Path) -> str:
    """The test split in the framework's layout, for the worker's evaluations."""
    from distbench.strategies.evaluation import held_out_samples

    x, y = held_out_samples(cfg)
    path = run_dir / "held_out.npz"
    save_npz(path, {"x": batch_to_framework(cfg.framework, x.numpy()), "y": y.numpy()})
    return str(path)


def goal_steps(cfg: RunConfig, goal: dict[str, Any]) -> int:
    """The most steps a worker trains to the goal (``Goal.step_limit``)."""
    from distbench.measurement.goal import Goal, GoalSettings

    return Goal(
        GoalSettings.of(goal["settings"]),
        0,
        cfg.workers,
        lambda: (0, 0),
        goal["samples_per_step"],
        goal["train_size"],
        updaters=goal["updaters"],
    ).step_limit


def profile_job(cfg: RunConfig) -> dict[str, int] | None:
    """The operator profiler's window (``--profile-ops``), as the workers read it."""
    if not cfg.profile_ops:
        return None
    from distbench.profiling.operators import profile_window

    window = profile_window(cfg.warmup, cfg.steps)
    return {"wait": window.wait, "warmup": window.warmup, "active": window.active}


def batches_per_rank(
    cfg: RunConfig, shape: tuple[int, int, int], goal: dict[str, Any] | None = None
) -> int:
    """Every step its own batch (to a goal: as many as its most steps), unless that exceeds
    ``BATCH_BYTES_LIMIT`` over all ranks; a worker then cycles through the ones it has."""
    per_batch = 4 * cfg.batch_size * int(np.prod(shape))
    wanted = goal_steps(cfg, goal) if goal else cfg.warmup + cfg.steps
    return max(1, min(wanted, BATCH_BYTES_LIMIT // max(1, per_batch * cfg.workers)))


# ------------------------------------------------------------------------------ process plans


def tensorflow_plan(cfg: RunConfig, job: dict[str, Any]) -> list[Process]:
    if cfg.strategy == "sequential":
        return [Process("worker", 0, {}, True)]
    workers = [f"127.0.0.1:{free_port()}" for _ in range(cfg.workers)]
    if cfg.strategy == "allreduce":
        job["cluster"] = {"worker": workers}
        return [Process("worker", i, {}, True) for i in range(cfg.workers)]
    job["cluster"] = {
        "chief": [f"127.0.0.1:{free_port()}"],
        "worker": workers,
        "ps": [f"127.0.0.1:{free_port()}"],
    }
    servers = [Process("ps", 0, {}, False)]
    servers += [Process("worker", i, {}, False) for i in range(cfg.workers)]
    return [*servers, Process("chief", 0, {}, True)]


#: MXNet runs a hybridized graph in bulked segments that its profiler shows as one
#: ``ImperativeBulk`` event without operator names; profiled runs turn bulking off.
MXNET_UNBULKED = {
    "MXNET_EXEC_BULK_EXEC_TRAIN": "0",
    "MXNET_EXEC_BULK_EXEC_INFERENCE": "0",
    "MXNET_EXEC_BULK_EXEC_MAX_NODE_TRAIN_FWD": "0",
    "MXNET_EXEC_BULK_EXEC_MAX_NODE_TRAIN_BWD": "0",
}


def mxnet_plan(cfg: RunConfig, job: dict[str, Any]) -> list[Process]:
    worker_env = {"DMLC_ROLE": "worker", **(MXNET_UNBULKED if cfg.profile_ops else {})}
    if cfg.strategy == "sequential":
        return [Process("worker", 0, worker_env, True)]
    base = {
        "DMLC_PS_ROOT_URI": "127.0.0.1",
        "DMLC_PS_ROOT_PORT": str(free_port()),
        "DMLC_NUM_SERVER": "1",
        "DMLC_NUM_WORKER": str(cfg.workers),
        "DMLC_NODE_HOST": "127.0.0.1",
    }
    plan = [
        Process("scheduler", 0, {**base, "DMLC_ROLE": "scheduler"}, False),
        Process("server", 0, {**base, "DMLC_ROLE": "server"}, False),
    ]
    return plan + [Process("worker", i, {**base, **worker_env}, True) for i in range(cfg.workers)]


def horovod_plan(cfg: RunConfig, job: dict[str, Any]) -> list[Process]:
    """``horovodrun --gloo`` starts the N workers and their rendezvous; it is the one
    process we start and wait for (it stops its workers when one fails)."""
    if cfg.strategy == "sequential":
        return [Process("worker", 0, {}, True)]
    python = require_env("horovod")
    runner = [
        str(python.parent / "horovodrun"),
        "--gloo",
        "-np",
        str(cfg.workers),
        "-H",
        f"localhost:{cfg.workers}",
        "--start-timeout",
        "120",
        "--network-interface",
        "lo",
        str(python),
    ]
    return [Process("horovodrun", 0, {}, True, launcher=runner)]


PROCESS_PLANS: dict[str, Callable[[RunConfig, dict[str, Any]], list[Process]]] = {
    "tensorflow": tensorflow_plan,
    "mxnet": mxnet_plan,
    "horovod": horovod_plan,
}


# ------------------------------------------------------------------------------ running


def _start(
    python: Path,
    worker: Path,
    job_path: Path,
    proc: Process,
    threads: int,
    log_dir: Path,
    inside: list[str],
) -> subprocess.Popen[bytes]:
    env = worker_environment(threads)
    env.update(proc.env)
    env.update(
        {
            "DISTBENCH_ROLE": proc.role,
            "DISTBENCH_INDEX": str(proc.index),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "MXNET_CPU_WORKER_NTHREADS": "1",
            "PYTHONWARNINGS": "ignore",
        }
    )
    env.pop("TF_CONFIG", None)
    argv = [*inside, *(proc.launcher or [str(python)]), str(worker), str(job_path)]
    return spawn(argv, env, log=log_dir / f"{proc.role}{proc.index}.log")


#: Frameworks whose servers listen on every interface whatever address they are given
#: (TensorFlow's gRPC servers bind ``[::]``; horovodrun's rendezvous binds the wildcard).
BINDS_EVERY_INTERFACE = ("tensorflow", "horovod")


def launch_adapter(
    cfg: RunConfig, run_dir: Path, on_progress: Callable[[int], None] | None = None
) -> LaunchOutcome:
    """Run every process of an adapter run to completion, failure or timeout, inside a
    namespace of its own that has only loopback, so that no server of the run can be
    reached from another host (where namespaces cannot be made, with a warning for the
    frameworks that would listen on every interface)."""
    with loopback_only() as inside:
        if inside is None and cfg.framework in BINDS_EVERY_INTERFACE and cfg.workers > 1:
            sys.stderr.write(
                f"warning: {cfg.framework}'s servers listen on every interface and this run "
                "cannot be put in a loopback-only network namespace (that needs root); "
                "other hosts can reach them while it runs (docs/security.md)\n"
            )
        return _launch_adapter(cfg, run_dir, on_progress, inside or [])


def _launch_adapter(
    cfg: RunConfig,
    run_dir: Path,
    on_progress: Callable[[int], None] | None,
    inside: list[str],
) -> LaunchOutcome:
    adapter = get_adapter(cfg.framework)
    adapter_strategy(cfg.framework, cfg.strategy)
    python = require_env(adapter.env)
    threads = resolved_threads(cfg)
    write_run_config(run_dir, cfg.replace(threads=threads).to_dict())
    started = time.monotonic()
    # Horovod runs PyTorch's own model and data (horovod_worker.py); the others get them here.
    job = (
        prepare_inputs(cfg, run_dir, threads)
        if cfg.framework != "horovod"
        else {"mode": "train", "run_dir": str(run_dir)}
    )
    plan = PROCESS_PLANS[cfg.framework](cfg, job)
    job_path = run_dir / "job.json"
    job_path.write_text(json.dumps(job))
    log_dir = run_dir / "logs"
    log_dir.mkdir(exist_ok=True)
    popens: list[subprocess.Popen[bytes]] = []
    try:
        for proc in plan:
            popens.append(
                _start(python, adapter.worker_path, job_path, proc, threads, log_dir, inside)
            )
    except BaseException:
        stop_all(popens)
        raise
    seen = watch(
        popens,
        cfg.timeout,
        on_poll=rank0_progress(run_dir, on_progress),
        # servers and schedulers may outlive the workers; the main processes decide
        finished=lambda: all(
            p.poll() == 0 for p, proc in zip(popens, plan, strict=True) if proc.main
        ),
        started=started,
    )
    elapsed = time.monotonic() - started
    if seen.timed_out:
        return timed_out(cfg.timeout, elapsed, "processes")
    if seen.failed is not None:
        failed = plan[seen.failed]
        return LaunchOutcome(1, diagnose(run_dir, f"{failed.role}{failed.index}"), elapsed)
    if cfg.profile_ops:
        summarize_op_events(cfg, run_dir)
    return LaunchOutcome(0, None, elapsed)


# ------------------------------------------------------------------------------ operator profiles


def summarize_op_events(cfg: RunConfig, run_dir: Path) -> list[Path]:
    """Turn each rank's ``op_events_rank{R}.json`` (written by a TensorFlow or MXNet worker)
    into the ``operators_rank{R}.json`` summary a PyTorch rank writes, charging operators
    to phases by the rank's own step records; writes a Chrome trace where the framework's
    profiler left none. Horovod ranks run ``OperatorProfiler`` themselves."""
    from distbench.profiling.operators import (
        OpEvent,
        operators_file,
        profile_window,
        summarize_events,
        trace_file,
    )

    recorded = profile_window(cfg.warmup, cfg.steps).recorded
    records = read_run_records(run_dir)
    written = []
    for rank, rank_records in records.items():
        source = op_events_file(run_dir, rank)
        if not source.is_file():
            continue
        data = json.loads(source.read_text(encoding="utf-8"))
        events = [
            OpEvent(e["name"], float(e["start_s"]), float(e["self_us"]), float(e["total_us"]))
            for e in data["events"]
        ]
        steps = [r for r in rank_records.steps if r["step"] in recorded]
        trace = trace_file(run_dir, rank)
        if not trace.is_file():
            write_chrome_trace(trace, data["events"])
        summary = summarize_events(events, steps)
        summary.update(
            rank=rank,
            device="cpu",
            trace=trace.name,
            framework=cfg.framework,
            source=data.get("source"),
        )
        operators_file(run_dir, rank).write_text(json.dumps(summary), encoding="utf-8")
        written.append(operators_file(run_dir, rank))
    return written


def write_chrome_trace(path: Path, events: list[dict[str, Any]]) -> None:
    """Complete ("X") events, one row per profiler thread: open in ui.perfetto.dev."""
    threads = {name: index for index, name in enumerate(sorted({e["thread"] for e in events}))}
    trace = [
        {
            "name": e["name"],
            "ph": "X",
            "ts": e["start_s"] * 1e6,
            "dur": e["total_us"],
            "pid": 0,
            "tid": threads[e["thread"]],
            "args": {"self_us": e["self_us"]},
        }
        for e in events
    ]
    path.write_text(json.dumps({"traceEvents": trace, "displayTimeUnit": "ms"}), encoding="utf-8")


def diagnose(run_dir: Path, process: str) -> str:
    """The earliest error a rank recorded, else the failed process's last log line."""
    recorded = earliest_recorded_error(run_dir)
    if recorded:
        return recorded
    log = run_dir / "logs" / f"{process}.log"
    return f"{process} failed: {last_log_line(log) or 'no output'} (log: {log})"
