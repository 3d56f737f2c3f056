"""``--launcher slurm`` against a real SLURM: slurmctld and two slurmd, each slurmd on its
own emulated host (``slurm_cluster.py``). A 2-node ddp run is submitted with sbatch from
the controller's host, stored like a local run (with the job id and node list) and equal to
a local run in its final weights; a job cancelled mid-run, or by Ctrl-C in the submitting
distbench, is stored as failed with the reason; a partition SLURM rejects is bad input.

Needs root (namespaces, daemons); installs slurm-wlm and munge with apt when missing.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from slurm_cluster import SlurmCluster, install_slurm, slurm_cluster

pytestmark = pytest.mark.timeout(900)

WORKLOAD = ["--model", "lenet5", "--dataset", "synthetic", "--batch-size", "16", "--seed", "3"]


@pytest.fixture(scope="module")
def running_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    if os.geteuid() != 0:
        pytest.skip("a SLURM cluster on emulated hosts needs root (network namespaces, daemons)")
    why = install_slurm()
    if why:
        pytest.skip(f"SLURM cannot run here: {why}")
    with slurm_cluster(tmp_path_factory.mktemp("slurm")) as running:
        yield running


@pytest.fixture
def cluster(running_cluster: SlurmCluster) -> SlurmCluster:
    """The cluster with every node idle: each test starts from the same state."""
    running_cluster.settle()
    return running_cluster


def distbench(
    cluster: SlurmCluster, *args: str, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """``distbench ARGS`` on the controller's host (the cluster's login node)."""
    return subprocess.run(
        cluster.on_controller([sys.executable, "-m", "distbench", *args]),
        capture_output=True,
        text=True,
        env=cluster.env,
        timeout=timeout,
        check=False,
    )


def stored(db: Path) -> list[dict[str, object]]:
    connection = sqlite3.connect(db)
    connection.row_factory = sqlite3.Row
    rows = [dict(row) for row in connection.execute("SELECT * FROM runs ORDER BY created_at")]
    connection.close()
    for row in rows:
        row["env"] = json.loads(str(row["env"]))
    return rows


def test_a_two_node_ddp_job_is_stored_like_a_local_run_and_trains_the_same(
    cluster: SlurmCluster, tmp_path: Path
) -> None:
    db = tmp_path / "slurm.db"
    common = [*WORKLOAD, "--strategy", "ddp", "--workers", "2", "--steps", "4"]
    done = distbench(
        cluster,
        "run",
        *common,
        "--launcher",
        "slurm",
        "--nnodes",
        "2",
        "--save-weights",
        str(tmp_path / "slurm.npz"),
        "--db",
        str(db),
        "--json",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "submitted (2 node(s))" in done.stderr
    assert "running on node[1-2]" in done.stderr
    [row] = stored(db)
    assert row["status"] == "ok", row["error"]
    env = row["env"]
    assert isinstance(env, dict)
    assert env["slurm_nodes"] == "node[1-2]"
    assert env["slurm_job_id"].isdigit()
    config = json.loads(str(row["config"]))
    assert config["nnodes"] == 2 and config["master_addr"] == cluster.nodes[0].address
    printed = json.loads(done.stdout)
    assert printed[0]["run_id"] == row["run_id"]

    local_db = tmp_path / "local.db"
    local = subprocess.run(
        [
            sys.executable,
            "-m",
            "distbench",
            "run",
            *common,
            "--save-weights",
            str(tmp_path / "local.npz"),
            "--db",
            str(local_db),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert local.returncode == 0, local.stderr[-2000:]
    on_slurm, here = np.load(tmp_path / "slurm.npz"), np.load(tmp_path / "local.npz")
    assert sorted(on_slurm.files) == sorted(here.files)
    for name in here.files:
        np.testing.assert_allclose(on_slurm[name], here[name], rtol=1e-6, atol=1e-7)


def endless_job(cluster: SlurmCluster, db: Path, *extra: str) -> subprocess.Popen[str]:
    """A submitted 2-node job that trains until it is stopped."""
    argv = cluster.on_controller(
        [
            sys.executable,
            "-m",
            "distbench",
            "run",
            *WORKLOAD,
            "--strategy",
            "ddp",
            "--workers",
            "2",
            "--steps",
            "100000",
            "--launcher",
            "slurm",
            "--nnodes",
            "2",
            "--db",
            str(db),
            *extra,
        ]
    )
    return subprocess.Popen(
        argv, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@dataclass
class Stopped:
    """A job stopped mid-run: its id, how the submitter ended, and the stored run."""

    job_id: str
    returncode: int
    stderr: str
    row: dict[str, object]


def stop_mid_run(
    cluster: SlurmCluster,
    db: Path,
    stop: Callable[[str, subprocess.Popen[str]], None],
    *extra: str,
) -> Stopped:
    """Submit a job that trains until stopped, wait until it trains, ``stop(job_id,
    submitter)`` it, and collect what the submitter did."""
    submitter = endless_job(cluster, db, *extra)
    try:
        job_id = wait_for_running_steps(cluster, db)
        stop(job_id, submitter)
        _, err = submitter.communicate(timeout=240)
    finally:
        if submitter.poll() is None:
            submitter.kill()
    [row] = stored(db)
    assert row["status"] == "failed"
    return Stopped(job_id, submitter.returncode, err, row)


def queue_empties(cluster: SlurmCluster, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while cluster.client("squeue", "-h").stdout.strip() and time.monotonic() < deadline:
        time.sleep(1.0)
    return cluster.client("squeue", "-h").stdout.strip() == ""


def test_a_job_cancelled_mid_run_is_stored_as_failed_with_slurms_reason(
    cluster: SlurmCluster, tmp_path: Path
) -> None:

    def scancel(job_id: str, _: subprocess.Popen[str]) -> None:
        assert cluster.client("scancel", job_id).returncode == 0

    done = stop_mid_run(cluster, tmp_path / "cancel.db", scancel)
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"SLURM job {done.job_id} CANCELLED" in str(done.row["error"])
    assert queue_empties(cluster)


def test_ctrl_c_in_the_submitter_cancels_the_job_and_stores_the_run_as_failed(
    cluster: SlurmCluster, tmp_path: Path
) -> None:

    def ctrl_c(_: str, submitter: subprocess.Popen[str]) -> None:
        submitter.send_signal(signal.SIGINT)

    done = stop_mid_run(cluster, tmp_path / "interrupt.db", ctrl_c)
    assert done.returncode == 130, done.stderr[-2000:]
    assert f"job {done.job_id}: cancelled (Ctrl-C)" in done.stderr
    assert "Ctrl-C in the submitting distbench" in str(done.row["error"])
    assert queue_empties(cluster)


def test_a_job_past_its_time_limit_is_stored_as_failed_with_timeout(
    cluster: SlurmCluster, tmp_path: Path
) -> None:

    def wait(_: str, __: subprocess.Popen[str]) -> None:
        pass  # SLURM stops it after a minute, its least time limit

    done = stop_mid_run(cluster, tmp_path / "timeout.db", wait, "--slurm-time", "1")
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"SLURM job {done.job_id} TIMEOUT: reached its time limit" in str(done.row["error"])


def test_a_node_lost_mid_run_fails_the_job_and_the_run_is_stored_as_failed(
    cluster: SlurmCluster, tmp_path: Path
) -> None:

    def lose_node_2(_: str, __: subprocess.Popen[str]) -> None:
        cluster.lose_node(1)  # its slurmd, step daemon and rank, all at once

    try:
        done = stop_mid_run(cluster, tmp_path / "lost.db", lose_node_2)
    finally:
        cluster.restart_node(1)
    assert done.returncode == 1, done.stderr[-2000:]
    error = str(done.row["error"])
    # node 0's rank loses its peer and the step fails, or slurmctld declares the node dead
    # first: either way SLURM's word leads
    assert any(f"SLURM job {done.job_id} {s}" in error for s in ("FAILED", "NODE_FAIL")), error


def queue_state(cluster: SlurmCluster) -> str:
    jobs = cluster.client("squeue", "-h", "-o", "%i %T %r").stdout.strip()
    nodes = cluster.client("sinfo", "-h", "-N", "-o", "%N %T").stdout.strip()
    return f"jobs: {jobs or 'none'}; nodes: {nodes}"


def wait_for_running_steps(cluster: SlurmCluster, db: Path, timeout: float = 180.0) -> str:
    """The job id, once node 0 has stored the run as running and its ranks train."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.is_file():
            with_ids = [r for r in stored(db) if isinstance(r["env"], dict)]
            for row in with_ids:
                env = row["env"]
                assert isinstance(env, dict)
                run_dir = Path(str(row["run_dir"]))
                if row["status"] == "running" and (run_dir / "rank0.jsonl").is_file():
                    return str(env["slurm_job_id"])
        time.sleep(1.0)
    raise AssertionError(f"the job never started training: {queue_state(cluster)}")


def test_a_partition_slurm_rejects_is_one_line_and_exit_2(
    cluster: SlurmCluster, tmp_path: Path
) -> None:
    done = distbench(
        cluster,
        "run",
        *WORKLOAD,
        "--strategy",
        "ddp",
        "--workers",
        "2",
        "--launcher",
        "slurm",
        "--nnodes",
        "2",
        "--slurm-partition",
        "nosuchpartition",
        "--db",
        str(tmp_path / "rejected.db"),
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "sbatch rejected the job" in lines[0] and "partition" in lines[0].lower()
    assert "Traceback" not in done.stderr
