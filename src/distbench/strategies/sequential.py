"""Sequential training on one worker: the baseline every speedup is measured against."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from distbench.config import RunConfig
from distbench.errors import UserError
from distbench.measurement.timer import PhaseTimer
from distbench.strategies.base import Strategy
from distbench.strategies.common import (
    Workload,
    build_workload,
    default_step,
    record_step,
    state_as_numpy,
    synchronizer,
)


class Sequential(Strategy):
    name: ClassVar[str] = "sequential"
    description: ClassVar[str] = "one worker, no communication (the baseline)"
    single_worker: ClassVar[bool] = True
    uses_process_group: ClassVar[bool] = False
    prediction_model: ClassVar[str | None] = "sequential"
    emulated_compute: ClassVar[bool] = True
    workers_are: ClassVar[str] = "one worker"
    trains_to_target: ClassVar[bool] = True

    @classmethod
    def validate(cls, cfg: RunConfig) -> None:
        if cfg.workers != 1:
            raise UserError(
                "strategy 'sequential' runs on exactly 1 worker "
                f"(got --workers {cfg.workers}); use --strategy ddp for more"
            )

    def run(self) -> None:
        cfg, device = self.ctx.cfg, self.ctx.device
        self.work: Workload = build_workload(cfg, device, cfg.batch_size, 0, 1, self.ctx.compute)
        timer = PhaseTimer(synchronizer(device))
        self.goal = self.convergence(self.work.model, cfg.batch_size)
        for step in self.goal.steps():
            loss = default_step(self.work, device, timer)
            seconds = record_step(self.ctx.recorder, cfg, step, timer, cfg.batch_size, loss=loss)
            self.goal.after_step(step, seconds, loss)

    def summary_extra(self) -> dict[str, Any]:
        return self.goal.summary()

    def final_weights(self) -> dict[str, np.ndarray] | None:
        return state_as_numpy(self.work.model)
