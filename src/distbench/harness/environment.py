"""Capture the environment a result was measured in: a different library stack silently
changes results, so every stored run carries it."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

import distbench


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@cache
def distbench_commit() -> str:
    """The git commit of the distbench source in use, with '+dirty' if modified."""
    source = Path(distbench.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=source,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=source,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty.strip() else "")


def capture_environment() -> dict[str, Any]:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "distbench": distbench.__version__,
        "distbench_commit": distbench_commit(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_bytes": psutil.virtual_memory().total,
        "hostname": socket.gethostname(),
        "gpu": gpu,
        "cuda": torch.version.cuda,
        **slurm_job(),
    }


def slurm_job() -> dict[str, str]:
    """The SLURM job a run ran in: its id and nodes, and with ``--launcher slurm`` the job
    directory its submitter wrote (``harness/slurm.py``), which tells its rows apart."""
    if not os.environ.get("SLURM_JOB_ID"):
        return {}
    found = {
        "slurm_job_id": os.environ["SLURM_JOB_ID"],
        "slurm_nodes": os.environ.get("SLURM_JOB_NODELIST", ""),
    }
    if os.environ.get(SLURM_JOB_DIR_VARIABLE):
        found["slurm_job_dir"] = os.environ[SLURM_JOB_DIR_VARIABLE]
    return found


#: Set by a SLURM job's node task to the job directory (``harness/slurm_node.py``).
SLURM_JOB_DIR_VARIABLE = "DISTBENCH_SLURM_JOB_DIR"
