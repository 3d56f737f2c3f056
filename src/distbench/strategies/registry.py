"""The strategy registry: name -> class. Adding a strategy is one module implementing the
contract (``contract.py``, ``base.Strategy``) and one line here (see docs/extending.md)."""

from __future__ import annotations

from distbench.strategies.base import Strategy
from distbench.strategies.ddp import DDP
from distbench.strategies.pipeline import ModelParallel, Pipeline1F1B, PipelineGPipe
from distbench.strategies.pipeline.pipedream_strategy import PipelinePipeDream
from distbench.strategies.ps import PSAsync, PSSyncJoin, PSSyncSplit
from distbench.strategies.sequential import Sequential

STRATEGIES: dict[str, type[Strategy]] = {
    "sequential": Sequential,
    "ddp": DDP,
    "pipeline-gpipe": PipelineGPipe,
    "pipeline-1f1b": Pipeline1F1B,
    "pipeline-pipedream": PipelinePipeDream,
    "model-parallel": ModelParallel,
    "ps-sync-join": PSSyncJoin,
    "ps-sync-split": PSSyncSplit,
    "ps-async": PSAsync,
}
