"""What every in-venv worker program shares: the job file, batches and per-rank records.

Runs inside the framework's own virtual environment (TensorFlow, MXNet), so it imports
only the standard library and NumPy, never the distbench package: the workers load it by
file path, and it loads the harness's own record and timer contracts the same way
(``measurement/records.py``, ``measurement/timer.py``: standard library only). So an adapter writes
its record lines with the very ``RankRecorder`` and times its phases with the very
``PhaseTimer`` a PyTorch rank uses, and the harness aggregates and stores its run alike.

A job file (JSON, written by ``distbench.frameworks.launch`` or ``compare``) holds:
``mode`` ("train" or "compare"), ``spec`` (the architecture, see ``frameworks/spec.py``),
``weights`` (an .npz in the framework's layout), ``batches`` (an .npz with ``x`` and ``y``,
one leading index per batch), ``lr``, ``momentum``, ``weight_decay``, ``steps``, ``warmup``,
``threads``, ``run_dir``, ``strategy``, ``workers``, ``out`` (where compare results go) and,
with ``--profile-ops``, ``profile``: the steps the operator profiler waits through, warms up
on and records (``OpWindow``). A worker that profiles writes ``op_events_rank{R}.json``
(``write_op_events``), which ``distbench.frameworks.launch`` turns into the same operator
summary a PyTorch rank writes. With ``--target-accuracy`` or ``--epochs``, ``goal`` holds the
stopping rule's settings and sizes and ``held_out`` an .npz of the test split (``x``, ``y``):
``job_goal`` builds the very ``measurement/goal.py`` rule a PyTorch rank follows, and
``HeldOut`` evaluates a framework's predictions on that split.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

PACKAGE = Path(__file__).resolve().parent.parent  # src/distbench


def load_contract(relative: str, name: str) -> ModuleType:
    """A stdlib-only distbench module loaded by path (registered first: dataclasses look
    their module up in ``sys.modules``)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, PACKAGE / relative)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


if TYPE_CHECKING:
    from distbench.measurement import memory
    from distbench.measurement.goal import Goal, GoalSettings
    from distbench.measurement.records import RankRecorder
    from distbench.measurement.timer import PhaseTimer
else:
    RankRecorder = load_contract(
        "measurement/records.py", "distbench_contract_records"
    ).RankRecorder
    PhaseTimer = load_contract("measurement/timer.py", "distbench_contract_timer").PhaseTimer
    _goal = load_contract("measurement/goal.py", "distbench_contract_goal")
    Goal, GoalSettings = _goal.Goal, _goal.GoalSettings
    memory = load_contract("measurement/memory.py", "distbench_contract_memory")


def read_job(path: str) -> dict[str, Any]:
    job: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return job


def load_arrays(path: str) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def peak_rss_bytes() -> int:
    """The process's peak resident memory, evaluations left out (``measurement/memory.py``)."""
    return memory.process_peak_rss()


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


class Recorder(RankRecorder):
    """``measurement.records.RankRecorder`` with the adapters' summary and one-line errors."""

    def __init__(
        self, run_dir: str, rank: int, role: str, framework: str, threads: int | None
    ) -> None:
        super().__init__(Path(run_dir), rank, role=role, framework=framework, threads=threads)

    def summary(self, extra: dict[str, Any]) -> None:  # type: ignore[override]
        super().summary(
            peak_rss_bytes=peak_rss_bytes(),
            allocated_peak_bytes=None,
            reserved_peak_bytes=None,
            extra=extra,
        )

    def error(self, message: str) -> None:
        """One line: TensorFlow's errors span many lines, the first and last tell most."""
        lines = [line.strip() for line in message.splitlines() if line.strip()] or [""]
        text = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
        super().error(text[:500])


class Phases(PhaseTimer):
    """``measurement.timer.PhaseTimer`` with the names the adapters' loops use."""

    @property
    def phases(self) -> dict[str, float]:
        """The current step's phases, by reference (a loop may re-attribute time)."""
        return self._phases

    @property
    def start_wall(self) -> float:
        return self.step_start_wall


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


# ------------------------------------------------------------------------------ training to a goal


class HeldOut:
    """The test split (``job["held_out"]``, in the framework's layout), evaluated in
    batches: ``evaluate(predict)`` with ``predict`` mapping a batch of inputs to logits
    gives (correctly classified, evaluated) samples, as ``Goal.evaluate`` wants them."""

    def __init__(self, path: str, batch_size: int = 256) -> None:
        arrays = load_arrays(path)
        self.x = arrays["x"]
        self.y = arrays["y"].astype(np.int64)
        self.batch_size = batch_size

    def evaluate(self, predict: Callable[[np.ndarray], np.ndarray]) -> tuple[int, int]:
        correct = 0
        for start in range(0, len(self.y), self.batch_size):
            end = start + self.batch_size
            logits = np.asarray(predict(self.x[start:end]))
            correct += int((logits.argmax(axis=1) == self.y[start:end]).sum())
        return correct, len(self.y)


def job_goal(
    job: dict[str, Any],
    rank: int,
    evaluate: Callable[[], tuple[int, int]],
    agree: Callable[[bool], bool] | None = None,
) -> Goal:
    """The run's stopping rule (``measurement/goal.py``) as ``launch.goal_job`` described it:
    without a goal, ``warmup + steps`` steps; the evaluation's peak memory is measured
    apart from training's."""
    goal = job.get("goal")
    if not goal:
        return Goal(GoalSettings(warmup=job["warmup"], steps=job["steps"]), rank, 1, evaluate, 0, 0)
    return Goal(
        GoalSettings.of(goal["settings"]),
        rank,
        int(job["workers"]),
        evaluate,
        int(goal["samples_per_step"]),
        int(goal["train_size"]),
        agree=agree,
        asynchronous=bool(goal["asynchronous"]),
        updaters=int(goal["updaters"]),
        measure_peak=memory.evaluation_peak,
    )
