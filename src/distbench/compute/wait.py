"""Waiting for a given time without using the CPU, and how far off each wait was.

An emulated phase is a ``time.sleep`` to just before its deadline, then a spin on the
clock for the last ``SPIN_S`` (a sleep alone wakes up to a scheduler tick late). The spin
is the only CPU an emulated phase costs. Every wait's asked and actual duration is kept in
a ``WaitLog``, so a run can say how faithfully it replayed its profile.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from statistics import median
from typing import Any

#: The last part of a wait that is spent spinning instead of sleeping (seconds).
SPIN_S = 0.0005


def wait_until(deadline: float) -> float:
    """Return at ``deadline`` (a ``time.perf_counter`` value) or, if it has passed, at once;
    returns the clock at return."""
    remaining = deadline - time.perf_counter()
    if remaining > SPIN_S:
        time.sleep(remaining - SPIN_S)
    now = time.perf_counter()
    while now < deadline:
        now = time.perf_counter()
    return now


@dataclass
class WaitLog:
    """Asked and actual durations of every wait of one process."""

    asked: list[float] = field(default_factory=list)
    actual: list[float] = field(default_factory=list)

    def wait(self, seconds: float) -> None:
        """Wait ``seconds`` from now and log it (a zero wait is not logged)."""
        if seconds <= 0:
            return
        start = time.perf_counter()
        end = wait_until(start + seconds)
        self.log(seconds, end - start)

    def log(self, asked: float, actual: float) -> None:
        self.asked.append(asked)
        self.actual.append(actual)

    def relative_errors(self) -> list[float]:
        """(actual - asked) / asked of every logged wait (positive: late)."""
        return [(a - s) / s for s, a in zip(self.asked, self.actual, strict=True) if s > 0]

    def summary(self) -> dict[str, Any]:
        """Waits, the time asked in all, the median relative error of one wait, the
        time-weighted error (sum of |actual - asked| over the time asked: what a phase's
        total is off by) and the latest any wait ended (seconds)."""
        if not self.asked:
            return {"waits": 0}
        asked = sum(self.asked)
        misses = [a - s for s, a in zip(self.asked, self.actual, strict=True)]
        return {
            "waits": len(self.asked),
            "asked_s": asked,
            "error_median": median(abs(e) for e in self.relative_errors()),
            "error_weighted": sum(abs(m) for m in misses) / asked if asked > 0 else 0.0,
            "late_max_s": max(misses),
        }
