"""Exports of result rows: CSV (the summary columns plus one column per phase) and JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

from distbench.measurement.rounds import SAME
from distbench.measurement.timer import PHASES
from distbench.store.result import RunResult

SUMMARY_COLUMNS = (
    "run_id",
    "status",
    "model",
    "dataset",
    "strategy",
    "framework",
    "workers",
    "threads_per_worker",
    "global_batch",
    "local_batch",
    "scaling",
    "throughput_median",
    "throughput_ci_low",
    "throughput_ci_high",
    "step_time_median",
    "step_time_p90",
    "rounds",
    "speedup",
    "speedup_ci_low",
    "speedup_ci_high",
    "speedup_verdict",
    "efficiency",
    "baseline_run_id",
    "comm_total",
    "peak_rss_bytes",
    "oversubscribed",
    "final_loss",
    "error",
    "created_at",
)


#: Training to a target (``--target-accuracy``): columns added when any row has one.
GOAL_COLUMNS = (
    "target_accuracy",
    "reached",
    "steps_to_accuracy",
    "time_to_accuracy_s",
    "epochs_to_accuracy",
    "final_accuracy",
)


def goal_columns(rows: Sequence[RunResult]) -> tuple[str, ...]:
    return GOAL_COLUMNS if any(row.extra.get("convergence") for row in rows) else ()


def phases_present(rows: Sequence[RunResult]) -> list[str]:
    seen = {p for row in rows for p, v in row.breakdown.items() if v}
    return [p for p in PHASES if p in seen]


def to_csv(rows: Sequence[RunResult]) -> str:
    phases = phases_present(rows)
    goals = goal_columns(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*SUMMARY_COLUMNS, *goals, *(f"{p}_s" for p in phases)])
    for row in rows:
        goal = row.extra.get("convergence") or {}
        writer.writerow(
            [summary_value(row, c) for c in SUMMARY_COLUMNS]
            + [goal.get(c) for c in goals]
            + [row.breakdown.get(p, 0.0) for p in phases]
        )
    return buffer.getvalue()


def summary_value(row: RunResult, column: str) -> object:
    """A CSV cell: a field, or one derived from the rounds and the speedup's interval."""
    if column == "rounds":
        return len(row.rounds) or 1
    if column in ("speedup_ci_low", "speedup_ci_high"):
        return None if row.speedup_ci is None else row.speedup_ci[column.endswith("high")]
    return getattr(row, column)


def to_json(rows: Sequence[RunResult]) -> str:
    return json.dumps([row.to_dict() for row in rows], indent=2, default=str)


def throughput_text(row: RunResult) -> str:
    """``"512.3 (498.1-530.0)"``; one round has no interval to show."""
    if row.throughput_ci_low is None or row.throughput_ci_high is None:
        return f"{row.throughput_median or 0:.1f} (-)"
    low, high = row.throughput_ci_low, row.throughput_ci_high
    return f"{row.throughput_median or 0:.1f} ({low:.1f}-{high:.1f})"


def rounds_text(row: RunResult) -> str:
    """Rounds, with ``!k`` when k of them ran beside other load."""
    busy = sum(1 for r in row.rounds if r.get("busy"))
    count = len(row.rounds) or 1
    return f"{count} !{busy}" if busy else str(count)


def speedup_text(row: RunResult) -> str:
    """``"1.41 (1.30-1.52)"``, and ``"= 1.04 (0.93-1.12)"`` when the interval contains 1:
    no measurable difference from the baseline."""
    if row.speedup is None:
        return "-"
    if row.speedup_ci is None:
        return f"{row.speedup:.2f}"
    low, high = row.speedup_ci
    same = "= " if row.speedup_verdict == SAME else ""
    return f"{same}{row.speedup:.2f} ({low:.2f}-{high:.2f})"
