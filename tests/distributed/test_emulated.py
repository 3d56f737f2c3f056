"""Emulated compute through the real launcher: every strategy that supports it runs with
waits for compute and real communication, reports its wait error, and never becomes the
baseline of a real run."""

from __future__ import annotations

from pathlib import Path

import pytest

from distbench.config import RunConfig
from distbench.harness.session import run_benchmarks

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(300)]

GRADIENT_S = 0.06


def emulated(strategy: str, workers: int, **kw: object) -> RunConfig:
    return RunConfig(
        model="lenet5",
        strategy=strategy,
        workers=workers,
        batch_size=8,
        steps=6,
        warmup=1,
        threads=1,
        compute=str(GRADIENT_S),
        timeout=180,
        **kw,  # type: ignore[arg-type]
    )


def test_emulated_runs_wait_for_compute_and_communicate(db_path: Path) -> None:
    configs = [
        emulated("sequential", 1),
        emulated("ddp", 3),
        emulated("ps-sync-join", 2),
        emulated("ps-async", 2, servers="sharded"),
        RunConfig(model="lenet5", batch_size=8, steps=4, warmup=1, threads=1, timeout=180),
    ]
    rows = run_benchmarks(configs, db_path)
    assert [r.status for r in rows] == ["ok"] * 5, [r.error for r in rows]
    for row in rows[:4]:
        report = row.extra["compute"]
        assert report["source"] == f"{GRADIENT_S:g} s"
        assert report["wait_error"] < 0.5  # loose: the suite runs on busy machines too
        assert "cpu_cores" in report
        # flagged exactly when the emulation was not faithful (which a busy machine makes)
        assert row.oversubscribed == (not report["faithful"])
        # forward + backward is the asked gradient time, at least
        grad = row.breakdown["forward"] + row.breakdown["backward"]
        assert grad >= GRADIENT_S * 0.99, row.breakdown
    ddp = rows[1]
    assert ddp.comm_total is not None and ddp.comm_total > 0  # the all-reduce really ran
    assert ddp.speedup is not None  # over the emulated sequential run ...
    assert ddp.baseline_run_id == rows[0].run_id  # ... never over the real one
    assert rows[4].speedup == pytest.approx(1.0) and rows[4].baseline_run_id == rows[4].run_id
