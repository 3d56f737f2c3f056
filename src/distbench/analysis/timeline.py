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
  nested inside it and, where the rank ran with ``--profile-ops``, the operators of the
  training thread nested inside the phase they ran in (``nest_operators``);
- threads 2, 3, …, ``operators``: the profiler's other slices of that rank, one track per
  profiler thread — the training thread's outside any phase, and its other threads' (the
  autograd engine's, the communication library's) — on the same clock, so they line up
  under the phases too.

The profiler's and distbench's clocks are both the wall clock, read at different instants
around each mark; an operator that crosses the end of its phase by that much is clipped to
it (its own duration stays in ``args.dur_us``) so that it nests.

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
    """A slice per step and, inside it, one per phase, back to back from the step's start.
    Phase edges are placed in microseconds from the step's start, so that one phase ends
    exactly where the next begins (seconds since the epoch hold only ~0.2 us)."""
    events: list[dict[str, Any]] = []
    for record in steps:
        start = _us(float(record["t"]), origin)
        phases = {str(k): float(v) for k, v in (record.get("phases") or {}).items()}
        label = f"step {record.get('step')}"
        if record.get("warmup"):
            label += " (warm-up)"
        if record.get("profiled"):
            label += " (profiled)"
        total = float(record.get("step_time") or sum(phases.values()))
        events.append(_slice(label, "step", rank, STEPS_THREAD, start, round(total * 1e6, 3)))
        edge, elapsed = start, 0.0
        for phase, seconds in phases.items():
            elapsed += seconds
            end = round(start + elapsed * 1e6, 3)
            events.append(_slice(phase, "phase", rank, STEPS_THREAD, edge, round(end - edge, 3)))
            edge = end
    return events


def _slice(
    name: str, category: str, pid: int, tid: int, ts_us: float, dur_us: float
) -> dict[str, Any]:
    return {
        "ph": "X",
        "name": name,
        "cat": category,
        "pid": pid,
        "tid": tid,
        "ts": round(ts_us, 3),
        "dur": dur_us,
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
        duration = float(event.get("dur", 0.0))
        events.append(
            {
                "ph": "X",
                "name": str(event.get("name", "?")),
                "cat": str(event.get("cat", "operator")),
                "pid": rank,
                "tid": OPERATORS_THREAD,
                "ts": _us(start, origin),
                "dur": duration,
                "args": {"thread": event.get("tid", 0), "dur_us": duration},
            }
        )
    return events


PROFILER_STEP = "ProfilerStep#"  # the profiler's own step annotation: distbench has its steps


def _subtrees(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """One thread's slices grouped by top-level slice: each top-level slice followed by
    every slice nested in it (the profiler's slices of a thread nest properly)."""
    trees: list[list[dict[str, Any]]] = []
    end = float("-inf")
    for event in sorted(events, key=lambda e: (e["ts"], -e["dur"])):
        if event["ts"] >= end:
            trees.append([])
            end = event["ts"] + event["dur"]
        trees[-1].append(event)
    return trees


def _phase_at(phases: list[tuple[float, float]], ts: float) -> tuple[float, float] | None:
    for start, stop in phases:
        if start <= ts < stop:
            return start, stop
    return None


def _clipped(
    tree: list[dict[str, Any]], limit: float, tid: int = STEPS_THREAD
) -> list[dict[str, Any]]:
    """One top-level slice and its descendants on track ``tid``, each ending no later than
    ``limit`` nor than the slice it is nested in (the profiler's microsecond rounding lets
    a child overrun its parent by a fraction of a microsecond)."""
    out: list[dict[str, Any]] = []
    ends: list[float] = []  # the clipped ends of the open ancestors
    for event in tree:
        while ends and ends[-1] <= event["ts"]:
            ends.pop()
        stop = min(event["ts"] + event["dur"], ends[-1] if ends else limit, limit)
        if event["ts"] < stop:
            out.append({**event, "tid": tid, "dur": round(stop - event["ts"], 3)})
            ends.append(event["ts"] + out[-1]["dur"])
    return out


def nest_operators(
    phases: list[dict[str, Any]], operators: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(slices nested under the phases on the steps thread, the rest). The training
    thread is the profiler thread whose top-level slices start inside phases the most;
    each of its top-level slices goes under the phase it starts in, with everything nested
    in it, clipped to that phase's end."""
    spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in phases)
    by_thread: dict[Any, list[dict[str, Any]]] = {}
    for event in operators:
        if not event["name"].startswith(PROFILER_STEP):
            by_thread.setdefault(event["args"]["thread"], []).append(event)
    inside = {
        thread: sum(1 for tree in _subtrees(events) if _phase_at(spans, tree[0]["ts"]))
        for thread, events in by_thread.items()
    }
    main = max(inside, key=lambda t: inside[t], default=None)
    nested: list[dict[str, Any]] = []
    placed: set[int] = set()
    for tree in _subtrees(by_thread.get(main, [])):
        phase = _phase_at(spans, tree[0]["ts"])
        if phase is not None:
            nested += _clipped(tree, phase[1])
            placed.update(id(e) for e in tree)
    rest = [e for e in operators if id(e) not in placed]
    return nested, rest


def _names(rank: int, role: str, host: str) -> list[dict[str, Any]]:
    return [
        _meta("process_name", rank, None, f"rank {rank} ({role}) on {host}"),
        _meta("process_sort_index", rank, None, rank),
        _meta("thread_name", rank, STEPS_THREAD, "distbench steps"),
    ]


def thread_tracks(rank: int, rest: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The slices not nested under a phase, one track per profiler thread (slices of
    different threads overlap, so they cannot share one), named after it."""
    by_thread: dict[Any, list[dict[str, Any]]] = {}
    for event in rest:
        by_thread.setdefault(event["args"]["thread"], []).append(event)
    tracks = {thread: OPERATORS_THREAD + k for k, thread in enumerate(by_thread)}
    placed = [
        clipped
        for thread, events in by_thread.items()
        for tree in _subtrees(events)
        for clipped in _clipped(tree, float("inf"), tracks[thread])
    ]
    names = [
        _meta("thread_name", rank, tid, "operators" if tid == OPERATORS_THREAD
              else f"operators, profiler thread {thread}")
        for thread, tid in tracks.items()
    ]  # fmt: skip
    return names + placed


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
        events += _names(rank, role, host)
        slices = step_events(rank, steps[rank], origin)
        events += slices
        if profiled.is_file():
            phases = [e for e in slices if e["cat"] == "phase"]
            nested, rest = nest_operators(phases, operator_events(rank, profiled, origin))
            events += nested + thread_tracks(rank, rest)
    return {
        "displayTimeUnit": "ms",
        "traceEvents": events,
        "otherData": {"run_dir": str(run_dir), "clock": "wall clock, run start = 0"},
    }
