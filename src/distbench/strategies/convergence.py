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
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from distbench.config import RunConfig
from distbench.errors import UserError

#: Datasets whose labels can be learned (a target on random synthetic labels never ends).
LEARNABLE_DATASETS = ("digits", "mnist", "cifar10", "cifar100", "imagefolder")


def check_target(cfg: RunConfig, strategy: str, able: list[str]) -> None:
    """A clear error for a target the run cannot reach or the strategy cannot train to
    (``able``: the strategies that can)."""
    if cfg.target_accuracy is None:
        return
    if cfg.dataset not in LEARNABLE_DATASETS:
        raise UserError(
            f"--target-accuracy needs a dataset with labels to learn "
            f"({', '.join(LEARNABLE_DATASETS)}); '{cfg.dataset}' has random labels"
        )
    if strategy not in able:
        raise UserError(
            f"--target-accuracy is not supported by strategy '{strategy}' yet "
            f"(supported: {', '.join(able)})"
        )
    if cfg.compute != "real":
        raise UserError("--target-accuracy trains the model: it needs --compute real")


@dataclass(frozen=True)
class EvalPoint:
    """One evaluation: after ``step`` steps and ``train_s`` seconds of training."""

    step: int
    train_s: float
    loss: float
    accuracy: float
    eval_s: float


@dataclass
class Convergence:
    """The step loop's stopping rule and the accuracy curve (see the module docstring).

    ``evaluate`` returns the held-out accuracy of the current model on the rank that
    holds it (rank 0) and is called only there; ``samples_per_step`` is the global batch,
    ``train_size`` the training split's length (for epochs)."""

    cfg: RunConfig
    rank: int
    world_size: int
    evaluate: Callable[[], float]
    samples_per_step: int
    train_size: int
    curve: list[EvalPoint] = field(default_factory=list)
    train_s: float = 0.0
    reached_at: int | None = None
    _stop: bool = False

    @property
    def active(self) -> bool:
        return self.cfg.target_accuracy is not None

    def steps(self) -> Iterator[int]:
        """Step indices: ``warmup + steps`` of them, or with a target until it is met."""
        if not self.active:
            yield from range(self.cfg.warmup + self.cfg.steps)
            return
        for step in range(self.cfg.max_steps):
            if self._stop and step > self.cfg.warmup:  # at least one measured step
                return
            yield step

    def after_step(self, step: int, step_time: float, loss: float) -> None:
        """Count the step's training time; on evaluation steps, evaluate and decide."""
        self.train_s += step_time
        if not self.active or self._stop or (step + 1) % self.cfg.eval_every:
            return
        reached = False
        if self.rank == 0:
            start = time.perf_counter()
            accuracy = self.evaluate()
            self.curve.append(
                EvalPoint(step + 1, self.train_s, loss, accuracy, time.perf_counter() - start)
            )
            reached = accuracy >= (self.cfg.target_accuracy or 0.0)
        self._stop = self._agreed(reached)
        if self._stop:
            self.reached_at = step + 1

    def _agreed(self, reached: bool) -> bool:
        """Rank 0's decision, on every rank of the group."""
        if self.world_size == 1 or not dist.is_initialized():
            return reached
        flag = torch.tensor([1 if reached else 0], dtype=torch.int32)
        dist.broadcast(flag, src=0)
        return bool(flag.item())

    def summary(self) -> dict[str, Any]:
        """What the result stores (rank 0), or nothing without a target."""
        if not self.active or self.rank != 0:
            return {}
        reached = self.reached_at is not None
        at = next((p for p in self.curve if p.step == self.reached_at), None)
        return {
            "convergence": {
                "target_accuracy": self.cfg.target_accuracy,
                "reached": reached,
                "steps_to_accuracy": self.reached_at,
                "time_to_accuracy_s": at.train_s if at else None,
                "epochs_to_accuracy": (
                    self.reached_at * self.samples_per_step / self.train_size
                    if reached and self.reached_at and self.train_size
                    else None
                ),
                "final_accuracy": self.curve[-1].accuracy if self.curve else None,
                "eval_s": sum(p.eval_s for p in self.curve),
                "evaluations": len(self.curve),
                "curve": [asdict(p) for p in self.curve],
            }
        }
