"""Training to a goal: the stopping rule and the accuracy curve, framework-neutral.

Start at :class:`Goal`. A step loop iterates ``goal.steps()`` instead of
``range(warmup + steps)`` and calls ``goal.after_step`` when a step is recorded. Without a
goal that is the plain loop. With ``target_accuracy`` the loop runs until the held-out
accuracy, evaluated every ``eval_every`` steps on the rank that holds the model, reaches the
target, or ``max_steps`` steps are spent; with ``epochs`` it trains that many epochs.
Evaluation happens between steps, so no step's time contains it; it is timed on its own.

Standard library only: a PyTorch rank uses it through ``strategies/convergence.py`` (which
adds the torch evaluation, the broadcast of the decision and CUDA memory), and the
TensorFlow and MXNet workers load it by file path in their own environments
(``frameworks/adapter_common.py``), so every framework follows the very same rule and
stores the very same figures.

``time_to_accuracy_s`` counts training time only: the sum of every step's time, warm-up
steps included (they train too), up to the step whose evaluation met the target. Where the
evaluated weights are not the ones the step produced (a parameter-server worker holds the
weights it *pulled* at the start of the step), the caller passes their version (the updates
they contain) to ``after_step``; the point is then placed at that version, at the training
time before the step — for asynchronous updates, at the update clock's time
(:class:`UpdateClock`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class GoalSettings:
    """The run settings the rule reads (``RunConfig``'s fields of the same names)."""

    target_accuracy: float | None = None
    epochs: float | None = None
    eval_every: int = 10
    max_steps: int = 1000
    warmup: int = 0
    steps: int = 10

    @classmethod
    def of(cls, settings: Any) -> GoalSettings:
        """From any object or mapping that has these names (a ``RunConfig``, a job's dict)."""
        values: dict[str, Any] = {
            name: settings[name] if isinstance(settings, dict) else getattr(settings, name)
            for name in cls.__dataclass_fields__
        }
        return cls(**values)

    @property
    def active(self) -> bool:
        return self.target_accuracy is not None or self.epochs is not None


class PeakMemory(Protocol):
    """What a memory measurer leaves once the evaluation ends (None: not measurable)."""

    rss_bytes: int | None
    allocated_bytes: int | None


@dataclass
class NoPeak:
    rss_bytes: int | None = None
    allocated_bytes: int | None = None


def unmeasured_peak() -> AbstractContextManager[PeakMemory]:
    return nullcontext(NoPeak())


@dataclass
class UpdateClock:
    """Training seconds per update of asynchronous training, as one worker sees it.

    While the evaluating worker evaluates, the other workers go on training: the weights it
    pulls next contain updates its own step times never counted. So an asynchronous point
    is placed at ``version x seconds per update``, the rate measured between consecutive
    pulls of this worker with no evaluation in between (``observe`` pairs the updates
    since the previous pull with the step's time)."""

    seconds: float = 0.0
    updates: int = 0
    _last: int | None = None
    _skip: bool = False

    def observe(self, version: int, step_time: float) -> None:
        if self._last is not None and not self._skip and version >= self._last:
            self.seconds += step_time
            self.updates += version - self._last
        self._last, self._skip = version, False

    def skip_next(self) -> None:
        self._skip = True

    def time_of(self, version: int, fallback: float) -> float:
        """The training seconds ``version`` updates took (``fallback`` before any rate)."""
        return version * self.seconds / self.updates if self.updates else fallback


@dataclass(frozen=True)
class EvalPoint:
    """One evaluation: after ``step`` steps and ``train_s`` seconds of training."""

    step: int
    train_s: float
    loss: float | None  # the training loss of the step (None where this rank has none)
    accuracy: float
    eval_s: float
    eval_samples: int = 0
    eval_peak_rss_bytes: int | None = None
    eval_peak_allocated_bytes: int | None = None  # on CUDA


@dataclass
class Goal:
    """The step loop's stopping rule and the accuracy curve (see the module docstring).

    ``evaluate`` returns (correct, evaluated) held-out samples of the current model on the
    rank that holds it (rank 0) and is called only there; ``samples_per_step`` is the
    samples one update trains (the global batch; a local batch for asynchronous updates),
    ``train_size`` the training split's length (for epochs). ``agree`` turns rank 0's
    decision into every rank's (default: rank 0's decision alone, right for one process);
    ``measure_peak`` measures the evaluation's own peak memory."""

    settings: GoalSettings
    rank: int
    world_size: int
    evaluate: Callable[[], tuple[int, int]]
    samples_per_step: int
    train_size: int
    curve: list[EvalPoint] = field(default_factory=list)
    train_s: float = 0.0
    reached_at: int | None = None
    agree: Callable[[bool], bool] | None = None
    #: Run on every rank before rank 0 evaluates (a pipeline gathers its stages' weights).
    gather: Callable[[], None] | None = None
    #: Asynchronous updates: a point's time comes from the update clock (UpdateClock).
    asynchronous: bool = False
    clock: UpdateClock = field(default_factory=UpdateClock)
    #: Workers whose steps are separate updates (asynchronous: all of them), for epochs.
    updaters: int = 1
    measure_peak: Callable[[], AbstractContextManager[PeakMemory]] = unmeasured_peak
    _stop: bool = False

    @property
    def active(self) -> bool:
        return self.settings.active

    @property
    def stopped(self) -> bool:
        """The goal is met (on every rank that has heard so)."""
        return self._stop

    @property
    def step_limit(self) -> int:
        """This rank's most steps: ``max_steps``, or with ``epochs`` the steps that train
        that many epochs (at least one measured step)."""
        s = self.settings
        if s.epochs is None or not self.train_size:
            return s.max_steps
        samples = self.samples_per_step * self.updaters
        return max(s.warmup + 1, math.ceil(s.epochs * self.train_size / samples))

    def steps(self) -> Iterator[int]:
        """Step indices: ``warmup + steps`` of them, or with a goal until it is met."""
        if not self.active:
            yield from range(self.settings.warmup + self.settings.steps)
            return
        for step in range(self.step_limit):
            if self._stop and step > self.settings.warmup:  # at least one measured step
                return
            yield step

    def _evaluates_after(self, step: int) -> bool:
        """Every ``eval_every`` steps, and after the last one of an ``epochs`` run."""
        last = self.settings.epochs is not None and step + 1 == self.step_limit
        return (step + 1) % self.settings.eval_every == 0 or last

    def after_step(
        self, step: int, step_time: float, loss: float | None, version: int | None = None
    ) -> None:
        """Count the step's training time; on evaluation steps, evaluate and decide.

        ``version``: the updates the evaluated weights contain, where that is not
        ``step + 1`` (see the module docstring)."""
        before = self.train_s
        self.train_s += step_time
        if self.asynchronous and version is not None:
            self.clock.observe(version, step_time)
        if not self.active or self._stop or not self._evaluates_after(step):
            return
        reached = False
        start = time.perf_counter()
        if self.gather is not None:
            self.gather()
        if self.rank == 0:
            point = self._evaluation(step, before, loss, version, start)
            self.curve.append(point)
            target = self.settings.target_accuracy
            reached = target is not None and point.accuracy >= target
        self._stop = self._agreed(reached)
        if self._stop:
            self.reached_at = self.curve[-1].step if self.curve else step + 1

    def _evaluation(
        self, step: int, before: float, loss: float | None, version: int | None, start: float
    ) -> EvalPoint:
        with self.measure_peak() as peak:
            correct, evaluated = self.evaluate()
        accuracy = correct / evaluated if evaluated else 0.0
        at, train_s = (step + 1, self.train_s) if version is None else (version, before)
        if self.asynchronous and version is not None:
            train_s = self.clock.time_of(version, before)
            self.clock.skip_next()  # the next interval holds this evaluation
        return EvalPoint(
            at,
            train_s,
            loss,
            accuracy,
            time.perf_counter() - start,
            evaluated,
            peak.rss_bytes,
            peak.allocated_bytes,
        )

    def stop(self) -> None:
        """Another rank reached the target: end after this step (at least one measured)."""
        self._stop = True

    def _agreed(self, reached: bool) -> bool:
        """Rank 0's decision, on every rank."""
        return self.agree(reached) if self.agree is not None else reached

    def _evaluation_figures(self) -> dict[str, Any]:
        """Evaluation measured on its own: throughput and peak memory."""
        seconds = sum(p.eval_s for p in self.curve)
        samples = sum(p.eval_samples for p in self.curve)
        rss = [p.eval_peak_rss_bytes for p in self.curve if p.eval_peak_rss_bytes is not None]
        cuda = [
            p.eval_peak_allocated_bytes
            for p in self.curve
            if p.eval_peak_allocated_bytes is not None
        ]
        return {
            "eval_samples_per_s": samples / seconds if seconds > 0 else None,
            "eval_peak_rss_bytes": max(rss) if rss else None,
            "eval_peak_allocated_bytes": max(cuda) if cuda else None,
        }

    def summary(self) -> dict[str, Any]:
        """What the result stores (rank 0), or nothing without a goal."""
        if not self.active or self.rank != 0:
            return {}
        s = self.settings
        reached = self.reached_at is not None
        at = self.curve[-1] if reached and self.curve else None  # the deciding evaluation
        last = self.curve[-1] if self.curve else None
        return {
            "convergence": {
                "target_accuracy": s.target_accuracy,
                "epochs": s.epochs,
                "reached": reached if s.target_accuracy is not None else None,
                "steps_to_accuracy": self.reached_at,
                "time_to_accuracy_s": at.train_s if at else None,
                "epochs_to_accuracy": (
                    self.reached_at * self.samples_per_step / self.train_size
                    if reached and self.reached_at and self.train_size
                    else None
                ),
                "final_accuracy": last.accuracy if last else None,
                # the epochs the last evaluated weights had trained
                "final_epochs": (
                    last.step * self.samples_per_step / self.train_size
                    if last and self.train_size
                    else None
                ),
                "samples_per_step": self.samples_per_step,
                "train_size": self.train_size,
                "eval_s": sum(p.eval_s for p in self.curve),
                "evaluations": len(self.curve),
                **self._evaluation_figures(),
                "curve": [asdict(p) for p in self.curve],
            }
        }
