"""Emulated compute of a pipeline stage: its share of the replayed plan, real tensors."""

from __future__ import annotations

import random
import time

import pytest
import torch
from torch import nn
from torch.func import functional_call

from distbench.compute.emulated import EmulatedCompute
from distbench.compute.plan import ComputePlan
from distbench.strategies.pipeline.emulation import emulated_costs, emulated_stage, stage_shares
from distbench.strategies.pipeline.partition import BlockCost

pytestmark = pytest.mark.timeout(60)


def blocks() -> list[BlockCost]:
    # forward 1:3 and backward 1:1 between two blocks; only the second has weights to update
    return [
        BlockCost("a", 0.001, 0.004, 0, 10, weights_s=0.0, update_s=0.0),
        BlockCost("b", 0.003, 0.004, 400, 10, weights_s=0.003, update_s=0.002),
    ]


def plan(forward: float, backward: float) -> ComputePlan:
    step = {"data": 0.0, "forward": forward, "backward": backward, "update": 0.0}
    return ComputePlan("test", [step])


def test_block_costs_take_the_plan_magnitude_and_keep_their_shares() -> None:
    scaled = emulated_costs(blocks(), plan(0.08, 0.2))
    assert [c.forward_s for c in scaled] == pytest.approx([0.02, 0.06])
    assert [c.backward_s for c in scaled] == pytest.approx([0.1, 0.1])
    assert [c.update_s for c in scaled] == [0.0, 0.002]  # measured, not scaled
    assert stage_shares(scaled, 1, 2) == pytest.approx((0.75, 0.5))
    assert stage_shares(scaled, 0, 2) == pytest.approx((1.0, 1.0))


def test_a_stage_waits_its_share_and_hands_back_zero_gradients_of_real_shapes() -> None:
    compute = EmulatedCompute(plan(0.08, 0.2), random.Random(0), local_batch=4)
    stage = emulated_stage(compute, emulated_costs(blocks(), compute.plan), 1, 2)
    module = nn.Sequential(nn.Linear(6, 3))
    stage.install(module, (3,))
    x = torch.ones(4, 6, requires_grad=True)
    began = time.perf_counter()
    out = module(x)
    forward = time.perf_counter() - began
    assert out.shape == (4, 3) and not out.any()
    began = time.perf_counter()
    out.sum().backward()
    backward = time.perf_counter() - began
    assert forward == pytest.approx(0.06, abs=0.01) and backward == pytest.approx(0.1, abs=0.02)
    assert x.grad is not None and x.grad.shape == (4, 6) and not x.grad.any()
    for p in module.parameters():
        assert p.grad is not None and p.grad.shape == p.shape and not p.grad.any()
    stage.update()
    assert compute.log.asked == pytest.approx([0.06, 0.1, 0.002])


def test_stashed_weights_get_the_gradients_under_a_functional_call() -> None:
    """PipeDream computes on a stashed copy of the weights: the emulated backward must
    give the copy its gradient, as the real one does."""
    compute = EmulatedCompute(plan(0.0, 0.0), random.Random(0), local_batch=2)
    stage = emulated_stage(compute, blocks(), 0, 2)
    module = nn.Sequential(nn.Linear(2, 2))
    stage.install(module, (2,))
    stash = {n: p.detach().clone().requires_grad_() for n, p in module.named_parameters()}
    functional_call(module, stash, (torch.ones(2, 2),)).sum().backward()
    assert all(t.grad is not None for t in stash.values())
    assert all(p.grad is None for p in module.parameters())


def test_replicas_of_a_stage_without_weights_have_nothing_to_average() -> None:
    """A replicated stage of pooling or flatten has no gradients: no all-reduce (every
    replica of it skips alike), where ``torch.cat`` of nothing would fail."""
    from distbench.strategies.pipeline.stages import gradient_mean

    average = gradient_mean(None, 4)  # type: ignore[arg-type]  # never reaches the group
    average([])
