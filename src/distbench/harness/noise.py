"""CPU taken by processes outside a run while it ran: the load a round shared the machine with.

The machine's busy CPU time (``psutil.cpu_times``: all but idle and I/O wait) minus the CPU
time of distbench and every process it started and reaped (``os.times``: its own and its
waited-for descendants', which include torchrun's ranks, since torchrun reaps them), over
the round's wall time, is the CPU that others used, in cores. A round with more than
``BUSY_CORES`` of it ran beside other load and is marked so.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil

#: Outside load above this many cores marks a round as run beside other load: a quarter of
#: a core is more than an idle desktop's background and less than any real job.
BUSY_CORES = 0.25


def machine_busy_seconds() -> float:
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    return float(sum(times) - idle)


def own_seconds() -> float:
    """CPU of this process and of every descendant it has reaped."""
    mine = os.times()
    return mine.user + mine.system + mine.children_user + mine.children_system


@dataclass(frozen=True)
class OutsideLoad:
    cores: float
    seconds: float

    @property
    def busy(self) -> bool:
        return self.cores > BUSY_CORES


class OutsideLoadMeter:
    """``start()`` before a round, ``stop()`` after its processes were reaped."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.machine = machine_busy_seconds()
        self.own = own_seconds()

    def stop(self) -> OutsideLoad:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        outside = (machine_busy_seconds() - self.machine) - (own_seconds() - self.own)
        return OutsideLoad(cores=max(0.0, outside / elapsed), seconds=elapsed)
