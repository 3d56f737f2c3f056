"""End-to-end CLI runs in a subprocess: JSON output, results listing, a killed rank."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = [pytest.mark.integration]

CLI = [sys.executable, "-m", "distbench.cli.main"]


def our_processes(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if marker in cmdline and proc.pid != os.getpid():
            found.append(proc)
    return found


@pytest.mark.timeout(300)
def test_run_json_then_results(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            *CLI,
            "run",
            "--model",
            "lenet5",
            "--strategy",
            "sequential,ddp",
            "--workers",
            "1,2",
            "--steps",
            "5",
            "--warmup",
            "1",
            "--batch-size",
            "8",
            "--json",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout)  # stdout carries only the JSON
    assert [(r["strategy"], r["workers"]) for r in rows] == [
        ("sequential", 1),
        ("ddp", 1),
        ("ddp", 2),
    ]
    assert rows[2]["speedup"] is not None and rows[2]["efficiency"] is not None
    listed = subprocess.run(
        [*CLI, "results", "--format", "csv", "--strategy", "ddp"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0
    assert len(listed.stdout.strip().splitlines()) == 3  # header + 2 ddp runs
    table = subprocess.run(
        [*CLI, "results"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert "lenet5" in table.stdout and "speedup" in table.stdout


@pytest.mark.timeout(180)
def test_sigkill_of_one_rank_fails_the_run_cleanly(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            *CLI,
            "run",
            "--model",
            "lenet5",
            "--strategy",
            "ddp",
            "--workers",
            "2",
            "--steps",
            "100000",
            "--warmup",
            "0",
            "--batch-size",
            "8",
            "--threads",
            "1",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    runs = tmp_path / "distbench-runs"
    try:
        victim = _wait_for_rank(runs, rank=1, timeout=90)
        victim.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        _, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:  # the test failed: do not leave the benchmark running
            proc.terminate()
            proc.wait(timeout=30)
    assert time.monotonic() - killed_at < 60
    assert proc.returncode != 0
    assert "Traceback" not in stderr
    assert our_processes(str(runs)) == []
    with sqlite3.connect(tmp_path / "distbench.db") as db:
        status, error = db.execute("SELECT status, error FROM runs").fetchone()
    assert status == "failed"
    assert "rank 1" in error and "SIGKILL" in error


def _wait_for_rank(runs: Path, rank: int, timeout: float) -> psutil.Process:
    """The worker process of ``rank`` once it has recorded a few steps."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in runs.glob(f"*/rank{rank}.jsonl"):
            if record.read_text().count('"kind": "step"') >= 3:
                for candidate in our_processes(str(record.parent)):
                    if "distbench.harness.worker" in " ".join(
                        candidate.cmdline()
                    ) and candidate.environ().get("RANK") == str(rank):
                        return candidate
        time.sleep(0.2)
    raise AssertionError(f"rank {rank} never started")


@pytest.mark.timeout(400)
def test_rounds_are_interleaved_stored_and_compared(tmp_path: Path) -> None:
    """Two configurations in 3 rounds each: rounds alternate between them, every round is
    stored with its own directory, the interval is over rounds, and comparing the store
    with itself finds no measurable difference anywhere."""
    common = ["--model", "lenet5", "--steps", "4", "--warmup", "1", "--batch-size", "8"]
    run = subprocess.run(
        [*CLI, "run", *common, "--strategy", "sequential,ddp", "--rounds", "3", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=380,
    )
    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout)
    assert len(rows) == 2 and all(len(r["rounds"]) == 3 for r in rows)
    started = sorted(
        (entry["started_at"], row["strategy"]) for row in rows for entry in row["rounds"]
    )
    assert [s for _, s in started] == ["sequential", "ddp"] * 3  # A B A B A B
    for row in rows:
        values = [entry["throughput"] for entry in row["rounds"]]
        assert row["throughput_ci_low"] == min(values) and row["throughput_ci_high"] == max(values)
        assert sorted(values)[1] == row["throughput_median"]
        assert all(Path(entry["run_dir"]).is_dir() for entry in row["rounds"])
        assert row["run_dir"] in [entry["run_dir"] for entry in row["rounds"]]
        assert "step_jitter" in row["extra"]
    ddp = rows[1]
    assert ddp["speedup_ci"] is not None and ddp["speedup_verdict"]
    db = str(tmp_path / "distbench.db")
    same = subprocess.run(
        [*CLI, "results", "--compare", db, db, "--json", "--fail-above", "1%"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert same.returncode == 0, same.stderr
    assert {c["verdict"] for c in json.loads(same.stdout)} == {"no measurable difference"}
