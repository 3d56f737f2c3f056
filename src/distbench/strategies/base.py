"""The PyTorch side of the strategy contract (``contract.py``): facts and lifecycle.

A strategy is one class: its *facts* are class attributes and class methods (answered
from the config, before any process starts: ``contract.StrategyFacts``), its *lifecycle*
runs inside every rank — ``run`` trains ``warmup + steps`` steps, recording each one with
``ctx.recorder`` under a ``PhaseTimer`` so that every strategy reports the same record
shape; then ``final_weights`` and ``summary_extra`` finish. Every optional member has a
default here; docs/extending.md lists them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from distbench.compute.emulated import REAL, Compute
from distbench.config import RunConfig
from distbench.measurement.records import RankRecorder
from distbench.strategies.contract import Equivalence
from distbench.strategies.convergence import Convergence, goal_for


@dataclass
class WorkerContext:
    """What a worker process knows about itself (from the torchrun environment)."""

    cfg: RunConfig
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    run_dir: Path
    recorder: RankRecorder
    compute: Compute = REAL  # real, or emulated from a profile (--compute)


class Strategy(ABC):
    """Base class. Subclasses set the class attributes and implement ``run``."""

    # -- facts (contract.StrategyFacts) -----------------------------------------------------
    name: ClassVar[str]
    description: ClassVar[str]
    synchronous: ClassVar[bool] = True  # workers step together, one step an iteration
    single_worker: ClassVar[bool] = False  # runs with exactly one worker
    uses_process_group: ClassVar[bool] = True  # the worker joins the default group first
    scaling: ClassVar[str] = "weak"  # contract.Scaling
    workers_are: ClassVar[str] = "data-parallel workers"  # what --workers counts
    equivalence: ClassVar[Equivalence] = Equivalence()
    prediction_model: ClassVar[str | None] = None  # contract.PredictionModel
    emulated_compute: ClassVar[bool] = False  # computes through ctx.compute (--compute)
    trains_to_target: ClassVar[bool] = False  # its loop follows a Convergence goal
    settings: ClassVar[tuple[str, ...]] = ()  # strategy-specific RunConfig settings it reads

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        #: Peers this rank went on without (ps-async); > 0 skips the final barrier, which
        #: would wait for the dead rank until the timeout.
        self.peers_lost = 0

    @classmethod  # noqa: B027 - an optional hook with a no-op default
    def validate(cls, cfg: RunConfig) -> None:
        """Raise ``UserError`` for settings this strategy cannot run."""

    @classmethod
    def server_processes(cls, cfg: RunConfig) -> int:
        """Processes besides the workers (a central parameter server)."""
        return 0

    @classmethod
    def world_size(cls, cfg: RunConfig) -> int:
        """Processes needed in all: workers plus any server processes."""
        return cfg.workers + cls.server_processes(cfg)

    @classmethod
    def rank_role(cls, cfg: RunConfig, rank: int) -> str:
        """``contract.Role`` written in the rank's records; servers are left out of step
        times by the aggregation."""
        return "worker"

    @classmethod
    def survives_worker_loss(cls, cfg: RunConfig) -> bool:
        """True: the launcher supervises each rank so that the run goes on without a
        worker that died."""
        return False

    @classmethod
    def local_batch(cls, cfg: RunConfig) -> int:
        return cfg.batch_size if cls.scaling == "weak" else cfg.batch_size // cfg.workers

    @classmethod
    def global_batch(cls, cfg: RunConfig) -> int:
        return cfg.batch_size * cfg.workers if cls.scaling == "weak" else cfg.batch_size

    # -- lifecycle --------------------------------------------------------------------------
    @abstractmethod
    def run(self) -> None:
        """Train ``cfg.warmup + cfg.steps`` steps, recording each one."""

    def evaluate(self) -> dict[str, float] | None:
        """Held-out figures (``accuracy``, ``loss``) on the rank that holds the trained
        model, or None where the strategy does not evaluate."""
        return None

    def final_weights(self) -> dict[str, np.ndarray] | None:
        """The trained weights by parameter name, on the rank that holds them (else None)."""
        return None

    def summary_extra(self) -> dict[str, Any]:
        """Strategy-specific facts for the result (plans, assignments, staleness, ...)."""
        return {}

    def convergence(self, model: torch.nn.Module, samples_per_step: int) -> Convergence:
        """The step loop's goal: ``warmup + steps`` steps, or with ``--target-accuracy``
        until ``model`` (evaluated on rank 0) reaches it (``convergence.py``)."""
        ctx = self.ctx
        return goal_for(ctx.cfg, ctx.rank, ctx.world_size, model, ctx.device, samples_per_step)
