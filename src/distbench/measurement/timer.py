"""The phase timer used inside the training step (the hot path: keep it cheap).

Phases are contiguous: each ``mark(phase)`` closes the interval since the previous mark and
charges it to ``phase``. The phases of a step therefore add up to the step time exactly,
unless a strategy re-attributes part of one phase to another with ``move`` (DDP moves the
communication left exposed after backward from ``backward`` to ``comm``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

# Canonical phase names, in display order. PS strategies split communication into
# pull/push; pipelines report send/recv as comm and bubbles as wait.
PHASES: tuple[str, ...] = ("data", "forward", "backward", "comm", "pull", "push", "wait", "update")


class PhaseTimer:
    """Times the phases of one step at a time. ``synchronize`` runs before each clock read
    (``torch.cuda.synchronize`` on GPUs) so asynchronous kernels are charged correctly."""

    def __init__(self, synchronize: Callable[[], None] | None = None) -> None:
        self._sync = synchronize
        self._phases: dict[str, float] = {}
        self._start = 0.0
        self._last = 0.0
        self._start_wall = 0.0

    def _now(self) -> float:
        if self._sync is not None:
            self._sync()
        return time.perf_counter()

    def start_step(self) -> None:
        self._phases = {}
        self._start = self._last = self._now()
        self._start_wall = time.time()

    def mark(self, phase: str) -> float:
        """Charge the time since the last mark to ``phase``; returns the clock reading."""
        now = self._now()
        self._phases[phase] = self._phases.get(phase, 0.0) + (now - self._last)
        self._last = now
        return now

    def move(self, source: str, target: str, seconds: float) -> None:
        """Re-attribute up to ``seconds`` of ``source`` to ``target``."""
        seconds = max(0.0, min(seconds, self._phases.get(source, 0.0)))
        self._phases[source] = self._phases.get(source, 0.0) - seconds
        self._phases[target] = self._phases.get(target, 0.0) + seconds

    def elapsed(self, phase: str) -> float:
        """Seconds charged to ``phase`` so far in this step."""
        return self._phases.get(phase, 0.0)

    def end_step(self) -> tuple[float, dict[str, float]]:
        """Step time (first clock read to last mark) and the phases that filled it."""
        return self._last - self._start, dict(self._phases)

    @property
    def step_start_wall(self) -> float:
        """Wall-clock start of the current step (for timelines across ranks)."""
        return self._start_wall
