"""Pipeline and model parallelism: stages on separate ranks, cut by a planner.

Where to start:

- ``strategy.py``: ``PipelineStrategy.run`` (plan, build the stage, train, gather) and the
  ``pipeline-gpipe`` / ``pipeline-1f1b`` strategies on ``torch.distributed.pipelining``;
- ``model_parallel.py``: ``model-parallel``, the same with one micro-batch;
- ``partition.py``: the planner (uniform and PipeDream-style dynamic programme; no torch);
- ``profile_blocks.py``: per-block forward/backward timing and the alpha-beta link probe;
- ``stages.py``: cutting a stage out of the model and timing it inside torch's schedules.

See ``docs/pipeline.md`` for flags, schedules and what each measured figure means.
"""

from distbench.strategies.pipeline.model_parallel import ModelParallel
from distbench.strategies.pipeline.strategy import Pipeline1F1B, PipelineGPipe

__all__ = ["ModelParallel", "Pipeline1F1B", "PipelineGPipe"]
