"""The analytic formulas of ``distbench.predict`` against hand-computed values and the 004 thesis.

The thesis (seeds/004, chapter 6) gives no table of *estimated* speedups, only figures
6.1-6.11 and their text; the tests below check the text's claims about the estimates
(best worker count and server type per network and strategy) with the reference
timings of its table 6.1.
"""

from __future__ import annotations

import itertools
import math

import pytest

from distbench.errors import UserError
from distbench.predict import formulas as f
from distbench.predict.estimate import (
    EstimateInputs,
    EstimateRow,
    estimate_report,
    estimate_table,
    recommend,
    render_csv,
    semaphore_bounds,
    stops_paying,
)

# Thesis table 6.1: mean gradient time and weight-transfer time (s), TF 1.1, GTX 970, 1 Gbit/s.
VGG16E = (0.719, 5.153)
GOOGLENET = (0.763, 0.210)
SQUEEZENET = (0.758, 0.033)
RESNET34 = (0.821, 0.811)
REFERENCE = {
    "VGG16E": VGG16E,
    "GoogLeNet": GOOGLENET,
    "SqueezeNet": SQUEEZENET,
    "ResNet-34": RESNET34,
}
D = 128
WORKERS = list(range(1, 9))


def speedups(
    kind: str,
    server: str,
    t: tuple[float, float],
    workers: list[int] = WORKERS,
) -> list[float]:
    rows = estimate_table(kind, server, t[0], t[1], workers, D)  # type: ignore[arg-type]
    return [row.speedup_estimate for row in rows]


# --- synchronous, per iteration ---------------------------------------------------------


def test_sync_central_by_hand() -> None:
    # N=4, t_grad=1, t_comm=0.5: best 5·0.5+1 = 3.5, worst 8·0.5+1 = 5, mean 4.25
    assert f.sync_central_best(1.0, 0.5, 4) == pytest.approx(3.5)
    assert f.sync_central_worst(1.0, 0.5, 4) == pytest.approx(5.0)
    assert f.sync_central_estimate(1.0, 0.5, 4) == pytest.approx(4.25)


def test_sync_distributed_by_hand() -> None:
    # 2·0.5·3/4 + 1 = 1.75
    assert f.sync_distributed(1.0, 0.5, 4) == pytest.approx(1.75)
    assert f.sync_distributed(1.0, 0.5, 1) == pytest.approx(1.0)


def test_n1_central_costs_two_transfers() -> None:
    # One worker with a central server: receive weights, compute, send: 2·t_comm + t_grad.
    assert f.sync_central_best(0.7, 0.2, 1) == pytest.approx(1.1)
    assert f.sync_central_worst(0.7, 0.2, 1) == pytest.approx(1.1)


def test_squeezenet_sync_join_distributed_by_hand() -> None:
    # N=8: t_iter = 2·0.033·7/8 + 0.758 = 0.81575; S = D·t_grad / (D/8 · t_iter)
    t_iter = f.sync_distributed(0.758, 0.033, 8)
    assert t_iter == pytest.approx(0.81575)
    t_train = f.sync_training_time(f.sync_join_iterations(D, 8), t_iter)
    assert f.speedup(0.758, D, t_train) == pytest.approx(8 * 0.758 / 0.81575)


def test_vgg16e_sync_join_central_by_hand() -> None:
    # N=4: mean of (5 and 8)·5.153 + 0.719 = 34.2135 s per iteration of 4 batches
    rows = estimate_table("sync-join", "central", *VGG16E, [4], D)
    assert rows[0].time_per_iteration == pytest.approx(34.2135)
    assert rows[0].speedup_estimate == pytest.approx(4 * 0.719 / 34.2135)


# --- iterations -------------------------------------------------------------------------


def test_iterations() -> None:
    assert f.sync_join_iterations(128, 4) == 32
    assert f.sync_join_iterations(128, 3) == pytest.approx(128 / 3)
    assert f.sync_join_iterations(128, 3, "ceil") == 43
    assert f.sync_split_iterations(128) == 128


# --- asynchronous, whole training -------------------------------------------------------


def test_async_central_by_hand() -> None:
    # t_grad=1, t_comm=0.5, N=4, D=8: server 9·0.5+1 = 5.5; last worker 3·0.5 + 2·2 = 5.5
    assert f.async_central_best(1.0, 0.5, 4, 8) == pytest.approx(5.5)
    # worst: 2·(4+1) = 10; estimate (5.5+10)/2
    assert f.async_central_worst(1.0, 0.5, 4, 8) == pytest.approx(10.0)
    assert f.async_central_estimate(1.0, 0.5, 4, 8) == pytest.approx(7.75)


def test_async_central_best_is_server_bound_for_many_workers() -> None:
    # SqueezeNet-like ratio with N=D: the server's (D+1)·t_comm + t_grad dominates
    assert f.async_central_best(0.1, 0.5, 8, 8) == pytest.approx(9 * 0.5 + 0.1)


def test_async_distributed_by_hand() -> None:
    # (8/4)·(2·0.5·3/4 + 1) = 3.5
    assert f.async_distributed(1.0, 0.5, 4, 8) == pytest.approx(3.5)


def test_n1_speedups() -> None:
    for t_grad, t_comm in REFERENCE.values():
        for kind in ("sync-join", "sync-split", "async"):
            dist = estimate_table(kind, "distributed", t_grad, t_comm, [1], D)[0]
            central = estimate_table(kind, "central", t_grad, t_comm, [1], D)[0]
            assert dist.speedup_estimate == pytest.approx(1.0)
            assert central.speedup_estimate == pytest.approx(t_grad / (t_grad + 2 * t_comm))


# --- speedup and the thesis' findings -----------------------------------------------------


def test_vgg16e_never_speeds_up_sync_join_central() -> None:
    assert all(s < 1 for s in speedups("sync-join", "central", VGG16E, [1, 2, 3, 4]))
    assert all(s < 1 for s in speedups("sync-join", "central", VGG16E))


def test_squeezenet_sync_join_distributed_rises_with_n() -> None:
    values = speedups("sync-join", "distributed", SQUEEZENET)
    assert all(b > a for a, b in itertools.pairwise(values))
    assert values[-1] == pytest.approx(7.4337, abs=1e-3)  # measured: 6.5 (thesis 7.1)


@pytest.mark.parametrize("net", sorted(REFERENCE))
@pytest.mark.parametrize("kind", ["sync-join", "sync-split", "async"])
def test_distributed_never_slower_than_central(net: str, kind: str) -> None:
    central = estimate_table(kind, "central", *REFERENCE[net], WORKERS, D)  # type: ignore[arg-type]
    dist = estimate_table(kind, "distributed", *REFERENCE[net], WORKERS, D)  # type: ignore[arg-type]
    for c, d in zip(central, dist, strict=True):
        assert d.t_estimate <= c.t_estimate
        assert c.t_best is not None and d.t_estimate <= c.t_best + 1e-9


def test_central_band_contains_estimate() -> None:
    for row in estimate_table("async", "central", *GOOGLENET, WORKERS, D):
        assert row.t_best is not None and row.t_worst is not None
        assert row.t_best <= row.t_estimate <= row.t_worst
        assert row.speedup_best is not None and row.speedup_worst is not None
        assert row.speedup_worst <= row.speedup_estimate <= row.speedup_best


def test_squeezenet_sync_split_central_peaks_at_four() -> None:
    # Thesis 6.4 / 7.1: with a central server SqueezeNet sync-split is fastest on 4 workers,
    # "the estimates predicted this unusual case" (with the t_grad/N split time).
    values = speedups("sync-split", "central", SQUEEZENET)
    assert values.index(max(values)) + 1 == 4


# Thesis chapter 6 text: the best configuration the estimates pointed to, per figure.
BEST = [
    ("VGG16E", "sync-join", 4, "sequential", 1),  # fig. 6.1
    ("GoogLeNet", "sync-join", 8, "sync-join/sharded", 8),  # fig. 6.2
    ("SqueezeNet", "sync-join", 8, "sync-join/sharded", 8),  # fig. 6.3 (8 workers)
    ("ResNet-34", "sync-join", 8, "sync-join/sharded", 8),  # fig. 6.4
    ("SqueezeNet", "sync-split", 8, "sync-split/sharded", 8),  # fig. 6.6
    ("ResNet-34", "sync-split", 8, "sequential", 1),  # fig. 6.7
    ("VGG16E", "async", 4, "sequential", 1),  # fig. 6.8
    ("GoogLeNet", "async", 8, "async/sharded", 8),  # fig. 6.9
    ("SqueezeNet", "async", 8, "async/sharded", 8),  # fig. 6.10 (8 workers)
    ("ResNet-34", "async", 8, "async/sharded", 8),  # fig. 6.11
]


@pytest.mark.parametrize(("net", "kind", "max_n", "strategy", "workers"), BEST)
def test_recommendation_matches_thesis(
    net: str, kind: str, max_n: int, strategy: str, workers: int
) -> None:
    t_grad, t_comm = REFERENCE[net]
    inputs = EstimateInputs(
        kind=kind,  # type: ignore[arg-type]
        server="central",
        t_grad=t_grad,
        t_comm=t_comm,
        workers=tuple(range(1, max_n + 1)),
        batches=D,
    )
    rec = estimate_report(inputs).recommendation
    assert (rec.strategy, rec.workers) == (strategy, workers)


def test_googlenet_sync_split_central_below_one_distributed_above() -> None:
    # Fig. 6.5 text: central server not suitable; the distributed estimate says it speeds up.
    assert all(s < 1 for s in speedups("sync-split", "central", GOOGLENET))
    assert speedups("sync-split", "distributed", GOOGLENET)[-1] > 1


def test_resnet34_async_central_below_one() -> None:
    # Fig. 6.11 text: with a central server ResNet-34 async never speeds up.
    assert all(s < 1 for s in speedups("async", "central", RESNET34))


# --- sync-split gradient time -------------------------------------------------------------


def test_sync_split_uses_measured_split_time_but_full_numerator() -> None:
    split = [0.8, 0.5]
    row = estimate_table("sync-split", "distributed", 0.8, 0.1, [2], D, t_grad_split=split)[0]
    t_iter = 2 * 0.1 * 1 / 2 + 0.5
    assert row.time_per_iteration == pytest.approx(t_iter)
    assert row.speedup_estimate == pytest.approx(D * 0.8 / (D * t_iter))
    assert "measured" in row.formula


def test_sync_split_fallback_is_labelled() -> None:
    row = estimate_table("sync-split", "distributed", 0.8, 0.1, [4], D)[0]
    assert row.time_per_iteration == pytest.approx(2 * 0.1 * 3 / 4 + 0.2)
    assert "t_grad/N fallback" in row.formula


def test_sync_split_too_few_split_times() -> None:
    with pytest.raises(UserError, match="one value per worker count"):
        estimate_table("sync-split", "central", 0.8, 0.1, [1, 2, 3], D, t_grad_split=[0.8, 0.4])


# --- semaphore ----------------------------------------------------------------------------


def test_semaphore_bounds() -> None:
    bounds = semaphore_bounds(0.2, 5)
    assert (bounds.t_best, bounds.t_worst) == (pytest.approx(0.2), pytest.approx(1.0))
    assert f.semaphore_best(0.2, 1) == f.semaphore_worst(0.2, 1)


# --- ring all-reduce and DDP --------------------------------------------------------------


def test_ring_allreduce_by_hand() -> None:
    # N=4, 100 MB at 1 GB/s, α=1 ms: 6·0.001 + 1.5·0.1 = 0.156
    assert f.ring_allreduce_time(4, 1e8, 1e-3, 1e9) == pytest.approx(0.156)
    assert f.ring_allreduce_time(1, 1e8, 1e-3, 1e9) == 0.0
    # bandwidth term tends to 2·bytes/β
    assert f.ring_allreduce_time(1000, 1e8, 0.0, 1e9) == pytest.approx(0.1998)
    assert f.ring_allreduce_bandwidth_time(4, 0.1) == pytest.approx(0.15)


def test_ddp_step_by_hand() -> None:
    # all-reduce fully hidden behind backward
    assert f.ddp_step_time(0.3, 0.1, t_backward=0.2, overlap=1.0) == pytest.approx(0.3)
    # half the backward hides it: 0.3 + (0.25 - 0.1)
    assert f.ddp_step_time(0.3, 0.25, t_backward=0.2, overlap=0.5) == pytest.approx(0.45)
    # no overlap and the default backward share (2/3 of t_grad)
    assert f.ddp_step_time(0.3, 0.25, overlap=0.0) == pytest.approx(0.55)
    assert f.ddp_step_time(0.3, 0.25, overlap=1.0) == pytest.approx(0.35)


def test_ddp_default_overlap() -> None:
    assert f.ddp_default_overlap(100 * 2**20) == pytest.approx(0.75)
    assert f.ddp_default_overlap(10 * 2**20) == 0.0
    assert f.ddp_default_overlap(0) == 0.0


def test_ddp_table_band() -> None:
    rows = estimate_table(
        "ddp", "central", 0.3, None, [1, 2, 4], D, alpha=5e-5, beta=1.25e8, grad_bytes=4.6e7
    )
    assert rows[0].speedup_estimate == pytest.approx(1.0)
    for row in rows:
        assert row.t_best is not None and row.t_worst is not None
        assert row.t_best <= row.t_estimate <= row.t_worst
    t_ar = f.ring_allreduce_time(4, 4.6e7, 5e-5, 1.25e8)
    assert rows[2].t_worst == pytest.approx(D / 4 * (0.3 + t_ar))


# --- pipeline ----------------------------------------------------------------------------


def test_gpipe_and_bubble_by_hand() -> None:
    # M=4, S=3, slowest stage 0.02: (4+3-1)·0.02 = 0.12; bubble 2/6
    # the first micro-batch through all three stages, three more at the slowest's pace
    assert f.gpipe_batch_time([0.01, 0.02, 0.015], 4) == pytest.approx(0.045 + 3 * 0.02)
    assert f.one_f_one_b_batch_time([0.01, 0.02, 0.015], 4) == pytest.approx(0.105)
    assert f.gpipe_batch_time([0.02] * 3, 4) == pytest.approx((4 + 3 - 1) * 0.02)
    assert f.bubble_fraction(3, 4) == pytest.approx(1 / 3)
    assert f.bubble_fraction(1, 8) == 0.0


def test_pipeline_activation_memory() -> None:
    assert f.pipeline_activations_in_flight("gpipe", 4, 16) == 16
    assert f.pipeline_activations_in_flight("1f1b", 4, 16) == 4
    assert f.pipeline_activations_in_flight("1f1b", 4, 16, stage=3) == 1
    assert f.pipeline_activations_in_flight("1f1b", 4, 2) == 2


def test_pipeline_balanced_speedup() -> None:
    # balanced stages: S = M·N / (M + N - 1)
    rows = estimate_table("pipeline", "central", 0.3, None, [1, 4], D, microbatches=8)
    assert rows[0].speedup_estimate == pytest.approx(1.0)
    assert rows[1].speedup_estimate == pytest.approx(32 / 11)


def test_pipeline_measured_stages_row() -> None:
    rows = estimate_table(
        "pipeline", "central", None, None, [1], D, stage_times=[0.01, 0.012, 0.011], microbatches=8
    )
    assert [r.workers for r in rows] == [3]
    assert rows[0].time_per_iteration == pytest.approx(7 * 0.012 + 0.033)
    assert rows[0].speedup_estimate == pytest.approx(8 * 0.033 / 0.117)


# --- recommendation ----------------------------------------------------------------------


def _rows(speedups_: list[float]) -> list[EstimateRow]:
    return [
        EstimateRow(
            workers=n,
            t_best=None,
            t_worst=None,
            t_estimate=10.0 / s,
            time_per_iteration=None,
            speedup_best=None,
            speedup_worst=None,
            speedup_estimate=s,
            formula="test",
        )
        for n, s in enumerate(speedups_, start=1)
    ]


def test_stops_paying() -> None:
    assert stops_paying(_rows([1.0, 1.9, 2.5, 2.55, 2.9])) == 4  # the 4th adds 0.05 worker
    assert stops_paying(_rows([1.0, 2.0, 3.0])) is None
    assert stops_paying(_rows([1.0, 1.5, 1.9]), min_gain=0.45) == 3


def test_linear_scaling_never_stops_paying_and_flat_scaling_stops_at_once() -> None:
    """Right at both ends: speedup 64 at 64 workers (a relative rule said N = 22)."""
    assert stops_paying(_rows([float(n) for n in range(1, 65)])) is None
    assert stops_paying(_rows([1.0, 1.02, 1.03])) == 2


def test_recommend_respects_budget() -> None:
    rec = recommend({"a": _rows([1.0, 1.5, 3.0]), "b": _rows([1.0, 2.0, 2.5])}, budget_workers=2)
    assert (rec.strategy, rec.workers) == ("b", 2)
    assert rec.speedup == pytest.approx(2.0)
    rec = recommend({"a": _rows([1.0, 1.5, 3.0]), "b": _rows([1.0, 2.0, 2.5])}, budget_workers=3)
    assert (rec.strategy, rec.workers) == ("a", 3)


def test_recommend_sequential_when_nothing_pays() -> None:
    rec = recommend({"a": _rows([0.5, 0.7])}, budget_workers=2)
    assert (rec.strategy, rec.workers, rec.speedup) == ("sequential", 1, 1.0)
    assert rec.t_estimate == pytest.approx(10.0)


def test_render_csv_shape() -> None:
    text = render_csv(estimate_table("sync-join", "central", *SQUEEZENET, WORKERS, D))
    lines = text.splitlines()
    assert lines[0].startswith("workers,t_best,t_worst,t_estimate")
    assert len(lines) == 9


# --- invalid input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda: f.sync_central_best(-1.0, 0.1, 2),
        lambda: f.sync_central_best(0.0, 0.1, 2),
        lambda: f.sync_distributed(1.0, -0.1, 2),
        lambda: f.sync_distributed(1.0, 0.1, 0),
        lambda: f.async_distributed(1.0, 0.1, 2, 0),
        lambda: f.async_central_best(math.nan, 0.1, 2, 8),
        lambda: f.speedup(1.0, 8, 0.0),
        lambda: f.ring_allreduce_time(2, 1e6, 0.0, 0.0),
        lambda: f.ddp_step_time(0.3, 0.1, overlap=1.5),
        lambda: f.ddp_step_time(0.3, 0.1, t_backward=0.5),
        lambda: f.gpipe_batch_time([], 4),
        lambda: f.bubble_fraction(2, 0),
        lambda: f.sync_join_iterations(128, 2, "floor"),  # type: ignore[arg-type]
        lambda: estimate_table("sync-join", "central", None, 0.1, [1], D),
        lambda: estimate_table("ddp", "central", 0.3, None, [2], D),
        lambda: estimate_table("pipeline", "central", 0.3, None, [2], D),
        lambda: estimate_table("bogus", "central", 0.3, 0.1, [2], D),  # type: ignore[arg-type]
        lambda: recommend({"a": _rows([1.0])}, budget_workers=0),
    ],
)
def test_invalid_input_raises_user_error(call: object) -> None:
    with pytest.raises(UserError) as info:
        call()  # type: ignore[operator]
    assert "\n" not in str(info.value)


def test_closed_cycle_time_by_mean_value_analysis() -> None:
    # one station, no think time: n customers take n services a cycle
    assert f.closed_cycle_time(3, 0.0, [1.0]) == pytest.approx(3.0)
    # think 1, service 1, two customers: R(1) = 1, Q(1) = 1/2, R(2) = 1.5, cycle 2.5
    assert f.closed_cycle_time(2, 1.0, [1.0]) == pytest.approx(2.5)
    # one customer never queues; many reach the bottleneck's bound from above
    assert f.closed_cycle_time(1, 1.2, [0.2, 0.2]) == pytest.approx(1.6)
    many = f.closed_cycle_time(64, 1.2, [0.2, 0.2])
    assert 64 * 0.2 <= many <= 64 * 0.2 + 1.6


def test_async_central_links_lies_above_both_bounds() -> None:
    for n in (1, 4, 8, 16):
        step = f.async_central_links(1.2, 0.2, 0.01, n)
        assert step >= max(1.2 + 2 * 0.01 + 2 * 0.2, n * 0.2) - 1e-12
    assert f.async_central_links(1.2, 0.2, 0.0, 1) == pytest.approx(1.6)
