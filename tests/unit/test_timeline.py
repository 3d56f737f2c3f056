"""One timeline of every rank: process tracks, steps with their phases back to back, and
profiler operators moved onto the same clock."""

from __future__ import annotations

import json
from pathlib import Path

from distbench.analysis.timeline import OPERATORS_THREAD, STEPS_THREAD, merged_trace


def _write_rank(run_dir: Path, rank: int, role: str, start: float) -> None:
    lines = [
        {"kind": "meta", "rank": rank, "role": role, "host": f"h{rank}", "pid": 10 + rank},
        {
            "kind": "step",
            "rank": rank,
            "step": 0,
            "warmup": True,
            "t": start,
            "step_time": 0.5,
            "phases": {"data": 0.1, "forward": 0.2, "backward": 0.2},
        },
        {
            "kind": "step",
            "rank": rank,
            "step": 1,
            "warmup": False,
            "profiled": True,
            "t": start + 0.5,
            "step_time": 0.4,
            "phases": {"data": 0.1, "comm": 0.3},
        },
    ]
    text = "\n".join(json.dumps(line) for line in lines) + "\n"
    (run_dir / f"rank{rank}.jsonl").write_text(text)


def test_every_rank_is_a_process_and_its_phases_follow_each_other(tmp_path: Path) -> None:
    _write_rank(tmp_path, 0, "worker", 1000.0)
    _write_rank(tmp_path, 1, "server", 1000.25)
    events = merged_trace(tmp_path)["traceEvents"]
    names = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert names == {0: "rank 0 (worker) on h0", 1: "rank 1 (server) on h1"}
    rank1 = [e for e in events if e["pid"] == 1 and e["ph"] == "X"]
    assert [e["name"] for e in rank1] == [
        "step 0 (warm-up)",
        "data",
        "forward",
        "backward",
        "step 1 (profiled)",
        "data",
        "comm",
    ]
    # one clock: the run starts at 0, rank 1 a quarter second later
    assert rank1[0]["ts"] == 250000.0 and rank1[0]["dur"] == 500000.0
    assert [e["ts"] for e in rank1[1:4]] == [250000.0, 350000.0, 550000.0]
    assert all(e["tid"] == STEPS_THREAD for e in rank1)


def test_profiler_operators_nest_under_the_phase_they_ran_in(tmp_path: Path) -> None:
    """The training thread's operators go under their phase on the steps thread (on the
    run's clock), their children with them, clipped at the phase's end; another thread's
    slices and the profiler's own step annotation stay on the operators thread."""
    _write_rank(tmp_path, 0, "worker", 1000.0)
    # the profiler's times: microseconds after baseTimeNanoseconds (999 s)
    main, other = 7, 9
    trace = {
        "baseTimeNanoseconds": 999_000_000_000,
        "traceEvents": [
            {"ph": "X", "name": "ProfilerStep#1", "ts": 1_500_000.0, "dur": 400_000.0, "tid": main},
            {"ph": "X", "name": "aten::linear", "ts": 1_600_020.0, "dur": 80.0, "tid": main},
            {"ph": "X", "name": "aten::mm", "ts": 1_600_030.0, "dur": 50.0, "tid": main},
            # crosses the end of data (1000.5 s + 0.1 s) by 10 us: clipped to it
            {"ph": "X", "name": "aten::copy_", "ts": 1_599_970.0, "dur": 40.0, "tid": main},
            {"ph": "X", "name": "gloo:all_reduce", "ts": 1_600_020.0, "dur": 500.0, "tid": other},
            {"ph": "i", "name": "marker", "ts": 1_600_000.0},
        ],
    }  # fmt: skip
    (tmp_path / "trace_rank0.json").write_text(json.dumps(trace))
    events = [e for e in merged_trace(tmp_path)["traceEvents"] if e["ph"] == "X"]
    on_steps = {e["name"]: e for e in events if e["tid"] == STEPS_THREAD}
    comm = next(e for e in events if e["name"] == "comm")
    linear, mm = on_steps["aten::linear"], on_steps["aten::mm"]
    assert comm["ts"] == 600000.0  # 1000.6 s on the run's clock, 0.6 s after its start
    assert linear["ts"] == 600020.0  # 999 s + 1.60002 s: 20 us into comm
    assert linear["ts"] <= mm["ts"] and mm["ts"] + mm["dur"] <= linear["ts"] + linear["dur"]
    copy = on_steps["aten::copy_"]
    assert copy["ts"] + copy["dur"] == 600000.0 and copy["args"]["dur_us"] == 40.0
    rest = {e["name"]: e["tid"] for e in events if e["tid"] != STEPS_THREAD}
    assert rest == {"ProfilerStep#1": OPERATORS_THREAD, "gloo:all_reduce": OPERATORS_THREAD + 1}
    threads = {e["args"]["name"] for e in merged_trace(tmp_path)["traceEvents"]
               if e["name"] == "thread_name"}  # fmt: skip
    assert threads == {"distbench steps", "operators", "operators, profiler thread 9"}


def test_trace_takes_the_round_the_results_figures_come_from(tmp_path: Path) -> None:
    from distbench.harness.session import round_directory
    from distbench.store.result import Round, RunResult

    throughputs = [100.0, 130.0, 110.0, 120.0, 90.0, 140.0]  # even: the median is 115
    rounds = [
        Round(k + 1, "ok", str(tmp_path / f"r{k + 1}"), "t", 1.0, throughput=t).to_dict()
        for k, t in enumerate(throughputs)
    ]
    row = RunResult(
        run_id="run",
        status="ok",
        created_at="2026-12-06",
        model="lenet5",
        dataset="synthetic",
        strategy="ddp",
        framework="torch",
        workers=2,
        global_batch=64,
        local_batch=32,
        scaling="weak",
        throughput_median=115.0,
        rounds=rounds,
    )
    assert round_directory(row, None) == tmp_path / "r3"  # the lower middle round, 110
    assert round_directory(row, 5) == tmp_path / "r5"
