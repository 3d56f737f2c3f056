"""Exports of result rows: CSV (the summary columns plus one column per phase) and JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

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
    "speedup",
    "efficiency",
    "baseline_run_id",
    "comm_total",
    "peak_rss_bytes",
    "oversubscribed",
    "final_loss",
    "error",
    "created_at",
)


def phases_present(rows: Sequence[RunResult]) -> list[str]:
    seen = {p for row in rows for p, v in row.breakdown.items() if v}
    return [p for p in PHASES if p in seen]


def to_csv(rows: Sequence[RunResult]) -> str:
    phases = phases_present(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*SUMMARY_COLUMNS, *(f"{p}_s" for p in phases)])
    for row in rows:
        writer.writerow(
            [getattr(row, c) for c in SUMMARY_COLUMNS] + [row.breakdown.get(p, 0.0) for p in phases]
        )
    return buffer.getvalue()


def to_json(rows: Sequence[RunResult]) -> str:
    return json.dumps([row.to_dict() for row in rows], indent=2, default=str)
