"""Bad input: one line on stderr, exit code 2, no traceback, nothing stored."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def distbench(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "distbench.cli.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=100,
    )


BAD_INPUTS = [
    (["--model", "nosuchnet"], "unknown model 'nosuchnet'"),
    (["--model", "lenet5", "--strategy", "nosuch"], "unknown strategy 'nosuch'"),
    (["--model", "lenet5", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["--model", "lenet5", "--strategy", "ddp", "--workers", "0"], "--workers must be at least 1"),
    (
        ["--model", "lenet5", "--dataset", "mnist", "--data-dir", "/nonexistent/mnist"],
        "/nonexistent/mnist",
    ),
    (["--model", "lenet5", "--dataset", "cifar10"], "--data-dir"),
    (["--model", "lenet5", "--workers", "two"], "expected comma-separated integers"),
]


@pytest.mark.parametrize(("args", "expected"), BAD_INPUTS)
def test_bad_run_input_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    result = distbench("run", *args, "--db", "r.db", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "r.db").exists()
    assert not (tmp_path / "distbench-runs").exists()


def test_unwritable_db_path(tmp_path: Path) -> None:
    result = distbench("run", "--model", "lenet5", "--db", "/nonexistent/dir/r.db", cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "/nonexistent/dir" in result.stderr


def test_unwritable_db_file(tmp_path: Path) -> None:
    """A store nobody can write, root included (a read-only file is writable by root):
    refused before anything runs."""
    result = distbench("run", "--model", "lenet5", "--db", "/proc/distbench.db", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write results database /proc/distbench.db" in lines[0]
    assert not (tmp_path / "distbench-runs").exists()


def test_results_without_database(tmp_path: Path) -> None:
    result = distbench("results", "--db", "missing.db", cwd=tmp_path)
    assert result.returncode == 2
    assert "no results database" in result.stderr
