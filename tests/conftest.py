"""Shared fixtures. Multi-process tests pin one thread per rank so they behave the same on
any core count, and every test has a timeout (pytest-timeout, see pyproject.toml)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from distbench.frameworks.envs import is_installed

INSTALL_TIMEOUT = 1200


def may_install_envs() -> bool:
    """CI (and whoever asks) installs the framework environments; a laptop is not made to."""
    return bool(os.environ.get("CI")) or os.environ.get("DISTBENCH_FRAMEWORK_TESTS") == "1"


def ensure_framework_envs(names: tuple[str, ...], cost: str) -> None:
    """Install the missing ones of ``names`` where allowed, else skip saying how."""
    missing = [name for name in names if not is_installed(name)]
    if not missing:
        return
    if not may_install_envs():
        pytest.skip(
            f"environments {', '.join(missing)} are not installed; set "
            f"DISTBENCH_FRAMEWORK_TESTS=1 (or CI) to install them ({cost}), or run "
            f"`distbench env install {' '.join(missing)}`"
        )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "distbench.cli.main",
            "env",
            "install",
            *missing,
            "--timeout",
            str(INSTALL_TIMEOUT),
        ],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT * len(missing) + 60,
    )
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "results.db"
