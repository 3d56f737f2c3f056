"""A multi-node run whose other nodes never come: it says so while it waits, then gives up
after --rendezvous-timeout and is stored as failed with the reason."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distbench.config import RunConfig
from distbench.harness.torchrun import torchrun_command, waiting_for

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(180)]

CLI = [sys.executable, "-m", "distbench.cli.main"]


def test_who_a_node_waits_for() -> None:
    zero = RunConfig(model="lenet5", strategy="ddp", workers=4, nnodes=4, master_addr="10.0.0.1")
    assert waiting_for(zero, 29500) == (
        "node 0 of 4 is waiting for nodes 1..3 to join at 10.0.0.1:29500"
    )
    two = zero.replace(node_rank=2)
    assert "node 2 of 4 is waiting to join node 0" in waiting_for(two, 29500)
    command = torchrun_command(zero.replace(rendezvous_timeout=42.0), Path("/tmp/x"), 29500)
    assert "--rdzv-conf=timeout=42" in command


def test_a_node_alone_says_it_waits_then_gives_up(tmp_path: Path) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [
            *CLI,
            "run",
            "--model",
            "lenet5",
            "--strategy",
            "ddp",
            "--workers",
            "2",
            "--nnodes",
            "2",
            "--node-rank",
            "0",
            "--master-port",
            "29731",
            "--rendezvous-timeout",
            "14",
            "--db",
            "r.db",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=150,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 1
    assert "node 0 of 2 is waiting for node 1 to join at 127.0.0.1:29731" in done.stderr
    assert "gives up after 14 s" in done.stderr
    assert elapsed < 120  # gave up at the rendezvous timeout, not at the run's 600 s
    with sqlite3.connect(tmp_path / "r.db") as db:
        status, error = db.execute("SELECT status, error FROM runs").fetchone()
    assert status == "failed" and error.startswith("rendezvous failed: node 0 of 2")
