"""Emulated compute for pipeline stages (``--compute profile`` or ``--compute T``).

The replayed plan (``compute/plan.py``) holds the whole model's forward and backward at one
micro-batch (the pipelines' local batch), drawn from the stored one-worker profile or given
as ``T``. A stage replays its blocks' share of it: the block profile, measured on rank 0
before training as for the profiled planner, gives each block's share of forward and of
backward (the magnitude is the plan's: ``emulated_costs`` scales the block costs to it, so
the planner plans, and predicts, with the very times the stages replay). An update waits
what updating the stage's weights took in the block profile (``BlockCost.update_s``).
Every tensor, transfer, all-reduce and weight stash stays real.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from distbench.compute.emulated import EmulatedCompute, StageEmulation
from distbench.compute.plan import ComputePlan
from distbench.strategies.pipeline.partition import BlockCost


def _scaled(costs: Sequence[BlockCost], phase: str, total: float) -> list[float]:
    measured = [getattr(c, f"{phase}_s") for c in costs]
    whole = sum(measured)
    if whole <= 0:
        return [total / len(costs)] * len(costs)
    return [total * t / whole for t in measured]


def emulated_costs(costs: Sequence[BlockCost], plan: ComputePlan) -> list[BlockCost]:
    """The block costs with forward and backward scaled to the plan's mean at one
    micro-batch, each block keeping its measured share."""
    forwards = _scaled(costs, "forward", plan.mean("forward"))
    backwards = _scaled(costs, "backward", plan.mean("backward"))
    return [
        replace(c, forward_s=f, backward_s=b)
        for c, f, b in zip(costs, forwards, backwards, strict=True)
    ]


def stage_shares(costs: Sequence[BlockCost], start: int, stop: int) -> tuple[float, float]:
    """Blocks ``[start, stop)``'s share of the whole model's forward and backward."""
    shares = []
    for phase in ("forward", "backward"):
        times = [getattr(c, f"{phase}_s") for c in costs]
        whole = sum(times)
        shares.append(sum(times[start:stop]) / whole if whole > 0 else (stop - start) / len(costs))
    return shares[0], shares[1]


def emulated_stage(
    compute: EmulatedCompute, costs: Sequence[BlockCost], start: int, stop: int
) -> StageEmulation:
    """The emulated compute of the stage of blocks ``[start, stop)``."""
    forward, backward = stage_shares(costs, start, stop)
    update = sum(c.update_s for c in costs[start:stop])
    return StageEmulation(compute, forward, backward, update)
