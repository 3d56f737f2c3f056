# mypy: ignore-errors
"""Horovod worker: ``horovodrun --gloo -np N <horovod venv>/bin/python horovod_worker.py JOB``.

Runs inside the Horovod environment (``distbench env install horovod``), which is built on
the main interpreter's packages (``--system-site-packages``: the same torch 2.13), so unlike
the TensorFlow and MXNet workers it may use distbench itself: the model, data and records
are exactly those of the PyTorch strategies (``build_workload``, ``RankRecorder``), and only
the distribution differs. Start at ``run``.

The step: forward, backward (Horovod's ``DistributedOptimizer`` hooks start a ring
all-reduce of each gradient as soon as it is ready, overlapping the backward pass, like
DDP's buckets), ``synchronize`` (waits for the all-reduces still running: the *exposed*
communication, charged to ``comm``), then the SGD update. ``strategy`` ``sequential`` runs
one process without Horovod, the baseline.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import torch

from distbench.config import RunConfig
from distbench.measurement.memory import process_peak_rss
from distbench.measurement.records import RankRecorder
from distbench.measurement.timer import PhaseTimer
from distbench.profiling.operators import OperatorProfiler
from distbench.registry import resolved_threads
from distbench.strategies.common import build_workload, fetch_batch, record_step
from distbench.strategies.convergence import Convergence, goal_for


def _step(work, timer: PhaseTimer, optimizer, distributed: bool) -> float:
    timer.start_step()
    x, y = fetch_batch(work, torch.device("cpu"))
    timer.mark("data")
    loss = work.loss_fn(work.model(x), y)
    timer.mark("forward")
    optimizer.zero_grad()  # Horovod's wrapper takes no set_to_none
    loss.backward()
    timer.mark("backward")
    if distributed:
        optimizer.synchronize()
        timer.mark("comm")
        with optimizer.skip_synchronize():
            optimizer.step()
    else:
        optimizer.step()
    timer.mark("update")
    return float(loss.detach())


def _goal(cfg: RunConfig, work, rank: int, size: int, hvd) -> Convergence:
    """Training to a target or for epochs as on a PyTorch rank (``strategies/convergence.py``):
    rank 0 evaluates its replica; Horovod broadcasts the decision."""
    goal = goal_for(cfg, rank, size, work.model, torch.device("cpu"), cfg.batch_size * size)
    if hvd is not None:
        flag = torch.zeros(1, dtype=torch.int32)

        def agree(reached: bool) -> bool:
            flag.fill_(1 if reached else 0)
            return bool(hvd.broadcast(flag, root_rank=0, name="distbench.stop").item())

        goal.agree = agree
    return goal


def run(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    run_dir = Path(job["run_dir"])
    cfg = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    distributed = cfg.strategy != "sequential"
    rank, size = 0, 1
    if distributed:
        import horovod
        import horovod.torch as hvd

        hvd.init()
        rank, size = hvd.rank(), hvd.size()
    torch.set_num_threads(resolved_threads(cfg))
    recorder = RankRecorder(run_dir, rank, framework="horovod", threads=cfg.threads)
    try:
        work = build_workload(cfg, torch.device("cpu"), cfg.batch_size, rank, size)
        optimizer = work.optimizer
        if distributed:
            hvd.broadcast_parameters(work.model.state_dict(), root_rank=0)
            optimizer = hvd.DistributedOptimizer(
                optimizer, named_parameters=work.model.named_parameters(), op=hvd.Average
            )
        # --profile-ops: the PyTorch profiler, exactly as on a PyTorch rank.
        profiler = (
            OperatorProfiler(cfg, run_dir, rank, torch.device("cpu")).attach(recorder)
            if cfg.profile_ops
            else None
        )
        timer = PhaseTimer()
        goal = _goal(cfg, work, rank, size, hvd if distributed else None)
        for step in goal.steps():
            loss = _step(work, timer, optimizer, distributed)
            seconds = record_step(recorder, cfg, step, timer, cfg.batch_size, loss=loss)
            goal.after_step(step, seconds, loss)
        if profiler is not None:
            profiler.finish()
        extra = {
            "engine": "Horovod ring all-reduce over gloo"
            if distributed
            else "one process, no Horovod",
            "comm": "exposed all-reduce only (the rest overlaps backward)",
        }
        if distributed:
            extra["framework_versions"] = {
                "horovod": horovod.__version__,
                "torch": torch.__version__,
            }
        extra.update(goal.summary())
        recorder.summary(
            peak_rss_bytes=process_peak_rss(),  # evaluations measured apart
            allocated_peak_bytes=None,
            reserved_peak_bytes=None,
            extra=extra,
        )
    except Exception as exc:
        recorder.error(f"rank {rank}: {type(exc).__name__}: {exc}")
        raise
    finally:
        recorder.close()
    if distributed:
        hvd.shutdown()


def main() -> int:
    try:
        run(sys.argv[1])
    except Exception:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
