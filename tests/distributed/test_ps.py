"""Parameter-server strategies through the real launcher (torchrun, gloo, 2-4 processes).

Equivalence (lenet5 at 32x32, batch 8, 5 steps, SGD with momentum and weight decay; no
batch norm, whose statistics depend on how a batch is split):
sync-split on 2 workers = sequential on the same global batch; sync-join on 2 workers =
sequential on the doubled batch; async on 1 worker = sequential; central and sharded
servers give identical weights in the sync modes. Then the breakdown and staleness of an
async resnet18 run, the semaphore's non-overlapping transfers, and killed workers.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from distbench.config import RunConfig
from distbench.harness.session import run_benchmarks, runs_dir_for
from distbench.store.result import RunResult

pytestmark = [pytest.mark.distributed]


def lenet(
    strategy: str, workers: int, batch: int, weights: Path | None = None, **kw: Any
) -> RunConfig:
    settings: dict[str, Any] = dict(
        model="lenet5",
        input_size=32,
        strategy=strategy,
        workers=workers,
        batch_size=batch,
        steps=5,
        warmup=0,
        threads=1,
        lr=0.05,
        momentum=0.9,
        weight_decay=1e-3,
        timeout=150,
    )
    settings.update(kw)
    return RunConfig(save_weights=str(weights) if weights else None, **settings)


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def run_ok(configs: list[RunConfig], db_path: Path) -> list[RunResult]:
    rows = run_benchmarks(configs, db_path)
    assert [r.status for r in rows] == ["ok"] * len(configs), [r.error for r in rows]
    return rows


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray], atol: float) -> None:
    assert list(a) == list(b)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=0, atol=atol, err_msg=key)


@pytest.mark.timeout(300)
def test_sync_split_equals_sequential_and_servers_agree(tmp_path: Path, db_path: Path) -> None:
    run_ok(
        [
            lenet("sequential", 1, 8, tmp_path / "seq.npz"),
            lenet("ps-sync-split", 2, 8, tmp_path / "central.npz"),
            lenet("ps-sync-split", 2, 8, tmp_path / "sharded.npz", servers="sharded"),
        ],
        db_path,
    )
    seq, central, sharded = (load(tmp_path / f"{n}.npz") for n in ("seq", "central", "sharded"))
    assert_same(central, seq, atol=1e-5)
    assert_same(central, sharded, atol=1e-6)
    assert any(not np.allclose(seq[k], 0) for k in seq)


@pytest.mark.timeout(300)
def test_sync_join_equals_sequential_on_doubled_batch(tmp_path: Path, db_path: Path) -> None:
    rows = run_ok(
        [
            lenet("sequential", 1, 16, tmp_path / "seq.npz"),
            lenet("ps-sync-join", 2, 8, tmp_path / "central.npz"),
            lenet("ps-sync-join", 2, 8, tmp_path / "sharded.npz", servers="sharded"),
        ],
        db_path,
    )
    seq, central, sharded = (load(tmp_path / f"{n}.npz") for n in ("seq", "central", "sharded"))
    assert_same(central, seq, atol=1e-5)
    assert_same(central, sharded, atol=1e-6)
    join = rows[1]
    assert join.global_batch == 16 and join.local_batch == 8
    assert join.scaling == "weak"
    roles = {r["rank"]: r["role"] for r in join.per_rank}
    assert roles == {0: "worker", 1: "worker", 2: "server"}  # the server is the last rank
    assert join.extra["ranks"]["2"]["server"]["updates"] == 5
    assert "assignment" in rows[2].extra  # sharded: rank 0 reports the assignment


@pytest.mark.timeout(300)
def test_async_one_worker_equals_sequential_and_reports_accuracy(
    tmp_path: Path, db_path: Path
) -> None:
    digits = {"dataset": "digits"}
    rows = run_ok(
        [
            lenet("sequential", 1, 8, tmp_path / "seq.npz", **digits),
            lenet("ps-async", 1, 8, tmp_path / "central.npz", **digits),
            lenet("ps-async", 1, 8, tmp_path / "sharded.npz", servers="sharded", **digits),
        ],
        db_path,
    )
    seq = load(tmp_path / "seq.npz")
    for name in ("central", "sharded"):
        assert_same(load(tmp_path / f"{name}.npz"), seq, atol=1e-6)
    for row in rows[1:]:
        assert 0.0 <= row.extra["accuracy"] <= 1.0
        assert row.final_loss == pytest.approx(rows[0].final_loss, rel=1e-5)
    staleness = rows[1].extra["ranks"]["1"]["server"]["staleness"]
    assert staleness["histogram"] == {"0": 5} and staleness["max"] == 0


def cli_run(
    args: list[str], db_path: Path, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "distbench.cli.main", "run", *args, "--db", str(db_path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


@pytest.mark.timeout(300)
def test_async_sharded_resnet18_reports_phases_and_staleness(db_path: Path) -> None:
    # The acceptance command, shrunk to a 32x32 input and a few steps to keep the test short.
    done = cli_run(
        [
            "--model",
            "resnet18",
            "--dataset",
            "synthetic",
            "--strategy",
            "ps-async",
            "--workers",
            "2",
            "--servers",
            "sharded",
            "--json",
            "--input-size",
            "32",
            "--batch-size",
            "4",
            "--steps",
            "4",
            "--warmup",
            "1",
            "--threads",
            "1",
        ],
        db_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    row = json.loads(done.stdout)[0]
    for phase in ("pull", "push", "update", "wait"):
        assert phase in row["breakdown"], phase
    assert row["breakdown"]["pull"] > 0 and row["breakdown"]["push"] > 0
    units = [row["extra"]["server"], row["extra"]["ranks"]["1"]["server"]]
    for unit in units:
        staleness = unit["staleness"]
        assert staleness["count"] == 10  # every gradient of both workers, warm-up included
        assert sum(staleness["histogram"].values()) == 10
        assert staleness["mean"] is not None and staleness["max"] >= 0
    assert set(row["extra"]["assignment"].values()) == {0, 1}


def overlaps(transfers: list[dict[str, Any]], direction: str) -> list[tuple[float, float]]:
    spans = sorted((t["start"], t["end"]) for t in transfers if t["direction"] == direction)
    return [(a, b) for (a, a_end), (b, _) in itertools.pairwise(spans) if b < a_end]


@pytest.mark.timeout(300)
def test_semaphore_serializes_transfers_and_charges_queue_to_wait(db_path: Path) -> None:
    configs = [
        lenet("ps-async", 3, 8, steps=8, warmup=1, ps_semaphore=True),
        lenet("ps-sync-join", 3, 8, steps=8, warmup=1, ps_semaphore=True, servers="sharded"),
    ]
    rows = run_ok(configs, db_path)
    for row in rows:
        extras = [row.extra, *row.extra.get("ranks", {}).values()]
        units = [e["server"] for e in extras if "server" in e]
        assert units, row.strategy
        for unit in units:
            assert {t["direction"] for t in unit["transfers"]} == {"pull", "push"}
            assert overlaps(unit["transfers"], "pull") == []
            assert overlaps(unit["transfers"], "push") == []
        queued = sum(u["queue_s"]["pull"] + u["queue_s"]["push"] for u in units)
        assert queued > 0
        if row.strategy == "ps-async":
            # three workers computing at once: a gradient is applied after another
            # worker's, on weights newer than it was computed on
            assert max(u["staleness"]["max"] for u in units) >= 1
        steps = [
            json.loads(line)
            for path in Path(row.run_dir or ".").glob("rank*.jsonl")
            for line in path.read_text().splitlines()
            if '"kind": "step"' in line
        ]
        worker_steps = [s for s in steps if "queue" in s]
        assert worker_steps
        for step in worker_steps:  # the queue time is inside the worker's wait
            assert step["phases"].get("wait", 0.0) >= step["queue"] - 1e-4


def start_and_kill_rank1(
    strategy: str,
    workers: int,
    db_path: Path,
) -> tuple[subprocess.CompletedProcess[str], float, Path]:
    """Start a long lenet5 run through the CLI, SIGKILL rank 1's training process after
    it has done 20 steps, wait for the command; returns (result, seconds after kill, run dir)."""
    runs = runs_dir_for(db_path)
    command = [
        sys.executable,
        "-m",
        "distbench.cli.main",
        "run",
        "--model",
        "lenet5",
        "--input-size",
        "32",
        "--batch-size",
        "8",
        "--strategy",
        strategy,
        "--workers",
        str(workers),
        "--steps",
        "300",
        "--warmup",
        "1",
        "--threads",
        "1",
        "--timeout",
        "200",
        "--json",
        "--db",
        str(db_path),
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    record = wait_for_steps(runs, rank=1, steps=20)
    victim = json.loads(record.read_text().splitlines()[0])["pid"]
    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    out, err = proc.communicate(timeout=240)
    return (
        subprocess.CompletedProcess(command, proc.returncode, out, err),
        time.monotonic() - killed,
        record.parent,
    )


def wait_for_steps(runs: Path, rank: int, steps: int) -> Path:
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        for path in runs.glob(f"*/rank{rank}.jsonl"):
            if path.read_text().count('"kind": "step"') >= steps:
                return path
        time.sleep(0.1)
    raise AssertionError(f"rank {rank} never reached {steps} steps")


def leftovers(run_dir: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(run_dir) in cmdline:
            found.append(process)
    return found


@pytest.mark.timeout(300)
def test_kill_in_sync_mode_fails_cleanly(db_path: Path) -> None:
    done, after_kill, run_dir = start_and_kill_rank1("ps-sync-join", 2, db_path)
    assert done.returncode == 1
    assert after_kill < 60
    row = json.loads(done.stdout)[0]
    assert row["status"] == "failed" and "rank 1" in row["error"]
    assert leftovers(run_dir) == []


@pytest.mark.timeout(300)
def test_kill_one_of_three_async_workers_others_finish(db_path: Path) -> None:
    done, _, run_dir = start_and_kill_rank1("ps-async", 3, db_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "warning: rank 1 was lost" in done.stderr
    row = json.loads(done.stdout)[0]
    assert row["status"] == "ok"
    server = row["extra"]["ranks"]["3"]
    assert list(server["lost_workers"]) == ["1"]
    assert "SIGKILL" in row["extra"]["ranks"]["1"]["lost"]
    steps = {r["rank"]: r["steps"] for r in row["per_rank"]}
    assert steps[0] == steps[2] == 300 and steps[1] < 300
    assert leftovers(run_dir) == []
