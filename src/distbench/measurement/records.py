"""Per-rank records: the framework-neutral contract between a worker and the harness.

Each rank appends JSON lines to ``rank{R}.jsonl`` in the run directory. Any worker program
(a PyTorch strategy here, a TensorFlow or MXNet adapter in its own environment) that writes
these lines can be measured, aggregated and stored by distbench. Line kinds:

- ``{"kind": "meta", "rank", "role", "framework", "host", "pid", "threads"}``
- ``{"kind": "step", "rank", "step", "warmup", "t", "step_time", "samples", "phases", ...}``
  where ``t`` is the wall-clock start (seconds since the epoch), ``phases`` maps names from
  ``timer.PHASES`` to seconds, and optional keys are ``loss`` and ``comm_total``;
- ``{"kind": "summary", "rank", "peak_rss_bytes", "allocated_peak_bytes",
  "reserved_peak_bytes", "extra": {...}}``
- ``{"kind": "error", "rank", "error"}``

With ``--profile-ops`` the steps the operator profiler touched carry ``"profiled": true``
and are left out of the timing statistics (``measured_steps``) unless nothing else is left.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any


def rank_file(run_dir: Path, rank: int) -> Path:
    return run_dir / f"rank{rank}.jsonl"


class RankRecorder:
    """Appends one rank's records; a line per step, flushed so progress can be followed."""

    def __init__(
        self,
        run_dir: Path,
        rank: int,
        role: str = "worker",
        framework: str = "torch",
        threads: int | None = None,
    ) -> None:
        self.rank = rank
        self._file: IO[str] = rank_file(run_dir, rank).open("a", encoding="utf-8")
        # Operator profiles (--profile-ops only): the profiler sets ``on_step`` (called after
        # each step record is written; it advances the profiler's schedule) and the range of
        # step calls it touches, which are tagged "profiled". Unset, a step costs nothing more.
        self.on_step: Callable[[dict[str, Any]], None] | None = None
        self.profiled_calls: range = range(0)
        self._step_calls = 0
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
        record = {
            "kind": "step",
            "step": step,
            "warmup": warmup,
            "t": start,
            "step_time": step_time,
            "samples": samples,
            "phases": phases,
            **extra,
        }
        if self._step_calls in self.profiled_calls:  # profiler overhead on this step
            record["profiled"] = True
        self._step_calls += 1
        self._write(record)
        if self.on_step is not None:
            self.on_step(record)

    def summary(self, **values: Any) -> None:
        self._write({"kind": "summary", **values})

    def error(self, message: str) -> None:
        self._write({"kind": "error", "error": message, "t": time.time()})

    def close(self) -> None:
        self._file.close()


@dataclass
class RankRecords:
    """Everything one rank reported, parsed."""

    rank: int
    meta: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def role(self) -> str:
        return str(self.meta.get("role", "worker"))

    def measured_steps(self) -> list[dict[str, Any]]:
        measured = [s for s in self.steps if not s.get("warmup")]
        # Steps slowed by the operator profiler are not timings, unless they are all
        # there is (a run with very few steps).
        unprofiled = [s for s in measured if not s.get("profiled")]
        return unprofiled or measured


def parse_rank_lines(lines: list[str], rank: int) -> RankRecords:
    records = RankRecords(rank=rank)
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a rank killed mid-write leaves a torn last line
        kind = record.get("kind")
        if kind == "meta":
            records.meta = record
        elif kind == "step":
            records.steps.append(record)
        elif kind == "summary":
            records.summary = record
        elif kind == "error":
            records.errors.append(record)
    return records


def read_run_records(run_dir: Path) -> dict[int, RankRecords]:
    """All ranks' records found in a run directory, by rank."""
    result: dict[int, RankRecords] = {}
    for path in sorted(run_dir.glob("rank*.jsonl")):
        rank = int(path.stem.removeprefix("rank"))
        result[rank] = parse_rank_lines(path.read_text(encoding="utf-8").splitlines(), rank)
    return result


def count_step_lines(path: Path) -> int:
    """Cheap progress probe: how many step lines a rank has written so far."""
    try:
        with path.open("rb") as handle:
            return sum(1 for line in handle if b'"kind": "step"' in line)
    except OSError:
        return 0
