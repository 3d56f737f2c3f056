"""Operator profiles: ``torch.profiler`` over a few measured steps of every rank.

Where to start: ``worker.py`` creates an ``OperatorProfiler`` when ``--profile-ops`` is set
and ``attach``-es it to the rank's ``RankRecorder``; the recorder calls it after every step
record, which advances the profiler's schedule. The schedule skips the warm-up and most
measured steps and records the *last* ``ACTIVE_STEPS`` steps (after one profiler warm-up
step), so the timed steps before it carry no profiler overhead; the steps the profiler
touched are tagged ``"profiled"`` in the records and left out of the timing statistics.

``finish`` writes, per rank, ``trace_rank{R}.json`` (a Chrome trace: open it in
https://ui.perfetto.dev or ``chrome://tracing``) and ``operators_rank{R}.json``: per phase
(``data``, ``forward``, ``backward``, ``comm``, ``update``, ... exactly the phases of the
step breakdown) the top operators by self CPU time, in seconds *per step*. An operator is
charged to the phase whose time interval (from the step records' start time and phase
durations) contains the operator's start; the profiler's clock is the system clock, the
same one the step records use. Operators outside every step (between steps) are charged
to ``other``.

``distbench profile --operators`` runs the one-worker workload (``sequential``) this way
and stores it as an ordinary run, so ``distbench explain`` can compare it with others.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, schedule

from distbench.config import RunConfig
from distbench.measurement.records import RankRecorder

ACTIVE_STEPS = 3
TOP_PER_PHASE = 20
TOP_OVERALL = 15
OTHER_PHASE = "other"
# Profiler bookkeeping ranges, not work: their self time is the profiler's own.
IGNORED_PREFIXES = ("ProfilerStep",)


def trace_file(run_dir: Path, rank: int) -> Path:
    return run_dir / f"trace_rank{rank}.json"


def operators_file(run_dir: Path, rank: int) -> Path:
    return run_dir / f"operators_rank{rank}.json"


@dataclass(frozen=True)
class ProfileWindow:
    """Which step calls the profiler waits through, warms up on and records."""

    wait: int
    warmup: int
    active: int

    @property
    def touched(self) -> range:
        """Step calls with profiler overhead (warm-up and recorded steps)."""
        return range(self.wait, self.wait + self.warmup + self.active)

    @property
    def recorded(self) -> range:
        return range(self.wait + self.warmup, self.wait + self.warmup + self.active)


def profile_window(
    warmup_steps: int, measured_steps: int, active: int = ACTIVE_STEPS
) -> ProfileWindow:
    """Record the last ``active`` measured steps, after one profiler warm-up step if the
    measured steps leave room for it; the run's own warm-up steps are never touched."""
    active = max(1, min(active, measured_steps))
    prof_warmup = 1 if measured_steps > active else 0
    wait = warmup_steps + measured_steps - active - prof_warmup
    return ProfileWindow(wait=wait, warmup=prof_warmup, active=active)


def profiled_throughout(warmup_steps: int, measured_steps: int) -> bool:
    """Whether the profiler's window covers every measured step, so that no step is timed
    without its overhead (the timing then falls back to the profiled steps)."""
    return profile_window(warmup_steps, measured_steps).wait <= warmup_steps


def profiling_warning(steps: int) -> str:
    """The warning for a run whose every measured step is profiled."""
    least = ACTIVE_STEPS + 2  # the window, its warm-up step, one step timed clean
    return (
        f"warning: --profile-ops with --steps {steps} profiles every measured step, so "
        "step times and throughput include the operator profiler's overhead (it can slow a "
        f"step several times); give --steps {least} or more to keep steps timed without it"
    )


@dataclass(frozen=True)
class OpEvent:
    """The part of a profiler event the summary needs (times in microseconds)."""

    name: str
    start_s: float  # seconds since the epoch
    self_us: float
    total_us: float
    self_device_us: float = 0.0


def step_intervals(records: Iterable[dict[str, Any]]) -> list[tuple[float, float, str]]:
    """(start, end, phase) on the wall clock, from step records: phases are contiguous and
    listed in the order they were marked, starting at the record's ``t``."""
    intervals = []
    for record in records:
        start = float(record["t"])
        for phase, seconds in record["phases"].items():
            intervals.append((start, start + float(seconds), phase))
            start += float(seconds)
    return sorted(intervals)


def phase_at(intervals: list[tuple[float, float, str]], when: float) -> str:
    for start, end, phase in intervals:
        if start <= when < end:
            return phase
    return OTHER_PHASE


def _sorted_ops(table: dict[str, list[float]], steps: int, top: int) -> list[dict[str, Any]]:
    ordered = sorted(table.items(), key=lambda item: -item[1][0])[:top]
    return [
        {
            "name": name,
            "self_s": v[0] / 1e6 / steps,
            "total_s": v[1] / 1e6 / steps,
            "calls": v[2] / steps,
            "self_device_s": v[3] / 1e6 / steps,
        }
        for name, v in ordered
    ]


def summarize_events(
    events: Iterable[OpEvent], records: list[dict[str, Any]], top: int = TOP_PER_PHASE
) -> dict[str, Any]:
    """Per-phase and overall operator tables, in seconds per recorded step."""
    intervals = step_intervals(records)
    steps = max(1, len(records))
    by_phase: dict[str, dict[str, list[float]]] = {}
    for event in events:
        if event.name.startswith(IGNORED_PREFIXES):
            continue
        table = by_phase.setdefault(phase_at(intervals, event.start_s), {})
        slot = table.setdefault(event.name, [0.0, 0.0, 0.0, 0.0])
        for index, value in enumerate((event.self_us, event.total_us, 1.0, event.self_device_us)):
            slot[index] += value
    phases = {
        phase: {
            "self_s": sum(v[0] for v in table.values()) / 1e6 / steps,
            "ops": _sorted_ops(table, steps, top),
        }
        for phase, table in by_phase.items()
    }
    return {
        "unit": "seconds per step",
        "steps": [r["step"] for r in records],
        "phases": phases,
        "top": _overall(by_phase, steps),
    }


def _overall(by_phase: dict[str, dict[str, list[float]]], steps: int) -> list[dict[str, Any]]:
    merged: dict[str, list[float]] = {}
    split: dict[str, dict[str, float]] = {}
    for phase, table in by_phase.items():
        for name, values in table.items():
            slot = merged.setdefault(name, [0.0, 0.0, 0.0, 0.0])
            for index, value in enumerate(values):
                slot[index] += value
            split.setdefault(name, {})[phase] = values[0] / 1e6 / steps
    ops = _sorted_ops(merged, steps, TOP_OVERALL)
    return [{**op, "self_s_by_phase": split[op["name"]]} for op in ops]


def op_events(prof: profile) -> list[OpEvent]:
    """CPU-side events of a finished profile, with absolute start times."""
    if prof.profiler is None:
        return []
    kineto = prof.profiler.kineto_results
    base_s = kineto.trace_start_ns() / 1e9 if kineto is not None else 0.0
    events = []
    for event in prof.profiler.function_events:
        events.append(
            OpEvent(
                name=event.name,
                start_s=base_s + event.time_range.start / 1e6,
                self_us=float(event.self_cpu_time_total),
                total_us=float(event.cpu_time_total),
                self_device_us=float(getattr(event, "self_device_time_total", 0.0) or 0.0),
            )
        )
    return events


class OperatorProfiler:
    """torch.profiler on one rank, driven by the recorder's per-step callback."""

    def __init__(self, cfg: RunConfig, run_dir: Path, rank: int, device: torch.device) -> None:
        self.run_dir, self.rank, self.device = run_dir, rank, device
        self.window = profile_window(cfg.warmup, cfg.steps)
        activities = [ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(ProfilerActivity.CUDA)
        self._prof = profile(
            activities=activities,
            schedule=schedule(
                wait=self.window.wait,
                warmup=self.window.warmup,
                active=self.window.active,
                repeat=1,
            ),
        )
        self._calls = 0
        self._thread = threading.get_ident()
        self._records: list[dict[str, Any]] = []
        self._running = False

    def attach(self, recorder: RankRecorder) -> OperatorProfiler:
        """Start profiling (idle until the window) and let ``recorder`` drive the schedule."""
        recorder.profiled_calls = self.window.touched
        recorder.on_step = self.on_step
        self._prof.start()
        self._thread = threading.get_ident()
        self._running = True
        return self

    def on_step(self, record: dict[str, Any]) -> None:
        if threading.get_ident() != self._thread:
            return  # kineto must be driven from the thread that started it
        if self._calls in self.window.recorded:
            self._records.append(record)
        self._calls += 1
        if self._running:
            self._prof.step()

    def stop(self) -> None:
        if self._running:
            self._running = False
            self._prof.stop()

    def finish(self) -> Path | None:
        """Stop, then write the trace and the operator summary; None if nothing recorded."""
        self.stop()
        if not self._records or self._prof.profiler is None:
            return None
        trace = trace_file(self.run_dir, self.rank)
        self._prof.export_chrome_trace(str(trace))
        summary = summarize_events(op_events(self._prof), self._records)
        summary.update(rank=self.rank, device=self.device.type, trace=trace.name)
        path = operators_file(self.run_dir, self.rank)
        path.write_text(json.dumps(summary), encoding="utf-8")
        return path


def load_operator_profile(run_dir: Path, rank: int) -> dict[str, Any] | None:
    """A rank's operator summary as written by ``OperatorProfiler.finish`` (None if absent)."""
    path = operators_file(run_dir, rank)
    if not path.is_file():
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    return data


def stored_operators(run_dir: Path, governing_rank: int | None) -> dict[str, Any] | None:
    """What the results store keeps: the governing rank's profile (the rank whose breakdown
    the row reports) plus the names of every rank's trace file."""
    profiles = {
        int(p.stem.removeprefix("operators_rank")): p for p in run_dir.glob("operators_rank*.json")
    }
    if not profiles:
        return None
    rank = governing_rank if governing_rank in profiles else min(profiles)
    profile_data = load_operator_profile(run_dir, rank)
    if profile_data is None:
        return None
    profile_data["traces"] = sorted(p.name for p in run_dir.glob("trace_rank*.json"))
    return profile_data
