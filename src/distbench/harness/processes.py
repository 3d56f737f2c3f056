"""Process supervision, written once: spawn, watch under a deadline, kill the tree, diagnose.

Every launcher (torchrun on this machine, one torchrun per emulated host, a framework
adapter's own processes) is a list of child processes that must finish before a deadline,
and whose whole process tree must be gone afterwards whatever happened (success, a failed
rank, a timeout, Ctrl-C). This module holds that machinery so that each launcher only says
*what* to start; ``launchers.py`` says which launcher a run gets.

This module imports no torch and no other distbench layer above the records contract.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from distbench.measurement.records import count_step_lines, rank_file, read_run_records

POLL_SECONDS = 0.2
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
GRACE_SECONDS = 10.0


@dataclass
class LaunchOutcome:
    """How one launch ended: the exit code (-1: timed out), a one-line cause, seconds."""

    returncode: int
    error: str | None
    elapsed: float


@dataclass(frozen=True)
class WatchResult:
    """What :func:`watch` saw: whether the deadline stopped the processes, and the index of
    the first process that exited non-zero (None: none did)."""

    timed_out: bool
    failed: int | None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def worker_environment(threads: int) -> dict[str, str]:
    """This process's environment with the thread count every rank must use."""
    env = dict(os.environ)
    env.update(
        {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    )
    return env


def write_run_config(run_dir: Path, cfg_dict: dict[str, Any]) -> Path:
    """``RUN_DIR/config.json``: what every rank of the run reads at start."""
    path = run_dir / "config.json"
    path.write_text(json.dumps(cfg_dict))
    return path


#: Files beside ``config.json`` that the ranks read (emulated compute's plan).
RUN_INPUT_FILES = ("compute.json",)


def copy_run_inputs(run_dir: Path, target: Path) -> None:
    """Give another host's directory the run's input files that exist."""
    for name in RUN_INPUT_FILES:
        if (run_dir / name).is_file() and run_dir != target:
            shutil.copy2(run_dir / name, target / name)


def die_with_parent() -> None:
    """Runs in a child before exec: if distbench itself is killed (even with SIGKILL), the
    kernel sends the child SIGTERM, and the child (torchrun) stops its own workers."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    argv: Sequence[str],
    env: dict[str, str],
    log: Path | None = None,
    tied_to_parent: bool = True,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session (so :func:`kill_tree` can find all of it), output to
    ``log`` (or a pipe), no stdin. ``tied_to_parent``: the child gets SIGTERM if we die."""
    out: Any = log.open("wb") if log is not None else subprocess.PIPE
    try:
        return subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            preexec_fn=die_with_parent if tied_to_parent and sys.platform == "linux" else None,
        )
    finally:
        if log is not None:
            out.close()


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process and all its descendants (torchrun forwards to its workers), then
    SIGKILL whatever is left after a grace period."""
    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    for member in family:
        signal_quietly(member, signal.SIGTERM)
    _, alive = psutil.wait_procs(family, timeout=GRACE_SECONDS)
    for member in alive:
        signal_quietly(member, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=GRACE_SECONDS)
    proc.poll()


def signal_quietly(process: psutil.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        process.send_signal(sig)


def stop_all(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        kill_tree(proc)


def first_failed(procs: Sequence[subprocess.Popen[bytes]]) -> int | None:
    return next((i for i, p in enumerate(procs) if p.poll() not in (None, 0)), None)


def watch(
    procs: Sequence[subprocess.Popen[bytes]],
    timeout: float,
    on_poll: Callable[[], None] | None = None,
    finished: Callable[[], bool] | None = None,
    failure_grace: float = 0.0,
    started: float | None = None,
    on_timeout: Callable[[], None] | None = None,
) -> WatchResult:
    """Wait until ``finished()`` (default: every process has exited), a process fails, or
    ``timeout`` seconds have passed since ``started``; then stop every process tree.

    After the first non-zero exit the others get ``failure_grace`` seconds to fail on their
    own (so that their logs say why) before they are stopped. Any exception (Ctrl-C) stops
    them all before it propagates: a watched run leaves no orphans. ``on_timeout`` runs
    just before the processes are stopped for the deadline (to ask them where they are).
    """
    started = time.monotonic() if started is None else started
    done = finished or (lambda: all(p.poll() is not None for p in procs))
    failed_at: float | None = None
    try:
        while True:
            now = time.monotonic()
            if now - started > timeout:
                if on_timeout is not None:
                    on_timeout()
                stop_all(procs)
                return WatchResult(True, first_failed(procs))
            if failed_at is None and first_failed(procs) is not None:
                failed_at = now
            if failed_at is not None and now - failed_at >= failure_grace:
                break
            if done():
                break
            if on_poll is not None:
                on_poll()
            time.sleep(POLL_SECONDS)
    except BaseException:
        stop_all(procs)
        raise
    stop_all(procs)  # sweep whatever is left (stragglers, servers that outlive the workers)
    return WatchResult(False, first_failed(procs))


def rank0_progress(
    run_dir: Path, on_progress: Callable[[int], None] | None
) -> Callable[[], None] | None:
    """A poll hook reporting the step lines global rank 0 has written (None: no hook)."""
    if on_progress is None:
        return None
    report = on_progress
    return lambda: report(count_step_lines(rank_file(run_dir, 0)))


def timed_out(
    timeout: float, elapsed: float, what: str = "ranks", where: str | None = None
) -> LaunchOutcome:
    """``where``: where the ranks were when they were stopped (``stacks.where_ranks_wait``)."""
    error = f"timed out after {timeout:g} s; all {what} stopped"
    return LaunchOutcome(-1, f"{error}; {where}" if where else error, elapsed)


def earliest_recorded_error(run_dir: Path) -> str | None:
    """The earliest exception any rank wrote as an ``error`` record (the cause; later
    errors are usually peers failing on the lost connection)."""
    errors = [e for r in read_run_records(run_dir).values() for e in r.errors]
    if not errors:
        return None
    return str(min(errors, key=lambda e: e.get("t", 0.0))["error"])


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def last_log_line(log: Path) -> str | None:
    if not log.exists():
        return None
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else None
