"""The program torchrun starts on every rank: ``python -m distbench.harness.worker RUN_DIR``.

It reads ``RUN_DIR/config.json``, sets threads and seed, joins the process group, runs the
strategy, and writes records. Any exception is written as an ``error`` record before the
process exits non-zero, so the launcher can store the cause. Every gloo program ends with
``barrier()`` then ``destroy_process_group()``; without the barrier gloo can abort at exit.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from distbench.compute.emulated import make_compute
from distbench.config import RunConfig
from distbench.harness.monitor import ResourceMonitor, resources_file
from distbench.harness.stacks import enable_stack_dumps
from distbench.measurement.memory import process_peak_allocated, process_peak_rss
from distbench.measurement.records import RankRecorder, rank_file
from distbench.profiling.operators import OperatorProfiler
from distbench.registry import resolved_threads
from distbench.strategies.base import WorkerContext
from distbench.strategies.registry import STRATEGIES


def pick_device(cfg: RunConfig, local_rank: int) -> torch.device:
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def memory_summary(device: torch.device) -> dict[str, int | None]:
    """Peak RSS of this process and, on CUDA, the allocator's peaks (outside evaluations:
    ``measurement/memory.py``; the reserved peak includes them)."""
    peak_rss = process_peak_rss()  # evaluations to a target are measured apart
    allocated = reserved = None
    if device.type == "cuda":
        allocated = process_peak_allocated(device)
        reserved = int(torch.cuda.max_memory_reserved(device))
    return {
        "peak_rss_bytes": int(peak_rss),
        "allocated_peak_bytes": allocated,
        "reserved_peak_bytes": reserved,
    }


def save_weights(path: str, weights: dict[str, np.ndarray]) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    np.savez(target, **weights)  # type: ignore[arg-type]


def gather_records_to_rank0(run_dir: Path, rank: int, world_size: int) -> None:
    """On multi-node runs, rank 0's run directory receives every rank's records."""
    text = rank_file(run_dir, rank).read_text(encoding="utf-8")
    gathered: list[Any] | None = [None] * world_size if rank == 0 else None
    dist.gather_object(text, gathered, dst=0)
    if gathered is not None:
        for other, content in enumerate(gathered):
            if other != rank and isinstance(content, str):
                rank_file(run_dir, other).write_text(content, encoding="utf-8")


def init_group(cfg: RunConfig, device: torch.device) -> None:
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=cfg.timeout))


def run_rank(run_dir: Path) -> None:
    cfg = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    threads = resolved_threads(cfg)
    torch.set_num_threads(threads)
    strategy_cls = STRATEGIES[cfg.strategy]
    device = pick_device(cfg, local_rank)
    # A server rank (ps-* with a central server) is left out of step times by aggregation.
    role = strategy_cls.rank_role(cfg, rank)
    recorder = RankRecorder(run_dir, rank, role=role, framework=cfg.framework, threads=threads)
    enable_stack_dumps(run_dir, rank)  # where this rank waits, if the launcher must stop it
    # A resource timeline on every rank (a background sampler thread, off the
    # training step) and, with --profile-ops only, torch.profiler driven by the recorder.
    monitor = ResourceMonitor(resources_file(run_dir, rank)).start()
    # Worker ranks only: a central PS server records its updates from serving threads.
    profiler = (
        OperatorProfiler(cfg, run_dir, rank, device).attach(recorder)
        if cfg.profile_ops and role == "worker"
        else None
    )
    try:
        if strategy_cls.uses_process_group:
            init_group(cfg, device)
        # Emulated compute draws differently on every rank and in every round.
        seed = f"{cfg.seed}:{rank}:{run_dir.resolve()}"
        compute = make_compute(cfg.compute, run_dir, seed, strategy_cls.local_batch(cfg))
        ctx = WorkerContext(cfg, rank, world, local_rank, device, run_dir, recorder, compute)
        strategy = strategy_cls(ctx)
        strategy.run()
        if profiler is not None:
            profiler.finish()  # writes trace_rank{R}.json and operators_rank{R}.json
        weights = strategy.final_weights() if cfg.save_weights else None
        if weights is not None and cfg.save_weights:
            save_weights(cfg.save_weights, weights)
        extra = strategy.summary_extra()
        if compute.emulated and role == "worker":
            extra["compute"] = compute.summary()
        recorder.summary(**memory_summary(device), extra=extra)
    except Exception as exc:
        recorder.error(f"rank {rank}: {type(exc).__name__}: {exc}")
        raise
    finally:
        if profiler is not None:
            profiler.stop()
        monitor.stop()
        recorder.close()
    if strategy_cls.uses_process_group:
        if cfg.nnodes > 1:
            gather_records_to_rank0(run_dir, rank, world)
        # A strategy that went on after losing a peer (ps-async) has already synchronised
        # the survivors itself; a barrier would wait for the dead rank until the timeout.
        if not strategy.peers_lost:
            dist.barrier()
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        run_rank(Path(args[0]))
    except Exception:
        traceback.print_exc()
        return 1
    return 0


def exit_now(code: int) -> None:
    """Leave without the interpreter's finalization: with torch loaded it takes about a
    second on a 2-core machine, paid by every rank in every round (launch overhead that
    dominates short rounds). By now records are closed, the monitor and profiler are
    stopped and the process group is destroyed: nothing at exit has work left."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
