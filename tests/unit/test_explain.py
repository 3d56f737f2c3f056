"""The top-down comparison (analysis/explain.py) on synthetic rows, and its CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from distbench.analysis.explain import (
    Delta,
    dominant,
    explain_rows,
    explain_runs,
    group_deltas,
    phase_deltas,
    resolve_run,
    seconds,
    suite_findings,
)
from distbench.cli.main import main
from distbench.errors import UserError
from distbench.harness.monitor import mean_in_window
from distbench.store import open_store
from distbench.store.result import RunResult


def profile(phases: dict[str, dict[str, float]]) -> dict[str, Any]:
    """An operator profile in the shape OperatorProfiler writes (seconds per step)."""
    return {
        "unit": "seconds per step",
        "steps": [5, 6, 7],
        "phases": {
            phase: {
                "self_s": sum(ops.values()),
                "ops": [
                    {"name": n, "self_s": s, "total_s": s, "calls": 1.0, "self_device_s": 0.0}
                    for n, s in sorted(ops.items(), key=lambda kv: -kv[1])
                ],
            }
            for phase, ops in phases.items()
        },
        "top": [],
    }


def row(
    run_id: str,
    strategy: str = "sequential",
    workers: int = 1,
    breakdown: dict[str, float] | None = None,
    **extra: Any,
) -> RunResult:
    base: dict[str, Any] = {
        "run_id": run_id,
        "status": "ok",
        "error": None,
        "created_at": f"2026-01-01T00:{run_id}",
        "model": "resnet18",
        "dataset": "synthetic",
        "strategy": strategy,
        "framework": "torch",
        "workers": workers,
        "threads_per_worker": 1,
        "local_batch": 32,
        "global_batch": 32 * workers,
        "scaling": "weak",
        "throughput_median": 100.0,
        "throughput_ci_low": 90.0,
        "throughput_ci_high": 110.0,
        "step_time_median": 0.3,
        "breakdown": breakdown or {"data": 0.01, "forward": 0.1, "backward": 0.2, "update": 0.02},
        "oversubscribed": False,
        "operators": None,
        "resources": None,
    }
    base.update(extra)
    return RunResult.from_row(base)


SEQ_OPS = profile(
    {
        "forward": {"aten::mkldnn_convolution": 0.06, "aten::native_batch_norm": 0.02},
        "backward": {
            "aten::convolution_backward": 0.12,
            "aten::native_batch_norm_backward": 0.03,
            "aten::threshold_backward": 0.02,
            "aten::add_": 0.01,
        },
    }
)
DDP_OPS = profile(
    {
        "forward": {"aten::mkldnn_convolution": 0.07, "aten::native_batch_norm": 0.02},
        "backward": {
            "aten::convolution_backward": 0.30,
            "aten::native_batch_norm_backward": 0.08,
            "aten::threshold_backward": 0.05,
            "aten::add_": 0.011,
        },
        "comm": {"c10d::allreduce_": 0.001},
    }
)


def seq_and_ddp(profiled: bool = True) -> tuple[RunResult, RunResult]:
    a = row("01", operators=SEQ_OPS if profiled else None)
    b = row(
        "02",
        "ddp",
        2,
        {"data": 0.01, "forward": 0.11, "backward": 0.45, "comm": 0.05, "update": 0.02},
        operators=DDP_OPS if profiled else None,
    )
    return a, b


def test_phase_deltas_add_up_to_the_total() -> None:
    deltas = phase_deltas(
        {"forward": 1.0, "backward": 2.0}, {"forward": 1.5, "backward": 2.0, "comm": 0.5}
    )
    assert [d.name for d in deltas] == ["forward", "backward", "comm"]
    assert sum(d.delta_s for d in deltas) == pytest.approx(1.0)
    assert [d.share for d in deltas] == pytest.approx([0.5, 0.0, 0.5])


def test_groups_split_compute_from_communication() -> None:
    groups = group_deltas(
        phase_deltas({"forward": 1.0}, {"forward": 1.0, "comm": 0.4, "wait": 0.1})
    )
    assert [(g.name, round(g.delta_s, 6)) for g in groups] == [
        ("compute", 0.0),
        ("communication", 0.5),
    ]


def test_dominant_follows_the_direction_of_the_total() -> None:
    deltas = [
        Delta("forward", 1, 0.2, -0.8),
        Delta("comm", 0, 0.5, 0.5),
        Delta("backward", 1, 1.4, 0.4),
    ]
    up, down = dominant(deltas, total=0.1), dominant(deltas, total=-0.1)
    assert up is not None and up.name == "comm"  # the biggest *increase*
    assert down is not None and down.name == "forward"
    assert dominant([], 1.0) is None


def test_explain_names_the_phase_and_three_operators() -> None:
    a, b = seq_and_ddp()
    e = explain_rows(a, b)
    assert e.delta_s == pytest.approx(0.31)
    assert e.phase == "backward"
    assert e.operator_scope == "backward"
    assert [op.name for op in e.operators[:3]] == [
        "aten::convolution_backward",
        "aten::native_batch_norm_backward",
        "aten::threshold_backward",
    ]
    assert e.operators[0].delta_s == pytest.approx(0.18)
    for name in (
        "backward",
        "aten::convolution_backward",
        "aten::native_batch_norm_backward",
        "aten::threshold_backward",
    ):
        assert name in e.conclusion
    assert "aten::add_" not in e.conclusion
    assert e.conclusion.endswith(".")


def test_explain_without_profiles_says_how_to_get_operators() -> None:
    a, b = seq_and_ddp(profiled=False)
    e = explain_rows(a, b)
    assert e.operators == [] and e.operator_scope == "none"
    assert "run both with --profile-ops" in e.conclusion


def test_explain_faster_b_picks_the_phase_that_shrank() -> None:
    a, b = seq_and_ddp()
    e = explain_rows(b, a)  # reversed: B is now faster
    assert e.delta_s < 0 and e.phase == "backward"
    assert e.operators[0].name == "aten::convolution_backward"
    assert "less than A" in e.conclusion


def test_forced_phase_and_unknown_phase() -> None:
    a, b = seq_and_ddp()
    e = explain_rows(a, b, phase="forward")
    assert e.phase == "forward" and e.operators[0].name == "aten::mkldnn_convolution"
    with pytest.raises(UserError, match="phase 'pull'"):
        explain_rows(a, b, phase="pull")


def test_comm_phase_falls_back_to_all_phases_when_no_ops_there() -> None:
    a = row("01", breakdown={"forward": 0.1}, operators=profile({"forward": {"op": 0.1}}))
    b = row(
        "02", "ddp", 2, {"forward": 0.1, "comm": 0.3}, operators=profile({"forward": {"op": 0.1}})
    )
    assert a.operators is not None and b.operators is not None
    b.operators["top"] = [{"name": "op", "self_s": 0.1}]
    a.operators["top"] = [{"name": "op", "self_s": 0.1}]
    e = explain_rows(a, b)
    assert e.phase == "comm" and e.operator_scope == "all phases"


def test_notes_name_setup_differences_and_saturation() -> None:
    a, b = seq_and_ddp()
    a.threads_per_worker = 2
    b.local_batch = 16
    b.oversubscribed = True
    b.resources = {
        "window": [1.0, 2.0],
        "ranks": {"0": {"t": [0.5, 1.2, 1.8], "system_cpu_percent": [10.0, 95.0, 99.0]}},
    }
    notes = " | ".join(explain_rows(a, b).notes)
    assert "threads per worker differ (A 2, B 1)" in notes
    assert "local batches differ" in notes
    assert "B was oversubscribed" in notes
    assert "B 97%" in notes


def test_mean_in_window_uses_only_measured_samples() -> None:
    resources = {
        "window": [1.0, 2.0],
        "ranks": {"0": {"t": [0.0, 1.5], "x": [100.0, 20.0]}, "1": {"t": [1.9], "x": [40.0]}},
    }
    assert mean_in_window(resources, "x") == pytest.approx(30.0)
    assert mean_in_window(None, "x") is None


def test_failed_run_cannot_be_explained() -> None:
    a, b = seq_and_ddp()
    b = replace(b, status="failed", error="rank 1 died", breakdown={})
    with pytest.raises(UserError, match="rank 1 died"):
        explain_rows(a, b)


def test_seconds_formatting() -> None:
    assert seconds(1.234) == "1.23 s"
    assert seconds(0.0456) == "45.6 ms"
    assert seconds(-0.000789, signed=True) == "−789 µs"
    assert seconds(0.002, signed=True) == "+2.0 ms"


def test_suite_findings_explain_multi_worker_runs_against_their_baseline() -> None:
    a, b = seq_and_ddp()
    b = replace(
        b,
        baseline_run_id="01",
        efficiency=0.4,
        speedup=0.8,
        throughput_median=160.0,
        baseline="sequential x1, weak scaling",
    )
    findings = suite_findings([a, b])
    assert findings[0].topic == "resnet18 on synthetic"
    assert "highest throughput: resnet18 ddp ×2" in findings[0].text
    assert findings[1].text.startswith("efficiency 0.40: ")
    assert "aten::convolution_backward" in findings[1].text


def stored(tmp_path: Path, rows: list[RunResult]) -> Path:
    db = tmp_path / "r.db"
    store = open_store(db)
    for r in rows:
        store.insert(r)
    store.close()
    return db


def test_resolve_run_by_suffix_and_errors(tmp_path: Path) -> None:
    a, b = seq_and_ddp()
    a.run_id, b.run_id = "20260101-000000-abc123", "20260101-000001-def123"
    store = open_store(stored(tmp_path, [a, b]))
    try:
        assert resolve_run(store, "abc123").strategy == "sequential"
        assert resolve_run(store, b.run_id).strategy == "ddp"
        with pytest.raises(UserError, match="ambiguous"):
            resolve_run(store, "123")
        with pytest.raises(UserError, match="no run 'zzz'"):
            resolve_run(store, "zzz")
        assert explain_runs(store, "abc123", "def123").phase == "backward"
    finally:
        store.close()


def test_cli_json_and_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = stored(tmp_path, list(seq_and_ddp()))
    assert main(["explain", "01", "02", "--db", str(db), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["phase"] == "backward"
    assert data["operators"][0]["name"] == "aten::convolution_backward"
    assert main(["explain", "01", "02", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "2. phases" in out and "aten::convolution_backward" in out


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "a", "b", "--db", str(tmp_path / "missing.db")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no results database" in err
    db = stored(tmp_path, list(seq_and_ddp()))
    assert main(["explain", "01", "nope", "--db", str(db)]) == 2
    assert "no run 'nope'" in capsys.readouterr().err


def test_phase_without_cpu_change_is_called_waiting() -> None:
    ops = profile({"push": {"gloo:send": 0.0001}, "forward": {"op": 0.01}})
    a = row("01", "ps-sync-join", 2, {"forward": 0.01, "push": 0.02}, operators=ops)
    b = row("02", "ps-async", 2, {"forward": 0.01, "push": 0.001}, operators=ops)
    e = explain_rows(a, b)
    assert e.phase == "push" and e.operator_scope == "push"
    assert "difference is time spent waiting, not CPU work" in e.conclusion
    assert any("push is mostly waiting" in note for note in e.notes)
