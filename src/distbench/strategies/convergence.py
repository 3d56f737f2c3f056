"""Training to a target accuracy: how many steps, and how much training time, a
configuration needs to reach a held-out accuracy — the figure samples per second cannot
give, since asynchronous and large-batch training may need more steps to get there.

Start at :class:`Convergence`. A strategy's step loop iterates ``goal.steps()`` instead of
``range(warmup + steps)`` and calls ``goal.after_step`` when a step is recorded. Without
``--target-accuracy`` that is the plain loop. With it, the loop runs until the held-out
accuracy, evaluated every ``--eval-every`` steps on the rank that holds the model, reaches
the target, or ``--max-steps`` steps are spent. Evaluation happens between steps, so no
step's time contains it; it is timed on its own. Every rank of a process group stops at
the same step: the evaluating rank broadcasts its decision over the run's group
(``torch.distributed``), so a synchronous collective never waits for a rank that stopped.

``time_to_accuracy_s`` counts training time only: the sum of every step's time, warm-up
steps included (they train too), up to the step whose evaluation met the target.

Where the evaluated weights are not the ones the step produced — a parameter-server worker
holds the weights it *pulled* at the start of the step — the strategy passes their version
(the updates they contain) to ``after_step``; the point is then placed at that version, at
the training time before the step. How every rank learns the decision is the strategy's
choice (``agree``): a broadcast over its workers by default; an asynchronous parameter
server passes the word through its servers instead (a broadcast would make the workers
wait for each other) and calls :meth:`Convergence.stop` on the workers it reaches.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from distbench.config import RunConfig
from distbench.errors import UserError
from distbench.measurement.memory import evaluation_peak
from distbench.strategies.evaluation import classified, held_out_split, train_size

#: Datasets whose labels can be learned (a target on random synthetic labels never ends).
LEARNABLE_DATASETS = ("patterns", "digits", "mnist", "cifar10", "cifar100", "imagefolder")


def check_target(cfg: RunConfig, strategy: str, able: list[str]) -> None:
    """A clear error for a target the run cannot reach or the strategy cannot train to
    (``able``: the strategies that can)."""
    if not cfg.trains_to_goal:
        return
    flag = "--target-accuracy" if cfg.target_accuracy is not None else "--epochs"
    if cfg.dataset not in LEARNABLE_DATASETS:
        raise UserError(
            f"{flag} needs a dataset with labels to learn "
            f"({', '.join(LEARNABLE_DATASETS)}); '{cfg.dataset}' has random labels"
        )
    if strategy not in able:
        raise UserError(
            f"{flag} is not supported by strategy '{strategy}' yet (supported: {', '.join(able)})"
        )
    if cfg.compute != "real":
        raise UserError(f"{flag} trains the model: it needs --compute real")


def goal_for(
    cfg: RunConfig,
    rank: int,
    world_size: int,
    model: torch.nn.Module,
    device: torch.device,
    samples_per_step: int,
) -> Convergence:
    """The goal of a rank whose ``model`` holds the weights to evaluate (on rank 0). The
    test split is loaded at the first evaluation and kept, so that no evaluation pays for
    reading it again."""
    held_out = functools.cache(lambda: held_out_split(cfg))
    return Convergence(
        cfg,
        rank,
        world_size,
        lambda: classified(held_out(), model, device),
        samples_per_step,
        train_size(cfg) if cfg.trains_to_goal else 0,
        device=device,
    )


def broadcast_decision(
    reached: bool, world_size: int, group: dist.ProcessGroup | None = None
) -> bool:
    """Rank 0's decision on every rank of ``group`` (the default group if None)."""
    if world_size == 1 or not dist.is_initialized():
        return reached
    flag = torch.tensor([1 if reached else 0], dtype=torch.int32)
    dist.broadcast(flag, src=0, group=group)
    return bool(flag.item())


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
    eval_peak_rss_bytes: int | None = None  # the evaluation's own peak (measurement/memory.py)
    eval_peak_allocated_bytes: int | None = None  # on CUDA


@dataclass
class Convergence:
    """The step loop's stopping rule and the accuracy curve (see the module docstring).

    ``evaluate`` returns the held-out accuracy of the current model on the rank that
    holds it (rank 0) and is called only there; ``samples_per_step`` is the samples one
    update trains (the global batch; a local batch for asynchronous updates),
    ``train_size`` the training split's length (for epochs). ``agree`` turns rank 0's
    decision into every rank's (default: a broadcast over the default group)."""

    cfg: RunConfig
    rank: int
    world_size: int
    evaluate: Callable[[], tuple[int, int]]  # (correct, evaluated) held-out samples
    samples_per_step: int
    train_size: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    curve: list[EvalPoint] = field(default_factory=list)
    train_s: float = 0.0
    reached_at: int | None = None
    agree: Callable[[bool], bool] | None = None
    #: Run on every rank before rank 0 evaluates (a pipeline gathers its stages' weights).
    gather: Callable[[], None] | None = None
    #: Asynchronous updates: a point's time comes from the update clock (UpdateClock).
    asynchronous: bool = False
    clock: UpdateClock = field(default_factory=lambda: UpdateClock())
    #: Workers whose steps are separate updates (asynchronous: all of them), for epochs.
    updaters: int = 1
    _stop: bool = False

    @property
    def active(self) -> bool:
        return self.cfg.trains_to_goal

    @property
    def step_limit(self) -> int:
        """This rank's most steps: ``--max-steps``, or with ``--epochs`` the steps that
        train that many epochs (at least one measured step)."""
        if self.cfg.epochs is None or not self.train_size:
            return self.cfg.max_steps
        samples = self.samples_per_step * self.updaters
        return max(self.cfg.warmup + 1, math.ceil(self.cfg.epochs * self.train_size / samples))

    def steps(self) -> Iterator[int]:
        """Step indices: ``warmup + steps`` of them, or with a goal until it is met."""
        if not self.active:
            yield from range(self.cfg.warmup + self.cfg.steps)
            return
        for step in range(self.step_limit):
            if self._stop and step > self.cfg.warmup:  # at least one measured step
                return
            yield step

    def _evaluates_after(self, step: int) -> bool:
        """Every ``--eval-every`` steps, and after the last one of an ``--epochs`` run."""
        last = self.cfg.epochs is not None and step + 1 == self.step_limit
        return (step + 1) % self.cfg.eval_every == 0 or last

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
            with evaluation_peak(self.device) as peak:
                correct, evaluated = self.evaluate()
            accuracy = correct / evaluated if evaluated else 0.0
            at, train_s = (step + 1, self.train_s) if version is None else (version, before)
            if self.asynchronous and version is not None:
                train_s = self.clock.time_of(version, before)
                self.clock.skip_next()  # the next interval holds this evaluation
            self.curve.append(
                EvalPoint(
                    at,
                    train_s,
                    loss,
                    accuracy,
                    time.perf_counter() - start,
                    evaluated,
                    peak.rss_bytes,
                    peak.allocated_bytes,
                )
            )
            target = self.cfg.target_accuracy
            reached = target is not None and accuracy >= target
        self._stop = self._agreed(reached)
        if self._stop:
            self.reached_at = self.curve[-1].step if self.curve else step + 1

    def stop(self) -> None:
        """Another rank reached the target: end after this step (at least one measured)."""
        self._stop = True

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

    def _agreed(self, reached: bool) -> bool:
        """Rank 0's decision, on every rank of the group."""
        if self.agree is not None:
            return self.agree(reached)
        return broadcast_decision(reached, self.world_size)

    def summary(self) -> dict[str, Any]:
        """What the result stores (rank 0), or nothing without a target."""
        if not self.active or self.rank != 0:
            return {}
        reached = self.reached_at is not None
        at = self.curve[-1] if reached and self.curve else None  # the deciding evaluation
        last = self.curve[-1] if self.curve else None
        return {
            "convergence": {
                "target_accuracy": self.cfg.target_accuracy,
                "epochs": self.cfg.epochs,
                "reached": reached if self.cfg.target_accuracy is not None else None,
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
