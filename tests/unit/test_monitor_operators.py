"""Resource monitor and operator profiler (harness/monitor.py, profiling/operators.py)."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import pytest
import torch

from distbench.config import RunConfig
from distbench.harness.monitor import (
    ResourceMonitor,
    compact_timelines,
    machine_busy_share,
    resources_file,
    stored_emulation,
)
from distbench.measurement.records import RankRecorder, read_run_records
from distbench.measurement.timer import PhaseTimer
from distbench.profiling.operators import (
    OperatorProfiler,
    OpEvent,
    phase_at,
    profile_window,
    step_intervals,
    stored_operators,
    summarize_events,
)
from distbench.strategies.common import build_workload, default_step, record_step


def test_monitor_samples_at_least_twice_a_second(tmp_path: Path) -> None:
    path = resources_file(tmp_path, 0)
    monitor = ResourceMonitor(path).start()
    time.sleep(1.2)
    monitor.stop()
    samples = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(samples) >= 3  # >= 2 Hz over 1.2 s, plus the final sample
    assert {
        "t",
        "cpu_percent",
        "system_cpu_percent",
        "rss_bytes",
        "net_sent_bytes",
        "net_recv_bytes",
    } <= set(samples[0])
    assert all(s["rss_bytes"] > 0 for s in samples)
    gaps = [b["t"] - a["t"] for a, b in itertools.pairwise(samples)]
    assert max(gaps[:-1] or [0.0]) <= 0.5 + 0.3  # scheduling slack on a busy host


def test_compact_timelines_thins_and_shifts(tmp_path: Path) -> None:
    for rank in (0, 1):
        lines = [
            json.dumps(
                {
                    "t": 100.0 + i * 0.25,
                    "cpu_percent": 50.0,
                    "rss_bytes": 1,
                    "system_cpu_percent": 80.0,
                    "net_sent_bytes": i,
                    "net_recv_bytes": i,
                }
            )
            for i in range(400)
        ]
        resources_file(tmp_path, rank).write_text("\n".join(lines) + "\n{torn")
    (tmp_path / "rank0.jsonl").write_text(
        json.dumps(
            {
                "kind": "step",
                "step": 0,
                "warmup": True,
                "t": 101.0,
                "step_time": 1.0,
                "samples": 1,
                "phases": {},
            }
        )
        + "\n"
        + json.dumps(
            {
                "kind": "step",
                "step": 1,
                "warmup": False,
                "t": 102.0,
                "step_time": 2.0,
                "samples": 1,
                "phases": {},
            }
        )
        + "\n"
    )
    compact = compact_timelines(tmp_path, max_points=100)
    assert compact is not None and set(compact["ranks"]) == {"0", "1"}
    series = compact["ranks"]["0"]
    assert len(series["t"]) <= 101 and series["t"][0] == 0.0
    assert series["t"][-1] == pytest.approx(399 * 0.25)  # the last sample is kept
    assert compact["window"] == pytest.approx([2.0, 4.0])
    assert compact_timelines(tmp_path / "missing-dir-is-empty") is None


def test_profile_window_skips_warmup_and_records_the_last_steps() -> None:
    window = profile_window(warmup_steps=2, measured_steps=8)
    assert (window.wait, window.warmup, window.active) == (6, 1, 3)
    assert list(window.recorded) == [7, 8, 9] and list(window.touched) == [6, 7, 8, 9]
    short = profile_window(warmup_steps=1, measured_steps=2)
    assert (short.wait, short.warmup, short.active) == (1, 0, 2)


def test_events_are_charged_to_the_phase_they_start_in() -> None:
    records = [
        {"step": 4, "t": 10.0, "phases": {"data": 0.1, "forward": 0.4, "backward": 0.5}},
        {"step": 5, "t": 11.0, "phases": {"data": 0.1, "forward": 0.4, "backward": 0.5}},
    ]
    intervals = step_intervals(records)
    assert phase_at(intervals, 10.05) == "data" and phase_at(intervals, 10.6) == "backward"
    assert phase_at(intervals, 12.5) == "other"
    events = [
        OpEvent("aten::conv", 10.2, 300.0, 400.0),
        OpEvent("aten::conv", 11.3, 100.0, 200.0),
        OpEvent("aten::conv_bw", 10.7, 800.0, 900.0),
        OpEvent("ProfilerStep#4", 10.0, 5000.0, 9000.0),
    ]
    summary = summarize_events(events, records)
    forward = summary["phases"]["forward"]
    assert forward["ops"][0]["name"] == "aten::conv"
    assert forward["ops"][0]["self_s"] == pytest.approx(200e-6)  # (300 + 100) µs / 2 steps
    assert forward["ops"][0]["calls"] == 1.0
    assert summary["phases"]["backward"]["self_s"] == pytest.approx(400e-6)
    assert all(op["name"] != "ProfilerStep#4" for op in summary["top"])
    assert summary["top"][0]["self_s_by_phase"] == {"backward": pytest.approx(400e-6)}


@pytest.mark.timeout(180)
def test_profiler_driven_by_the_recorder(tmp_path: Path) -> None:
    """A real torch.profiler over a tiny training loop, as a worker runs it."""
    torch.set_num_threads(1)
    cfg = RunConfig(model="lenet5", steps=5, warmup=1, batch_size=4, profile_ops=True)
    recorder = RankRecorder(tmp_path, 0)
    profiler = OperatorProfiler(cfg, tmp_path, 0, torch.device("cpu")).attach(recorder)
    work = build_workload(cfg, torch.device("cpu"), cfg.batch_size, 0, 1)
    timer = PhaseTimer()
    for step in range(cfg.warmup + cfg.steps):
        loss = default_step(work, torch.device("cpu"), timer)
        record_step(recorder, cfg, step, timer, cfg.batch_size, loss=loss)
    assert profiler.finish() is not None
    recorder.close()
    steps = read_run_records(tmp_path)[0].steps
    assert [bool(s.get("profiled")) for s in steps] == [False, False, True, True, True, True]
    assert [s["step"] for s in read_run_records(tmp_path)[0].measured_steps()] == [1]
    trace = json.loads((tmp_path / "trace_rank0.json").read_text())
    assert trace["traceEvents"]
    stored = stored_operators(tmp_path, 0)
    assert stored is not None and stored["traces"] == ["trace_rank0.json"]
    assert stored["steps"] == [3, 4, 5]
    names = {op["name"] for op in stored["phases"]["backward"]["ops"]}
    assert "aten::convolution_backward" in names
    assert {"data", "forward", "backward", "update"} <= set(stored["phases"])


def test_machine_busy_is_the_mean_inside_the_measured_steps(tmp_path: Path) -> None:
    """The machine's busy share counts only samples of the measured steps (102-104 s, and
    a sample's half second after them: a sample covers the time since the one before),
    and a stored emulation report that predates it gets it from the stored timelines."""
    for rank in (0, 1):
        samples = [
            {"t": 100.0 + i * 0.5, "cpu_percent": 10.0, "rss_bytes": 1}
            | {"system_cpu_percent": 95.0 if 102.0 <= 100.0 + i * 0.5 <= 104.5 else 10.0}
            | {"net_sent_bytes": 0, "net_recv_bytes": 0}
            for i in range(12)
        ]
        resources_file(tmp_path, rank).write_text("\n".join(json.dumps(s) for s in samples))
    steps = [
        {"kind": "step", "step": k, "warmup": k == 0, "t": t, "step_time": d}
        | {"samples": 1, "phases": {}}
        for k, (t, d) in enumerate(((101.0, 1.0), (102.0, 1.0), (103.0, 1.0)))
    ]
    (tmp_path / "rank0.jsonl").write_text("\n".join(json.dumps(s) for s in steps) + "\n")
    stored = compact_timelines(tmp_path)
    assert machine_busy_share(stored) == pytest.approx(0.95)
    assert stored_emulation({"compute": {"faithful": True}}, stored)["machine_busy"] == (
        pytest.approx(0.95)
    )
    assert stored_emulation({}, stored) == {}  # real compute: no emulation report
    assert machine_busy_share(compact_timelines(tmp_path / "nothing-here")) is None
