"""Where each rank was when a run had to be stopped: Python stacks on demand.

Every rank registers ``faulthandler`` on ``SIGUSR1`` (:func:`enable_stack_dumps`), writing
all its threads' stacks to ``RUN_DIR/stacks_rank{R}.txt``. When the launcher must stop a
run that stopped making progress (its deadline, or a stall after a lost worker), it first
signals the ranks (:func:`dump_rank_stacks`) and names, in the run's one-line error, the
distbench function each rank was in (:func:`where_ranks_wait`), so a hang says which rank
waits on what instead of only "timed out".

This module imports no torch.
"""

from __future__ import annotations

import faulthandler
import re
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import psutil

STACK_SIGNAL = signal.SIGUSR1
#: The module every torch rank runs (directly, or as the child of the rank supervisor).
RANK_PROGRAM = "distbench.harness.worker"
DUMP_WAIT_SECONDS = 1.0

_open_files: list[IO[str]] = []
_FRAME = re.compile(r'File "(?P<path>[^"]+)", line (?P<line>\d+) in (?P<func>\S+)')


def stacks_file(run_dir: Path, rank: int) -> Path:
    return run_dir / f"stacks_rank{rank}.txt"


def enable_stack_dumps(run_dir: Path, rank: int) -> None:
    """On ``SIGUSR1``, append every thread's stack of this process to its stacks file."""
    handle = stacks_file(run_dir, rank).open("a", encoding="utf-8")
    _open_files.append(handle)  # faulthandler writes to the descriptor: keep it open
    faulthandler.register(STACK_SIGNAL, file=handle, all_threads=True, chain=False)


def rank_processes(procs: Sequence[subprocess.Popen[bytes]]) -> list[psutil.Process]:
    """The rank programs among the process trees of ``procs`` (never a launcher or a
    supervisor: ``SIGUSR1`` would end a process that did not register it)."""
    found = []
    for proc in procs:
        try:
            family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(True)]
        except psutil.NoSuchProcess:
            continue
        for member in family:
            try:
                if runs_rank_program(member.cmdline()):
                    found.append(member)
            except psutil.Error:
                continue
    return found


def runs_rank_program(cmdline: list[str]) -> bool:
    """``python [-u] -m distbench.harness.worker ...`` — the module this process runs, not
    an argument it passes on (torchrun's own command line names the rank program too)."""
    if "-m" not in cmdline:
        return False
    module = cmdline.index("-m") + 1
    return module < len(cmdline) and cmdline[module] == RANK_PROGRAM


def dump_rank_stacks(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """Ask every rank of ``procs`` for its stacks, and give them a moment to write."""
    ranks = rank_processes(procs)
    for member in ranks:
        try:
            member.send_signal(STACK_SIGNAL)
        except psutil.Error:
            continue
    if ranks:
        time.sleep(DUMP_WAIT_SECONDS)


#: Threads of distbench's own that wait by design (the resource sampler); not news.
IDLE_THREADS = ("/harness/monitor.py",)


def _frames(block: str) -> list[tuple[str, str, str]]:
    """(path, line, function) of one thread, most recent call first."""
    return [(m["path"], m["line"], m["func"]) for m in _FRAME.finditer(block)]


def _frame_text(frame: tuple[str, str, str]) -> str:
    path, line, func = frame
    return f"{func} ({Path(path).name}:{line})"


def thread_position(block: str) -> str | None:
    """Where one thread was: its innermost frame, and the innermost distbench frame that
    led there when that is another one; None for idle helper threads."""
    frames = _frames(block)
    ours = [f for f in frames if "/distbench/" in f[0] and "/harness/stacks.py" not in f[0]]
    if not frames or not ours or any(idle in ours[0][0] for idle in IDLE_THREADS):
        return None
    if frames[0] == ours[0]:
        return _frame_text(ours[0])
    return f"{_frame_text(frames[0])} from {_frame_text(ours[0])}"


def where_ranks_wait(run_dir: Path) -> str | None:
    """One clause per rank that dumped its stacks: where its main thread was (the thread
    that took the signal), then its other busy threads."""
    clauses = []
    for path in sorted(run_dir.glob("stacks_rank*.txt"), key=_rank_of):
        text = path.read_text(errors="replace")
        main = re.split(r"(?m)^Current thread 0x[0-9a-f]+", text)
        others = re.split(r"(?m)^Thread 0x[0-9a-f]+", main[0])
        positions = [thread_position(main[-1])] if len(main) > 1 else []
        positions += [thread_position(block) for block in others]
        named = list(dict.fromkeys(p for p in positions if p))[:3]
        if named:
            clauses.append(f"rank {_rank_of(path)} in {'; and '.join(named)}")
    return "; ".join(clauses) if clauses else None


def _rank_of(path: Path) -> int:
    return int(path.stem.removeprefix("stacks_rank"))
