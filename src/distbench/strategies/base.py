"""The strategy interface: what a distributed-training strategy must provide.

A strategy class describes itself to the launcher (how many processes, which batch is
global) through class methods, and runs inside every worker process through ``run``. It
records each step with ``ctx.recorder`` under a ``PhaseTimer`` so that all strategies
report the same record shape.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from distbench.config import RunConfig
from distbench.harness.records import RankRecorder


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


class Strategy(ABC):
    """Base class. Subclasses set the class attributes and implement ``run``."""

    name: ClassVar[str]
    description: ClassVar[str]
    synchronous: ClassVar[bool] = True  # slowest rank governs each step
    single_worker: ClassVar[bool] = False  # runs with exactly one worker
    uses_process_group: ClassVar[bool] = True
    # "weak": --batch-size is per worker, the global batch grows with N;
    # "strong": --batch-size is the global batch, split over the workers.
    scaling: ClassVar[str] = "weak"

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx

    @classmethod  # noqa: B027 - an optional hook with a no-op default
    def validate(cls, cfg: RunConfig) -> None:
        """Raise ``UserError`` for settings this strategy cannot run."""

    @classmethod
    def world_size(cls, cfg: RunConfig) -> int:
        """Processes needed in all: workers plus any server processes."""
        return cfg.workers

    @classmethod
    def local_batch(cls, cfg: RunConfig) -> int:
        return cfg.batch_size if cls.scaling == "weak" else cfg.batch_size // cfg.workers

    @classmethod
    def global_batch(cls, cfg: RunConfig) -> int:
        return cfg.batch_size * cfg.workers if cls.scaling == "weak" else cfg.batch_size

    @abstractmethod
    def run(self) -> None:
        """Train ``cfg.warmup + cfg.steps`` steps, recording each one."""

    def final_weights(self) -> dict[str, np.ndarray] | None:
        """The trained weights by parameter name, on the rank that holds them (else None)."""
        return None

    def summary_extra(self) -> dict[str, Any]:
        """Strategy-specific facts for the result (plans, assignments, staleness, ...)."""
        return {}
