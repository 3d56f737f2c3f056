"""Asynchronous parameter server (Downpour SGD): no barrier, gradients applied as they come.

Each worker pulls, computes and pushes on its own; a server applies every gradient when it
arrives, on weights that other workers may have moved since the gradient's pull. The
staleness of each applied gradient (server version at apply - version it was computed on)
is recorded per unit. With ``--servers central`` a lost worker does not stop the others
(see ``docs/ps.md``). The machinery is in ``strategy.py``.
"""

from __future__ import annotations

from typing import ClassVar

from distbench.config import RunConfig
from distbench.strategies.contract import Equivalence
from distbench.strategies.ps.strategy import ParameterServer


class PSAsync(ParameterServer):
    name: ClassVar[str] = "ps-async"
    description: ClassVar[str] = (
        "parameter server, asynchronous (Downpour SGD): no barrier, "
        "each gradient applied on arrival"
    )
    synchronous: ClassVar[bool] = False
    prediction_model: ClassVar[str | None] = "async"
    # Stale weights: the trained weights differ from sequential training by design.
    equivalence: ClassVar[Equivalence] = Equivalence(kind="statistical")

    @classmethod
    def survives_worker_loss(cls, cfg: RunConfig) -> bool:
        """With a central server the weights do not live on any worker, so the others can
        go on when one dies (a sharded unit's shard would be lost with it). The torchrun
        launcher then starts each rank under harness/supervisor.py."""
        return cfg.servers == "central"
