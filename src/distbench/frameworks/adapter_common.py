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
``threads``, ``run_dir``, ``strategy``, ``workers`` and ``out`` (where compare results go).
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

    def __init__(self, run_dir: str, rank: int, role: str, framework: str,
                 threads: int | None) -> None:
        self.rank = rank
        self._file: IO[str] = (Path(run_dir) / f"rank{rank}.jsonl").open("a", encoding="utf-8")
        self._write({"kind": "meta", "role": role, "framework": framework,
                     "host": socket.gethostname(), "pid": os.getpid(), "threads": threads})

    def _write(self, record: dict[str, Any]) -> None:
        record["rank"] = self.rank
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def step(self, step: int, warmup: bool, start: float, step_time: float, samples: int,
             phases: dict[str, float], **extra: Any) -> None:
        self._write({"kind": "step", "step": step, "warmup": warmup, "t": start,
                     "step_time": step_time, "samples": samples, "phases": phases, **extra})

    def summary(self, extra: dict[str, Any]) -> None:
        self._write({"kind": "summary", "peak_rss_bytes": peak_rss_bytes(),
                     "allocated_peak_bytes": None, "reserved_peak_bytes": None,
                     "extra": extra})

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
