"""MLPerf-style logs of stored runs: ``:::MLLOG`` lines written with the ``mlperf-logging``
package's logger and keys, so tools that read MLPerf training logs read distbench's.

Start at :func:`to_mllog`. Per run: ``submission_benchmark`` (the model),
``global_batch_size`` and ``opt_base_learning_rate``, then ``run_start``, one
``eval_accuracy`` per evaluation of a run trained to a target (``metadata.epoch_num``: the
epochs trained so far) and ``run_stop`` with ``metadata.status`` ``success`` (the target
reached, or a run without one that completed) or ``aborted``. The clock is *training*
time: ``time_ms`` is the run's start plus the training seconds before the event, with
evaluations left out, so ``run_stop − run_start`` is the stored time to accuracy (for a
run without a target, its whole duration).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from mlperf_logging.mllog import constants
from mlperf_logging.mllog.mllog import MLLogger

from distbench.analysis.convergence import Goal, goal_of
from distbench.store.result import RunResult


def to_mllog(rows: Sequence[RunResult]) -> str:
    """Every run's ``:::MLLOG`` lines, one run after another."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    logger = logging.getLogger(f"distbench.mllog.{id(buffer)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        # metadata.file names the call site; relative to the package, not this machine
        root = str(Path(__file__).resolve().parents[1])
        mllogger = MLLogger(logger=logger, default_stack_offset=1, root_dir=root)
        for row in rows:
            _log_run(mllogger, row)
    finally:
        logger.removeHandler(handler)
    return buffer.getvalue()


def _log_run(mllogger: MLLogger, row: RunResult) -> None:
    start_ms = datetime.fromisoformat(row.created_at).timestamp() * 1000
    namespace = row.run_id
    config = row.config or {}

    def event(key: str, value: object, at_s: float = 0.0, **metadata: object) -> None:
        mllogger.event(
            key, value, metadata=metadata or None, namespace=namespace,
            time_ms=start_ms + at_s * 1000,
        )  # fmt: skip

    event(constants.SUBMISSION_BENCHMARK, row.model)
    event(constants.GLOBAL_BATCH_SIZE, row.global_batch)
    event(constants.OPT_BASE_LR, config.get("lr"))
    mllogger.start(constants.RUN_START, namespace=namespace, time_ms=start_ms)
    goal = goal_of(row)
    if goal is not None:
        for point in goal.curve:
            event(
                constants.EVAL_ACCURACY,
                point["accuracy"],
                point["train_s"],
                epoch_num=goal.epochs_at(point["step"]),
                step_num=point["step"],
            )
    stop_s, status = _stop(row, goal)
    mllogger.end(
        constants.RUN_STOP,
        metadata={constants.STATUS: status},
        namespace=namespace,
        time_ms=start_ms + stop_s * 1000,
    )


def _stop(row: RunResult, goal: Goal | None) -> tuple[float, str]:
    """When the run stopped on the training clock, and how."""
    if not row.ok:
        return 0.0, constants.ABORTED
    if goal is None:
        return row.duration_s or 0.0, constants.SUCCESS
    if goal.reached and goal.seconds is not None:
        return goal.seconds, constants.SUCCESS
    last = goal.curve[-1]["train_s"] if goal.curve else 0.0
    # trained for --epochs without a target: it ran its course
    return float(last), constants.SUCCESS if goal.target is None else constants.ABORTED
