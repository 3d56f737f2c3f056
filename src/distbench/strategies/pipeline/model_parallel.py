"""Model parallelism: the layers split over ranks, one batch in flight, no micro-batching.

This is the pipeline machinery with a single micro-batch (GPipe with ``M = 1``): the
batch's activations travel forward through the stages and its gradients travel back, and
each stage idles while the others compute. Its theoretical idle fraction is ``(S-1)/S``,
which is why it is used when a model does not fit on one device, not for speed.
``--microbatches`` is ignored; ``--partition`` applies as for the pipelines.
"""

from __future__ import annotations

from typing import ClassVar

from distbench.config import RunConfig
from distbench.strategies.pipeline.strategy import PipelineStrategy


class ModelParallel(PipelineStrategy):
    name: ClassVar[str] = "model-parallel"
    description: ClassVar[str] = (
        "layers split over ranks, one batch in flight (no micro-batches); --partition"
    )
    schedule_name: ClassVar[str] = "model-parallel"
    workers_are: ClassVar[str] = "model partitions"
    settings: ClassVar[tuple[str, ...]] = ("partition",)  # one batch in flight, no micro-batches

    @classmethod
    def microbatches_of(cls, cfg: RunConfig) -> int:
        return 1
