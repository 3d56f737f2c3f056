"""The pipeline planner with given costs, and the pipeline strategies' input checks."""

from __future__ import annotations

import itertools

import pytest

from distbench.config import RunConfig
from distbench.errors import UserError
from distbench.registry import check_run
from distbench.strategies.pipeline.partition import (
    DEFAULT_LINK,
    BlockCost,
    Link,
    best_cuts,
    format_plan,
    plan_stages,
    predicted_step_s,
    stage_time_s,
    theoretical_bubble,
    uniform_cuts,
)

pytestmark = pytest.mark.timeout(60)

FREE_LINK = Link(latency_s=0.0, bandwidth_bytes_per_s=1e30)


def costs(compute: list[float], activation: int = 0) -> list[BlockCost]:
    """Blocks whose forward + backward take ``compute`` seconds (split 1:2)."""
    return [BlockCost(f"b{i}", c / 3, 2 * c / 3, 0, activation) for i, c in enumerate(compute)]


def brute_force_bottleneck(blocks: list[BlockCost], stages: int, link: Link) -> float:
    n = len(blocks)
    best = float("inf")
    for inner in itertools.combinations(range(1, n), stages - 1):
        bounds = [0, *inner, n]
        slowest = max(stage_time_s(blocks, a, b, link) for a, b in itertools.pairwise(bounds))
        best = min(best, slowest)
    return best


def test_uniform_cuts_are_equal_block_counts() -> None:
    assert uniform_cuts(7, 2) == [(0, 4), (4, 7)]
    assert uniform_cuts(12, 3) == [(0, 4), (4, 8), (8, 12)]
    assert uniform_cuts(3, 3) == [(0, 1), (1, 2), (2, 3)]
    with pytest.raises(ValueError, match="cannot cut 2 blocks into 3"):
        uniform_cuts(2, 3)


def test_profiled_plan_beats_uniform_on_unbalanced_blocks() -> None:
    # Six light blocks and one heavy one, as in benchmarks/unbalanced_model.py.
    blocks = costs([1, 1, 1, 1, 1, 1, 6])
    names = [b.name for b in blocks]
    uniform = plan_stages("uniform", names, 2, blocks, FREE_LINK)
    profiled = plan_stages("profiled", names, 2, blocks, FREE_LINK)
    assert uniform.cuts() == [(0, 4), (4, 7)]
    assert profiled.cuts() == [(0, 6), (6, 7)]
    assert uniform.bottleneck_s == pytest.approx(8.0)
    assert profiled.bottleneck_s == pytest.approx(6.0)


def test_dp_matches_brute_force() -> None:
    compute = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0]
    blocks = costs(compute, activation=10**6)
    link = Link(latency_s=1e-3, bandwidth_bytes_per_s=1e8)
    for stages in range(1, 6):
        cuts = best_cuts(blocks, stages, link)
        assert cuts[0][0] == 0 and cuts[-1][1] == len(blocks)
        assert all(a < b for a, b in cuts)
        slowest = max(stage_time_s(blocks, a, b, link) for a, b in cuts)
        assert slowest == pytest.approx(brute_force_bottleneck(blocks, stages, link))


def test_transfer_cost_moves_the_cut_to_a_small_activation() -> None:
    # Equal compute; cutting after block 1 moves 1 GB, after block 2 only 1 kB.
    blocks = [
        BlockCost("a", 1, 1, 0, 10**9),
        BlockCost("b", 1, 1, 0, 10**9),
        BlockCost("c", 1, 1, 0, 10**3),
        BlockCost("d", 1, 1, 0, 10**3),
    ]
    slow_link = Link(latency_s=0.0, bandwidth_bytes_per_s=1e8)
    assert best_cuts(blocks, 2, FREE_LINK) == [(0, 2), (2, 4)]
    assert best_cuts(blocks, 2, slow_link) == [(0, 3), (3, 4)]


def test_stage_time_charges_both_boundaries() -> None:
    blocks = costs([1.0, 1.0, 1.0], activation=1000)
    link = Link(latency_s=0.5, bandwidth_bytes_per_s=1000.0)  # 1.5 s per transfer
    assert stage_time_s(blocks, 0, 1, link) == pytest.approx(1.0 + 2 * 1.5)
    assert stage_time_s(blocks, 1, 2, link) == pytest.approx(1.0 + 4 * 1.5)
    assert stage_time_s(blocks, 0, 3, link) == pytest.approx(3.0)


def test_plan_without_profile_has_no_predictions() -> None:
    plan = plan_stages("uniform", ["a", "b", "c"], 2)
    assert plan.bottleneck_s is None and predicted_step_s(plan, 4) is None
    assert [s.blocks for s in plan.stages] == [("a", "b"), ("c",)]
    assert "stage 1: c" in format_plan(plan, 4)
    with pytest.raises(ValueError, match="needs block costs"):
        plan_stages("profiled", ["a", "b"], 2)


def test_plan_dict_and_prediction() -> None:
    blocks = costs([1, 2, 3])
    plan = plan_stages("profiled", [b.name for b in blocks], 2, blocks, DEFAULT_LINK)
    data = plan.to_dict()
    assert data["method"] == "profiled" and len(data["stages"]) == 2
    assert len(data["profile"]) == 3
    # the first micro-batch through both stages (6 s of compute, the boundary both ways
    # once), three more behind it at the slowest stage's pace
    boundary = 2 * DEFAULT_LINK.transfer_s(0)
    fill = 6.0 + boundary
    assert predicted_step_s(plan, 4) == pytest.approx(3 * (plan.bottleneck_s or 0) + fill)
    assert plan.bottleneck_s == pytest.approx(3.0 + boundary)
    assert "predicted step" in format_plan(plan, 4)


def test_theoretical_bubble() -> None:
    assert theoretical_bubble(1, 4) == 0.0
    assert theoretical_bubble(2, 4) == pytest.approx(1 / 5)
    assert theoretical_bubble(4, 1) == pytest.approx(3 / 4)  # model parallel: (S-1)/S


# ---------------------------------------------------------------------------- validation


def pipeline(**kw: object) -> RunConfig:
    settings: dict[str, object] = {
        "model": "lenet5",
        "strategy": "pipeline-gpipe",
        "workers": 2,
        "batch_size": 16,
        **kw,
    }
    return check_run(RunConfig.from_dict(settings))


def test_valid_pipeline_configs() -> None:
    assert pipeline().workers == 2
    assert pipeline(strategy="pipeline-1f1b", microbatches=2).microbatches == 2
    assert pipeline(strategy="model-parallel").batch_size == 16
    # one batch in flight: a micro-batch count is refused, not silently ignored
    with pytest.raises(UserError, match="--microbatches 3 does not apply to model-parallel"):
        pipeline(strategy="model-parallel", microbatches=3)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"microbatches": 3}, "must be divisible by --microbatches 3"),
        ({"workers": 8}, "has only 7 block(s)"),
        (
            {"strategy": "pipeline-1f1b", "workers": 4, "microbatches": 2},
            "--microbatches 2 must be at least the number of stages",
        ),
        ({"strategy": "model-parallel", "workers": 9}, "has only 7 block(s)"),
        # replication that does not divide: 9 workers are 9 copies (9 does not divide 4
        # micro-batches) or 3 x 3 (neither), or 9 stages (more than the 7 blocks)
        (
            {"workers": 9, "microbatches": 4, "partition": "profiled"},
            "cannot be planned as copies of a pipeline",
        ),
        (
            {"strategy": "pipeline-1f1b", "workers": 8, "microbatches": 4, "partition": "profiled"},
            "each copy with at least as many micro-batches as stages (1F1B)",
        ),
        (
            {
                "strategy": "pipeline-pipedream",
                "workers": 8,
                "microbatches": 1,
                "partition": "profiled",
            },
            "each stage's replicas dividing --microbatches 1",
        ),
    ],
)
def test_invalid_pipeline_configs_are_one_line_user_errors(
    settings: dict[str, object], message: str
) -> None:
    with pytest.raises(UserError) as info:
        pipeline(**settings)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_pipeline_batches_are_global() -> None:
    from distbench.strategies.registry import STRATEGIES

    cfg = pipeline(microbatches=4)
    strategy = STRATEGIES["pipeline-gpipe"]
    assert strategy.scaling == "strong"
    assert strategy.global_batch(cfg) == 16 and strategy.local_batch(cfg) == 4


def test_profile_blocks_costs_every_block_and_keeps_rng_state() -> None:
    import torch

    from distbench.models import build_model
    from distbench.strategies.pipeline.profile_blocks import profile_blocks

    model = build_model("mobilenetv2", 10)  # has dropout and batch norm
    sample = torch.randn(2, 3, 32, 32)
    before = torch.random.get_rng_state()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a run; several threads on a busy host crawl
    try:
        costs = profile_blocks(model, sample)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(before, torch.random.get_rng_state())
    assert [c.name for c in costs][:2] == ["stem", "stage1_0"] and len(costs) == 23
    assert all(c.forward_s > 0 for c in costs)
    assert costs[0].param_bytes == 4 * 928 and costs[-1].activation_bytes == 2 * 10 * 4
    running = model.state_dict()["stem.1.running_mean"]
    assert torch.equal(running, torch.zeros_like(running))  # profiled on a copy


def test_list_models_blocks_rows() -> None:
    from distbench.cli.list_cmd import block_rows

    rows = block_rows("lenet5", 10)
    assert [r[1] for r in rows] == ["conv1", "conv2", "pool", "flatten", "fc1", "fc2", "fc"]
    assert rows[0][2:] == ("156", "6x14x14", "4.6 KiB")
    assert rows[-1][4] == "40 B"


def _costs(
    compute_ms: list[float], param_bytes: list[int], activation: int = 1000
) -> list[BlockCost]:
    return [
        BlockCost(f"b{i}", ms / 3e3, 2 * ms / 3e3, params, activation)
        for i, (ms, params) in enumerate(zip(compute_ms, param_bytes, strict=True))
    ]


FAST = Link(latency_s=0.0, bandwidth_bytes_per_s=1e9)


def test_spare_workers_replicate_the_slowest_stage() -> None:
    """PipeDream's planner with replicas: a heavy block with few weights is worth two
    replicas, light blocks with heavy weights are not (pure data parallelism would spend
    27 ms a step on their all-reduce); every worker is used."""
    from distbench.strategies.pipeline.partition import best_replicated

    costs = _costs([10.0, 2.0, 2.0], [1000, 10**7, 10**7])
    plan = best_replicated(costs, 3, FAST)
    assert plan == [(0, 1, 2), (1, 3, 1)]
    assert sum(r for _, _, r in plan) == 3
    placed = plan_stages("profiled", [c.name for c in costs], 3, costs, FAST, replicate=True)
    assert [(s.start, s.stop, s.replicas) for s in placed.stages] == plan
    assert placed.place(1) == (0, 1) and placed.place(2) == (1, 0) and placed.rank_of(1, 0) == 2
    # the slowest stage per micro-batch: the replicated one, halved (plus its all-reduce)
    assert placed.bottleneck_s == pytest.approx((10e-3 + 2 * 1e-6 + 2 * 500 / 1e9) / 2, rel=1e-6)


def test_weights_too_heavy_to_synchronize_are_not_replicated() -> None:
    """When an all-reduce of a stage's weights costs more than its compute saves, the
    planner cuts stages instead (as PipeDream does for weight-heavy layers)."""
    from distbench.strategies.pipeline.partition import best_replicated

    costs = _costs([10.0, 10.0], [10**9, 10**9])
    assert best_replicated(costs, 2, FAST) == [(0, 1, 1), (1, 2, 1)]
    # with light weights the same two workers rather replicate the whole model
    light = _costs([10.0, 10.0], [100, 100])
    assert best_replicated(light, 2, FAST) == [(0, 2, 2)]


def test_pipedream_plans_price_stashing_and_updating_weights_per_micro_batch() -> None:
    """A block whose weights are costly to copy and update moves the cut when every
    micro-batch stashes and updates them (PipeDream), not otherwise."""
    blocks = [
        BlockCost(f"b{i}", 0.005 / 3, 0.010 / 3, 0, 0, weights_s=0.008 if i == 3 else 0.0)
        for i in range(4)
    ]
    assert best_cuts(blocks, 2, FREE_LINK) == [(0, 2), (2, 4)]
    assert best_cuts(blocks, 2, FREE_LINK, per_microbatch=True) == [(0, 3), (3, 4)]
    plan = plan_stages("profiled", [b.name for b in blocks], 2, blocks, FREE_LINK,
                       per_microbatch=True)  # fmt: skip
    assert plan.stages[1].weights_s == 0.008
    assert plan.bottleneck_s == pytest.approx(0.015)
    assert "stash and update 8.00" in format_plan(plan, 4, flush=False)


# ---------------------------------------------------------------------------- copies


def test_flushing_pipelines_replicate_as_copies_of_the_whole_pipeline() -> None:
    """GPipe and 1F1B-flush replicate every stage alike: ``stages x copies = workers``,
    copies dividing the micro-batches (each copy takes its share), 1F1B needing at least
    as many micro-batches per copy as stages."""
    from distbench.strategies.pipeline.partition import pipeline_copies, replicated_fits

    assert pipeline_copies(7, 8, 4) == [(2, 4), (4, 2)]  # 8 copies do not divide 4
    assert pipeline_copies(7, 8, 4, one_f_one_b=True) == []
    assert pipeline_copies(7, 8, 8, one_f_one_b=True) == [(1, 8), (2, 4), (4, 2)]
    assert pipeline_copies(3, 2, 1) == [(2, 1)]  # one micro-batch: never copied
    # PipeDream's replicas: any count per stage, each dividing the micro-batches
    assert replicated_fits(3, 5, 4)  # 4 + 1
    assert not replicated_fits(1, 3, 4)  # one stage of 3 replicas
    assert not replicated_fits(2, 9, 3)  # at most 3 + 3


def test_copies_price_the_flushing_step_and_their_all_reduce() -> None:
    """A copy of the pipeline runs ``M / copies`` micro-batches through ``S`` stages, then
    its stages all-reduce among the copies: light weights make copies of one stage (no
    bubble) the best plan, heavy weights a pipeline without copies."""
    from distbench.strategies.pipeline.partition import best_pipeline_copies, flush_step_s

    # the first micro-batch through both stages (fill 3), three more at the slowest's pace
    assert flush_step_s([1.0, 2.0], 3.0, [0.5, 0.25], 2, 8) == pytest.approx(3 * 2.0 + 3 + 0.5)
    light = _costs([10.0, 10.0], [100, 100])
    assert best_pipeline_copies(light, 2, FAST, 4) == ([(0, 2)], 2)
    heavy = _costs([10.0, 10.0], [10**9, 10**9])
    assert best_pipeline_copies(heavy, 2, FAST, 4) == ([(0, 1), (1, 2)], 1)
    plan = plan_stages(
        "profiled", [c.name for c in light], 2, light, FAST, True, 4, copies_only=True
    )
    assert [(s.start, s.stop, s.replicas) for s in plan.stages] == [(0, 2, 2)]
    sync = plan.stages[0].sync_s
    assert sync is not None and sync > 0
    # two micro-batches per copy, one stage: 2 slots of 20 ms, then the all-reduce
    assert predicted_step_s(plan, 4) == pytest.approx(2 * 20e-3 + sync)
    text = format_plan(plan, 4)
    assert "x2 replicas" in text and "2 copies of the pipeline" in text
