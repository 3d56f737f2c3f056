"""Stored runs exported to TensorBoard, written with TensorBoard's own event-file writer.

Start at :func:`export_tensorboard`. Each run becomes a directory ``DIR/<run id>`` (one
"run" in TensorBoard's run selector) holding one event file with:

- **HParams**: the run's configuration (model, dataset, strategy, framework, workers,
  batches, learning rate, compute, network, seed, status) beside its headline figures, so
  TensorBoard's HParams tab ranks configurations;
- **figures** (scalars at step 0): ``figures/samples_per_s``, ``figures/step_time_s``,
  ``figures/speedup``, ``figures/efficiency``, ``figures/peak_rss_mib`` and, for a run
  trained to a goal, ``convergence/time_to_accuracy_s``, ``convergence/final_accuracy``;
- **curves**: ``rounds/samples_per_s`` per round; ``steps/step_time_s`` and
  ``steps/<phase>_s`` per recorded step of the governing rank in the round the figures
  come from (from the run directory, while it exists); ``convergence/accuracy`` and
  ``convergence/loss`` per evaluation, at the updates trained, with the training seconds as
  wall time (TensorBoard's "relative" axis then reads training time);
  ``resources/rank<R>/cpu_percent`` and ``resources/rank<R>/rss_mib`` per sample;
- **text**: ``config`` and ``environment`` (JSON) and, for a failed run, ``error``.

Nothing here is computed anew: every value is the stored one, as ``distbench results``
shows it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from distbench.errors import UserError
from distbench.harness.session import round_directory
from distbench.measurement.records import read_run_records
from distbench.store.result import RunResult

MIB = 2**20
#: Configuration keys shown as hyper-parameters (those a reader compares runs by).
HPARAM_KEYS = (
    "model",
    "dataset",
    "strategy",
    "framework",
    "workers",
    "batch_size",
    "lr",
    "momentum",
    "threads",
    "compute",
    "network",
    "seed",
    "servers",
    "microbatches",
)


def _writer(directory: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # the tensorboard package is a dependency; say so if gone
        raise UserError(
            f"--export tensorboard needs the tensorboard package ({exc}); pip install tensorboard"
        ) from exc
    return SummaryWriter(log_dir=str(directory))


def export_tensorboard(rows: Sequence[RunResult], out_dir: str | Path) -> list[Path]:
    """One TensorBoard run directory per stored run under ``out_dir``; returns them."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--export tensorboard: {out} exists and is not a directory")
    written = []
    for row in rows:
        directory = out / row.run_id
        writer = _writer(directory)
        try:
            _write_run(writer, row)
        finally:
            writer.close()
        written.append(directory)
    return written


def _write_run(writer: Any, row: RunResult) -> None:
    start = datetime.fromisoformat(row.created_at).timestamp()
    figures = headline_figures(row)
    _write_hparams(writer, hyper_parameters(row), figures)
    for tag, value in figures.items():
        writer.add_scalar(tag, value, 0, walltime=start)
    writer.add_text("config", _json_block(row.config or {}), 0, walltime=start)
    writer.add_text("environment", _json_block(row.env or {}), 0, walltime=start)
    if row.error:
        writer.add_text("error", row.error, 0, walltime=start)
    for tag, step, value, when in curves(row, start):
        writer.add_scalar(tag, value, step, walltime=when)


def _write_hparams(writer: Any, params: dict[str, Any], metrics: dict[str, float]) -> None:
    """TensorBoard's HParams records in this run's own event file (``add_hparams`` would
    open a sub-run per call)."""
    from torch.utils.tensorboard.summary import hparams

    experiment, start, end = hparams(params, metrics)
    for summary in (experiment, start, end):
        writer.file_writer.add_summary(summary)


def _json_block(data: dict[str, Any]) -> str:
    # TensorBoard renders text as Markdown: indented lines are shown as code
    text = json.dumps(data, indent=2, sort_keys=True, default=str)
    return "\n".join("    " + line for line in text.splitlines())


def hyper_parameters(row: RunResult) -> dict[str, Any]:
    """The configuration keys a reader compares runs by, as TensorBoard takes them
    (numbers, strings, booleans), and the run's status."""
    config = row.config or {}
    params: dict[str, Any] = {"status": row.status, "run_id": row.run_id}
    for key in HPARAM_KEYS:
        value = config.get(key, getattr(row, key, None))
        if value is None:
            continue
        params[key] = value if isinstance(value, bool | int | float | str) else str(value)
    return params


def headline_figures(row: RunResult) -> dict[str, float]:
    """The stored figures a run is judged by; those it does not have are left out."""
    goal = (row.extra or {}).get("convergence") or {}
    candidates = {
        "figures/samples_per_s": row.throughput_median,
        "figures/step_time_s": row.step_time_median,
        "figures/speedup": row.speedup,
        "figures/efficiency": row.efficiency,
        "figures/peak_rss_mib": row.peak_rss_bytes / MIB if row.peak_rss_bytes else None,
        "convergence/time_to_accuracy_s": goal.get("time_to_accuracy_s"),
        "convergence/final_accuracy": goal.get("final_accuracy"),
    }
    return {tag: float(value) for tag, value in candidates.items() if value is not None}


Point = tuple[str, int, float, float]  # tag, step, value, wall time


def curves(row: RunResult, start: float) -> list[Point]:
    """Every curve of a run as (tag, step, value, wall time) points."""
    return [
        *_round_points(row, start),
        *_step_points(row),
        *_convergence_points(row, start),
        *_resource_points(row),
    ]


def _round_points(row: RunResult, start: float) -> list[Point]:
    return [
        ("rounds/samples_per_s", int(r["round"]), float(r["throughput"]), start)
        for r in row.rounds
        if r.get("throughput") is not None
    ]


def _step_points(row: RunResult) -> list[Point]:
    """The governing rank's recorded steps (warm-up included, as they were run) in the
    round whose figures the result reports, while its run directory exists."""
    run_dir = round_directory(row)
    if not run_dir.is_dir():
        return []
    records = read_run_records(run_dir).get(row.governing_rank or 0)
    if records is None:
        return []
    points: list[Point] = []
    for step in records.steps:
        when = float(step["t"]) + float(step["step_time"])
        points.append(("steps/step_time_s", int(step["step"]), float(step["step_time"]), when))
        for phase, seconds in (step.get("phases") or {}).items():
            points.append((f"steps/{phase}_s", int(step["step"]), float(seconds), when))
    return points


def _convergence_points(row: RunResult, start: float) -> list[Point]:
    goal = (row.extra or {}).get("convergence") or {}
    points: list[Point] = []
    for point in goal.get("curve") or []:
        when = start + float(point["train_s"])
        points.append(("convergence/accuracy", int(point["step"]), float(point["accuracy"]), when))
        if point.get("loss") is not None:
            points.append(("convergence/loss", int(point["step"]), float(point["loss"]), when))
    return points


def _resource_points(row: RunResult) -> list[Point]:
    resources = row.resources or {}
    origin = float(resources.get("t0") or 0.0)
    points: list[Point] = []
    for rank, series in (resources.get("ranks") or {}).items():
        for index, (t, cpu, rss) in enumerate(
            zip(series["t"], series["cpu_percent"], series["rss_bytes"], strict=False)
        ):
            when = origin + float(t)
            points.append((f"resources/rank{rank}/cpu_percent", index, float(cpu), when))
            points.append((f"resources/rank{rank}/rss_mib", index, float(rss) / MIB, when))
    return points
