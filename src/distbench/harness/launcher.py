"""Launch one run's processes the way a cluster would: through torchrun.

``torch.distributed.run`` starts ``nproc_per_node`` workers with the torchrun environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), and when one
worker fails it tears the others down. We add what torchrun lacks for benchmarking: a
wall-clock timeout, a sweep of the whole process tree when anything is left, progress from
the ranks' record files, and a one-line cause of failure.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from distbench.config import RunConfig
from distbench.harness.records import count_step_lines, rank_file, read_run_records

POLL_SECONDS = 0.2
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
GRACE_SECONDS = 10.0


@dataclass
class LaunchOutcome:
    returncode: int
    error: str | None
    elapsed: float


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def torchrun_command(cfg: RunConfig, run_dir: Path, port: int) -> list[str]:
    nproc = cfg.processes() // cfg.nnodes
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nnodes={cfg.nnodes}",
        f"--node-rank={cfg.node_rank}",
        f"--nproc-per-node={nproc}",
        f"--master-addr={cfg.master_addr}",
        f"--master-port={port}",
        "--max-restarts=0",
        "--monitor-interval=0.2",
        f"--log-dir={run_dir / 'logs'}",
        "--redirects=3",
        "-m",
        worker_program(cfg),
        str(run_dir),
    ]


def worker_program(cfg: RunConfig) -> str:
    """The module torchrun starts on every rank. A strategy that survives a lost worker
    (ps-async with a central server: ``survives_worker_loss``) gets the supervisor, which
    outlives a killed worker so that torchrun does not stop the other ranks."""
    from distbench.strategies import STRATEGIES

    survives = getattr(STRATEGIES[cfg.strategy], "survives_worker_loss", None)
    if survives is not None and survives(cfg):
        return "distbench.harness.supervisor"
    return "distbench.harness.worker"


def warn_lost_ranks(run_dir: Path) -> None:
    """A run that went on without a lost rank succeeds, with a warning naming the rank (the
    supervisor wrote ``extra.lost`` in its summary)."""
    for rank, records in sorted(read_run_records(run_dir).items()):
        lost = ((records.summary or {}).get("extra") or {}).get("lost")
        if lost:
            sys.stderr.write(
                f"warning: rank {rank} was lost ({lost}); the run completed without it\n"
            )


def worker_environment(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    )
    return env


def _die_with_parent() -> None:
    """Runs in the torchrun child before exec: if distbench itself is killed (even with
    SIGKILL), the kernel sends torchrun SIGTERM, and torchrun stops its workers."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM torchrun (it forwards to its workers), then SIGKILL whatever is left."""
    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    for member in family:
        _signal_quietly(member, signal.SIGTERM)
    _, alive = psutil.wait_procs(family, timeout=GRACE_SECONDS)
    for member in alive:
        _signal_quietly(member, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=GRACE_SECONDS)


def _signal_quietly(process: psutil.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        process.send_signal(sig)


def launch(
    cfg: RunConfig, run_dir: Path, on_progress: Callable[[int], None] | None = None
) -> LaunchOutcome:
    """Run all local ranks of ``cfg`` to completion, failure or timeout."""
    if cfg.framework != "torch":  # issue 8: other frameworks start their own processes
        from distbench.frameworks.launch import launch_adapter  # imports this module

        return launch_adapter(cfg, run_dir, on_progress)
    if cfg.network or cfg.hosts:  # issue 7: emulated hosts, one torchrun launcher per host
        from distbench.netem.multihost import launch_hosts  # imports this module

        return launch_hosts(cfg, run_dir, on_progress)
    threads = cfg.resolved_threads()
    (run_dir / "config.json").write_text(json.dumps(cfg.replace(threads=threads).to_dict()))
    port = cfg.master_port or free_port()
    started = time.monotonic()
    with (run_dir / "launcher.log").open("wb") as log:
        proc = subprocess.Popen(
            torchrun_command(cfg, run_dir, port),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=worker_environment(threads),
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        timed_out = _wait(proc, cfg.timeout, started, run_dir, on_progress)
    elapsed = time.monotonic() - started
    if timed_out:
        return LaunchOutcome(-1, f"timed out after {cfg.timeout:g} s; all ranks stopped", elapsed)
    code = proc.returncode
    if code == 0:
        warn_lost_ranks(run_dir)
    return LaunchOutcome(code, None if code == 0 else diagnose_failure(run_dir), elapsed)


def _wait(
    proc: subprocess.Popen[bytes],
    timeout: float,
    started: float,
    run_dir: Path,
    on_progress: Callable[[int], None] | None,
) -> bool:
    """Poll until the launcher exits; True if we had to stop it for the timeout."""
    try:
        while proc.poll() is None:
            if time.monotonic() - started > timeout:
                kill_tree(proc)
                return True
            if on_progress is not None:
                on_progress(count_step_lines(rank_file(run_dir, 0)))
            time.sleep(POLL_SECONDS)
    except BaseException:  # Ctrl-C or anything else: leave no orphans behind
        kill_tree(proc)
        raise
    kill_tree(proc)  # torchrun has exited; sweep anything it left
    return False


# torchrun's failure summary lists each failed rank with its exit code (negative: signal).
_FAILED_RANK = re.compile(r"rank\s*:\s*(\d+)[^\n]*\n\s*exitcode\s*:\s*(-?\d+)")


def diagnose_failure(run_dir: Path) -> str:
    """One line saying which rank failed and why.

    A rank killed by a signal is the cause (the others then fail with connection errors);
    otherwise the earliest exception a rank recorded; otherwise torchrun's own summary.
    """
    log = (run_dir / "launcher.log").read_text(errors="replace")
    failures = [(int(rank), int(code)) for rank, code in _FAILED_RANK.findall(log)]
    # SIGTERM is how torchrun stops the survivors; any other signal is the real cause.
    killed = sorted((code == -signal.SIGTERM, rank, code) for rank, code in failures if code < 0)
    if killed:
        _, rank, code = killed[0]
        return f"rank {rank} died: {describe_exit(code)}"
    errors = [e for r in read_run_records(run_dir).values() for e in r.errors]
    if errors:
        return str(min(errors, key=lambda e: e.get("t", 0.0))["error"])
    if failures:
        rank, code = failures[0]
        return f"rank {rank} died: {describe_exit(code)}"
    tail = [line for line in log.splitlines() if line.strip()][-1:] or ["no output"]
    return f"launcher failed: {tail[0].strip()[:300]}"


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
