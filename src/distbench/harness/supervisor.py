"""Keep a rank's death from ending the run, for strategies that survive a lost worker.

torchrun stops every rank as soon as one exits abnormally. Asynchronous training with a
central parameter server (``ps-async``) is meant to go on without a dead worker, so for such
runs the launcher starts this module on every rank instead of ``distbench.harness.worker``:
it runs the worker as a child process and waits for it.

- child exits normally (any code): the supervisor exits with the same code;
- child killed by a signal the supervisor did not forward: the rank is *lost*; the
  supervisor appends a summary record ``{"extra": {"lost": "..."}}`` to the rank's record
  file and exits 0, so torchrun lets the others finish (the server, which notices the lost
  connection, decides whether the run can go on; a lost server makes the workers fail);
- SIGTERM/SIGINT/SIGHUP (torchrun or the launcher tearing down) are forwarded to the child
  and the supervisor exits non-zero.

This module imports no torch, so the supervisor costs one small process per rank.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def note_lost(run_dir: Path, rank: int, why: str) -> None:
    """Append the lost-rank summary (the leading newline ends a line the child left torn),
    and leave a mark the launcher can see without reading the records."""
    record = {"kind": "summary", "rank": rank, "extra": {"lost": why}, "t": time.time()}
    with (run_dir / f"rank{rank}.jsonl").open("a", encoding="utf-8") as handle:
        handle.write("\n" + json.dumps(record) + "\n")
    (run_dir / f"lost_rank{rank}").touch()


def lost_rank_marks(run_dir: Path) -> list[int]:
    """The ranks whose supervisor saw them killed, in rank order."""
    return sorted(int(p.name.removeprefix("lost_rank")) for p in run_dir.glob("lost_rank*"))


def supervise(run_dir: Path) -> int:
    child = subprocess.Popen([sys.executable, "-m", "distbench.harness.worker", str(run_dir)])
    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    code = child.wait()
    if code >= 0:
        return code
    if stopping:
        return 128 - code
    rank = int(os.environ.get("RANK", "0"))
    note_lost(run_dir, rank, f"worker process {child.pid} killed by {signal_name(code)}")
    sys.stderr.write(f"rank {rank}: worker killed by {signal_name(code)}; the run goes on\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    return supervise(Path(args[0]))


if __name__ == "__main__":
    raise SystemExit(main())
