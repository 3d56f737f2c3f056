"""What every in-venv worker program shares: the job file, batches and per-rank records.

Runs inside the framework's own virtual environment (TensorFlow, MXNet), so it imports
only the standard library and NumPy, never distbench: the workers load it by file path
(``load_common`` below shows how). The record lines it writes are exactly those of
``distbench.harness.records`` (meta, step, summary, error), so the harness aggregates and
stores an adapter's run like a PyTorch one.

A job file (JSON, written by ``distbench.frameworks.launch`` or ``compare``) holds:
``mode`` ("train" or "compare"), ``spec`` (the architecture, see ``frameworks/spec.py``),
``weights`` (an .npz in the framework's layout), ``batches`` (an .npz with ``x`` and ``y``,
one leading index per batch), ``lr``, ``momentum``, ``weight_decay``, ``steps``, ``warmup``,
``threads``, ``run_dir``, ``strategy``, ``workers``, ``out`` (where compare results go) and,
with ``--profile-ops``, ``profile``: the steps the operator profiler waits through, warms up
on and records (``OpWindow``). A worker that profiles writes ``op_events_rank{R}.json``
(``write_op_events``), which ``distbench.frameworks.launch`` turns into the same operator
summary a PyTorch rank writes.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import time
from pathlib import Path
from typing import IO, Any

import numpy as np


def read_job(path: str) -> dict[str, Any]:
    job: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return job


def load_arrays(path: str) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def peak_rss_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


class Batches:
    """An endless, cyclic stream over a rank's pre-made batches (x, y per leading index)."""

    def __init__(self, path: str) -> None:
        arrays = load_arrays(path)
        self.x = arrays["x"]
        self.y = arrays["y"].astype(np.int64)
        self.index = 0

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        i = self.index % len(self)
        self.index += 1
        return self.x[i], self.y[i]


class Recorder:
    """Writes ``rank{R}.jsonl`` lines in the harness's record format."""

    def __init__(
        self, run_dir: str, rank: int, role: str, framework: str, threads: int | None
    ) -> None:
        self.rank = rank
        self._file: IO[str] = (Path(run_dir) / f"rank{rank}.jsonl").open("a", encoding="utf-8")
        self._write(
            {
                "kind": "meta",
                "role": role,
                "framework": framework,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "threads": threads,
            }
        )

    def _write(self, record: dict[str, Any]) -> None:
        record["rank"] = self.rank
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def step(
        self,
        step: int,
        warmup: bool,
        start: float,
        step_time: float,
        samples: int,
        phases: dict[str, float],
        **extra: Any,
    ) -> None:
        self._write(
            {
                "kind": "step",
                "step": step,
                "warmup": warmup,
                "t": start,
                "step_time": step_time,
                "samples": samples,
                "phases": phases,
                **extra,
            }
        )

    def summary(self, extra: dict[str, Any]) -> None:
        self._write(
            {
                "kind": "summary",
                "peak_rss_bytes": peak_rss_bytes(),
                "allocated_peak_bytes": None,
                "reserved_peak_bytes": None,
                "extra": extra,
            }
        )

    def error(self, message: str) -> None:
        """One line: TensorFlow's errors span many lines, the first and last tell most."""
        lines = [line.strip() for line in message.splitlines() if line.strip()] or [""]
        text = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
        self._write({"kind": "error", "error": text[:500], "t": time.time()})

    def close(self) -> None:
        self._file.close()


class Phases:
    """Contiguous phase timing, as the harness's PhaseTimer: each mark closes an interval."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self.start = self.last = 0.0
        self.start_wall = 0.0

    def start_step(self) -> None:
        self.phases = {}
        self.start = self.last = time.perf_counter()
        self.start_wall = time.time()

    def mark(self, phase: str) -> None:
        now = time.perf_counter()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - self.last
        self.last = now

    def end_step(self) -> tuple[float, dict[str, float]]:
        return self.last - self.start, dict(self.phases)


def write_json(path: str, data: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(data), encoding="utf-8")


class OpWindow:
    """Which step calls the operator profiler touches, as ``profiling.operators`` computes
    them in the main environment (``job["profile"]``): it starts at the first touched step
    (a warm-up step whose events are dropped) and records the last ``active`` steps."""

    def __init__(self, window: dict[str, int]) -> None:
        self.first = int(window["wait"])
        self.recorded_from = self.first + int(window["warmup"])
        self.last = self.recorded_from + int(window["active"]) - 1
        #: Wall-clock start of the first recorded step and end of the last one so far.
        self.span = (float("inf"), 0.0)

    def starts(self, step: int) -> bool:
        return step == self.first

    def ends(self, step: int) -> bool:
        return step == self.last

    def touched(self, step: int) -> bool:
        return self.first <= step <= self.last

    def recorded(self, step: int) -> bool:
        return self.recorded_from <= step <= self.last

    def step_extra(self, step: int) -> dict[str, Any]:
        """What the step's record carries: touched steps are left out of the timings."""
        return {"profiled": True} if self.touched(step) else {}

    def after_step(self, step: int, start: float, seconds: float) -> bool:
        """Note a finished step (wall-clock start, duration); True after the last one, when
        the profiler is to stop and write its events."""
        if self.recorded(step):
            self.span = (min(self.span[0], start), max(self.span[1], start + seconds))
        return self.ends(step)


def op_window(job: dict[str, Any]) -> OpWindow | None:
    return OpWindow(job["profile"]) if job.get("profile") else None


def op_events_file(run_dir: str | Path, rank: int) -> Path:
    """Where a worker writes its operator events (the launcher reads them there)."""
    return Path(run_dir) / f"op_events_rank{rank}.json"


def write_op_events(
    run_dir: str,
    rank: int,
    framework: str,
    source: str,
    events: list[dict[str, Any]],
    span: tuple[float, float],
) -> None:
    """Operator events (``name``, ``start_s`` on the wall clock, ``self_us``, ``total_us``,
    ``thread``) that started inside ``span`` (the recorded steps), as one JSON file."""
    start, end = span
    kept = [e for e in events if start <= e["start_s"] < end]
    write_json(
        str(op_events_file(run_dir, rank)),
        {"framework": framework, "source": source, "events": kept},
    )


def self_times(intervals: list[tuple[str, float, float, Any]]) -> list[dict[str, Any]]:
    """Events from (name, start_us, end_us, thread) intervals, with self time = duration
    minus the time of the events nested inside it on the same thread."""
    by_thread: dict[Any, list[tuple[str, float, float, Any]]] = {}
    for item in intervals:
        by_thread.setdefault(item[3], []).append(item)
    events: list[dict[str, Any]] = []
    for thread, items in by_thread.items():
        items.sort(key=lambda item: (item[1], -item[2]))
        # open intervals: (end_us, index into events), innermost last
        stack: list[tuple[float, int]] = []
        for name, start, end, _ in items:
            while stack and stack[-1][0] <= start:
                stack.pop()
            if stack:
                parent = events[stack[-1][1]]
                parent["self_us"] = max(0.0, parent["self_us"] - (min(end, stack[-1][0]) - start))
            stack.append((end, len(events)))
            events.append(
                {
                    "name": name,
                    "start_s": start / 1e6,
                    "self_us": end - start,
                    "total_us": end - start,
                    "thread": str(thread),
                }
            )
    return events
