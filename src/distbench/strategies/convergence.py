"""Training to a target accuracy on a PyTorch rank: how many steps, and how much training
time, a configuration needs to reach a held-out accuracy — the figure samples per second
cannot give, since asynchronous and large-batch training may need more steps to get there.

Start at :class:`Convergence`: the framework-neutral rule of ``measurement/goal.py``
(``Goal``: when to evaluate and stop, the curve, what is stored) with what a torch rank adds —
the held-out evaluation of its model (``goal_for``), the evaluation's peak memory on CPU and
CUDA, and the decision shared over the run's group. Every rank of a process group stops at
the same step: the evaluating rank broadcasts its decision (``torch.distributed``), so a
synchronous collective never waits for a rank that stopped.

How every rank learns the decision is the strategy's choice (``agree``): a broadcast over
its workers by default; an asynchronous parameter server passes the word through its
servers instead (a broadcast would make the workers wait for each other) and calls
:meth:`Goal.stop` on the workers it reaches.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.distributed as dist

from distbench.config import RunConfig
from distbench.errors import UserError
from distbench.measurement.goal import EvalPoint, Goal, GoalSettings, UpdateClock
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


class Convergence(Goal):
    """``Goal`` on a PyTorch rank: settings from the run's configuration, the evaluation's
    peak memory measured on ``device``, and rank 0's decision broadcast over the default
    group unless the strategy sets ``agree``."""

    def __init__(
        self,
        cfg: RunConfig,
        rank: int,
        world_size: int,
        evaluate: Callable[[], tuple[int, int]],
        samples_per_step: int,
        train_size: int,
        device: torch.device | None = None,
    ) -> None:
        self.cfg = cfg
        self.device = device or torch.device("cpu")
        super().__init__(
            GoalSettings.of(cfg),
            rank,
            world_size,
            evaluate,
            samples_per_step,
            train_size,
            measure_peak=lambda: evaluation_peak(self.device),
        )

    def _agreed(self, reached: bool) -> bool:
        if self.agree is not None:
            return self.agree(reached)
        return broadcast_decision(reached, self.world_size)


__all__ = [
    "Convergence",
    "EvalPoint",
    "UpdateClock",
    "broadcast_decision",
    "check_target",
    "goal_for",
]
