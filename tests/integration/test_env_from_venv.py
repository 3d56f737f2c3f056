"""Framework environments build from wherever distbench is installed.

distbench is installed into a fresh virtual environment (the usual way), the Horovod
environment is built from there, and the Horovod-equals-DDP integration test then runs
with that venv's Python. Horovod builds against distbench's torch, so the environment must
see the venv's packages, not the base interpreter's (which ``venv --system-site-packages``
from a venv would give). The source build takes several minutes: CI (or
``DISTBENCH_FRAMEWORK_TESTS=1``) runs it; elsewhere it skips and says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import may_install_envs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(3000)]

REPO = Path(__file__).resolve().parents[2]


def run(argv: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 0, f"{' '.join(argv[:4])}: {done.stdout[-1500:]}{done.stderr[-3000:]}"
    return done


def test_horovod_env_builds_from_a_venv_install_and_trains_like_ddp(tmp_path: Path) -> None:
    if not may_install_envs():
        pytest.skip(
            "installs distbench into a venv and builds Horovod from source (~6 minutes); "
            "set DISTBENCH_FRAMEWORK_TESTS=1 (or CI) to run it"
        )
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["DISTBENCH_ENVS"] = str(tmp_path / "envs")
    run([sys.executable, "-m", "venv", str(venv)], env, 120)
    python = venv / "bin" / "python"
    run([str(python), "-m", "pip", "install", "-q", "-e", f"{REPO}[dev]"], env, 900)

    started = time.monotonic()
    run([str(venv / "bin" / "distbench"), "env", "install", "horovod"], env, 1800)
    built_s = time.monotonic() - started
    marker = json.loads((tmp_path / "envs" / "horovod" / "distbench-env.json").read_text())
    # built against the venv's torch, which the venv's Python imports
    assert Path(marker["base"]["torch_dir"]).is_relative_to(venv.resolve()), marker["base"]
    listed = run([str(venv / "bin" / "distbench"), "env", "list", "--json"], env, 120)
    horovod = next(row for row in json.loads(listed.stdout) if row["name"] == "horovod")
    assert horovod["installed"] and horovod["problem"] is None

    started = time.monotonic()
    test = f"{REPO}/tests/integration/test_frameworks.py"
    tested = run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", test, "-k", "like_ddp"],
        {**env, "PYTHONDONTWRITEBYTECODE": "1"},
        1200,
    )
    assert "1 passed" in tested.stdout, tested.stdout[-2000:]
    print(f"horovod env built from a venv in {built_s:.0f} s; "
          f"Horovod = DDP test {time.monotonic() - started:.0f} s")  # fmt: skip
