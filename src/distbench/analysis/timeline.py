"""One timeline of a run: every rank (and server) as a process track of a Chrome trace.

A run directory holds one record file per rank (``rank{R}.jsonl``: each step's wall-clock
start ``t`` and its phases, in the order they were marked) and, with ``--profile-ops``, one
``torch.profiler`` trace per worker rank (``trace_rank{R}.json``, its times relative to
``baseTimeNanoseconds``). ``merged_trace`` puts them on one clock — the wall clock every
record and profiler event on a host uses, shifted so the run starts at 0 — as a Chrome
trace (the JSON object format Perfetto and ``chrome://tracing`` read):

- one process per rank, named ``rank R (role) on host``;
- thread 1, ``distbench steps``: a slice per step (``step N``, warm-up and profiled steps
  say so) with its phases (data, forward, backward, comm, wait, update, pull, push, …)
  nested inside it;
- thread 2, ``operators``: the profiler's operator slices of that rank, where it ran with
  ``--profile-ops``, on the same clock, so each lines up under the phase it ran in.

Ranks on different hosts of a real cluster are aligned only as well as the hosts' clocks
agree (NTP: typically within a millisecond); ranks on one machine or on emulated hosts
share one clock.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distbench.measurement.records import read_run_records
from distbench.profiling.operators import trace_file

STEPS_THREAD, OPERATORS_THREAD = 1, 2


def _us(seconds: float, origin: float) -> float:
    return round((seconds - origin) * 1e6, 3)


def step_events(rank: int, steps: list[dict[str, Any]], origin: float) -> list[dict[str, Any]]:
    """A slice per step and, inside it, one per phase, back to back from the step's start."""
    events: list[dict[str, Any]] = []
    for record in steps:
        start = float(record["t"])
        phases = {str(k): float(v) for k, v in (record.get("phases") or {}).items()}
        label = f"step {record.get('step')}"
        if record.get("warmup"):
            label += " (warm-up)"
        if record.get("profiled"):
            label += " (profiled)"
        total = float(record.get("step_time") or sum(phases.values()))
        events.append(_slice(label, "step", rank, STEPS_THREAD, start, total, origin))
        for phase, seconds in phases.items():
            events.append(_slice(phase, "phase", rank, STEPS_THREAD, start, seconds, origin))
            start += seconds
    return events


def _slice(
    name: str, category: str, pid: int, tid: int, start: float, seconds: float, origin: float
) -> dict[str, Any]:
    return {
        "ph": "X",
        "name": name,
        "cat": category,
        "pid": pid,
        "tid": tid,
        "ts": _us(start, origin),
        "dur": round(seconds * 1e6, 3),
    }


def operator_events(rank: int, path: Path, origin: float) -> list[dict[str, Any]]:
    """The profiler's complete slices of one rank, moved onto the run's clock."""
    data = json.loads(path.read_text(encoding="utf-8"))
    base = float(data.get("baseTimeNanoseconds", 0)) / 1e9
    events = []
    for event in data.get("traceEvents", []):
        if event.get("ph") != "X" or "ts" not in event:
            continue
        start = base + float(event["ts"]) / 1e6
        events.append(
            {
                "ph": "X",
                "name": str(event.get("name", "?")),
                "cat": str(event.get("cat", "operator")),
                "pid": rank,
                "tid": OPERATORS_THREAD,
                "ts": _us(start, origin),
                "dur": float(event.get("dur", 0.0)),
            }
        )
    return events


def _names(rank: int, role: str, host: str, operators: bool) -> list[dict[str, Any]]:
    names = [
        _meta("process_name", rank, None, f"rank {rank} ({role}) on {host}"),
        _meta("process_sort_index", rank, None, rank),
        _meta("thread_name", rank, STEPS_THREAD, "distbench steps"),
    ]
    if operators:
        names.append(_meta("thread_name", rank, OPERATORS_THREAD, "operators"))
    return names


def _meta(kind: str, pid: int, tid: int | None, value: object) -> dict[str, Any]:
    key = "sort_index" if kind.endswith("sort_index") else "name"
    event: dict[str, Any] = {"ph": "M", "name": kind, "pid": pid, "args": {key: value}}
    if tid is not None:
        event["tid"] = tid
    return event


def merged_trace(run_dir: Path) -> dict[str, Any]:
    """Every rank of the run in ``run_dir`` on one clock (see the module docstring)."""
    records = read_run_records(run_dir)
    steps = {rank: r.steps for rank, r in records.items()}
    starts = [float(s["t"]) for rank_steps in steps.values() for s in rank_steps]
    if not starts:
        raise ValueError(f"no step records in {run_dir}")
    origin = min(starts)
    events: list[dict[str, Any]] = []
    for rank, rank_records in sorted(records.items()):
        profiled = trace_file(run_dir, rank)
        meta = rank_records.meta or {}
        role, host = str(meta.get("role", "worker")), str(meta.get("host", "?"))
        events += _names(rank, role, host, profiled.is_file())
        events += step_events(rank, steps[rank], origin)
        if profiled.is_file():
            events += operator_events(rank, profiled, origin)
    return {
        "displayTimeUnit": "ms",
        "traceEvents": events,
        "otherData": {"run_dir": str(run_dir), "clock": "wall clock, run start = 0"},
    }
