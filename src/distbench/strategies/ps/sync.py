"""Synchronous parameter-server strategies: every iteration waits for all workers.

``ps-sync-join``: each of the N workers trains a full ``--batch-size`` batch; the server
averages the N gradients, so one iteration trains N batches (= one worker with an N-times
batch; weak scaling). ``ps-sync-split``: ``--batch-size`` is the global batch, each worker
trains ``1/N`` of it, so one iteration trains one batch and matches sequential training
(strong scaling). The machinery is in ``strategy.py``.
"""

from __future__ import annotations

from typing import ClassVar

from distbench.config import RunConfig
from distbench.errors import UserError
from distbench.strategies.ps.strategy import ParameterServer


class PSSyncJoin(ParameterServer):
    name: ClassVar[str] = "ps-sync-join"
    description: ClassVar[str] = (
        "parameter server, synchronous: each worker a full batch, "
        "averaged (N batches per iteration)"
    )
    prediction_model: ClassVar[str | None] = "sync-join"


class PSSyncSplit(ParameterServer):
    name: ClassVar[str] = "ps-sync-split"
    description: ClassVar[str] = (
        "parameter server, synchronous: one global batch split "
        "over the workers (--batch-size is global)"
    )
    scaling: ClassVar[str] = "strong"
    prediction_model: ClassVar[str | None] = "sync-split"

    @classmethod
    def validate(cls, cfg: RunConfig) -> None:
        super().validate(cfg)
        if cfg.batch_size % cfg.workers:
            nearest = cfg.batch_size // cfg.workers * cfg.workers or cfg.workers
            raise UserError(
                f"strategy 'ps-sync-split' splits the global --batch-size "
                f"{cfg.batch_size} over {cfg.workers} workers: it must divide "
                f"evenly (try --batch-size {nearest})"
            )
