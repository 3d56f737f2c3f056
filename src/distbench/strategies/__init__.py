"""Strategy registry: name -> class. Adding a strategy is one module and one line here
(see docs/extending.md)."""

from __future__ import annotations

from distbench.strategies.base import Strategy, WorkerContext
from distbench.strategies.ddp import DDP
from distbench.strategies.sequential import Sequential

STRATEGIES: dict[str, type[Strategy]] = {
    "sequential": Sequential,
    "ddp": DDP,
}

__all__ = ["STRATEGIES", "Strategy", "WorkerContext"]
