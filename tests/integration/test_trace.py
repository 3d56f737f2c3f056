"""``distbench trace RUN`` on a real 2-rank run with operator profiles: one process per
rank, and every profiled operator inside its rank's profiled steps on the shared clock."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from distbench.analysis.timeline import STEPS_THREAD

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def distbench(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "distbench", *args],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=cwd,
        check=False,
    )


def test_a_traced_run_shows_every_rank_on_one_clock_with_its_operators(tmp_path: Path) -> None:
    db = str(tmp_path / "t.db")
    run = distbench(
        "run",
        *(
            "--model",
            "lenet5",
            "--strategy",
            "ddp",
            "--workers",
            "2",
            "--steps",
            "6",
            "--warmup",
            "2",
        ),
        *("--profile-ops", "--threads", "1", "--db", db, "--json"),
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    run_id = json.loads(run.stdout)[0]["run_id"]
    traced = distbench("trace", run_id[-6:], "--db", db, cwd=tmp_path)
    assert traced.returncode == 0, traced.stderr
    assert "ui.perfetto.dev" in traced.stderr
    events = json.loads((tmp_path / f"trace-{run_id}.json").read_text())["traceEvents"]
    processes = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert sorted(processes) == [0, 1]
    for rank in (0, 1):
        steps = [e for e in events if e["pid"] == rank and e.get("cat") == "step"]
        assert len(steps) == 2 + 6
        profiled = [s for s in steps if "(profiled)" in s["name"]]
        assert profiled
        ops = [e for e in events if e["pid"] == rank and e.get("cat") == "cpu_op"]
        nested = [e for e in ops if e["tid"] == STEPS_THREAD]
        assert any(e["name"].startswith("aten::") for e in nested)
        first = min(s["ts"] for s in profiled)
        last = max(s["ts"] + s["dur"] for s in profiled)
        # the profiler's clock and the step records' clock agree: its operators run in the
        # steps it profiled (1 ms of slack for the two clocks' rounding)
        inside = [e for e in ops if first - 1000 <= e["ts"] <= last + 1000]
        assert len(inside) >= 0.95 * len(ops), (first, last, [e["ts"] for e in ops[:5]])
        # most of the training thread's operators sit under a phase of a profiled step
        assert len(nested) >= 0.5 * len(ops)
    for track in {(e["pid"], e["tid"]) for e in events if e["ph"] == "X"}:
        assert_nested([e for e in events if e["ph"] == "X" and (e["pid"], e["tid"]) == track])


def assert_nested(track: list[dict]) -> None:
    """Slices of one track nest (Perfetto drops slices that overlap without nesting)."""
    open_ends: list[float] = []
    for event in sorted(track, key=lambda e: (e["ts"], -e["dur"])):
        while open_ends and open_ends[-1] <= event["ts"] + 1e-6:
            open_ends.pop()
        end = event["ts"] + event["dur"]
        assert not open_ends or end <= open_ends[-1] + 1e-6, event
        open_ends.append(end)


def test_tracing_an_unknown_run_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = distbench("trace", "nosuch", "--db", str(tmp_path / "none.db"), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"distbench trace: error: no run 'nosuch' in {tmp_path / 'none.db'} "
        "(see `distbench results`)"
    ]
