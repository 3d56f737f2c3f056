"""Figures over rounds: intervals of medians and ratios, round combination, run-set changes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from distbench.analysis.changes import compare_run_sets, regressions
from distbench.config import RunConfig
from distbench.errors import UserError
from distbench.harness.session import Measured, wants_round
from distbench.measurement.rounds import (
    SAME,
    median_interval,
    ratio_interval,
    rerun_agreement,
    verdict,
)
from distbench.store.db import add_scaling
from distbench.store.result import Round, RunResult


def test_order_statistic_coverage_is_exact() -> None:
    five = median_interval([5.0, 1.0, 4.0, 2.0, 3.0])
    assert (five.median, five.low, five.high) == (3.0, 1.0, 5.0)
    assert five.level == pytest.approx(1 - 2 / 32)  # the range of 5 rounds: 93.75 %
    assert median_interval([1.0, 2.0, 3.0]).level == pytest.approx(0.75)
    many = median_interval([float(v) for v in range(20)])
    assert many.level >= 0.95 and many.low > 0 and many.high < 19  # narrower than the range


def test_one_round_has_no_interval() -> None:
    one = median_interval([7.0])
    assert one.n == 1 and one.level == 0 and "no interval" in one.describe()


def test_a_ratio_whose_interval_contains_one_is_no_measurable_difference() -> None:
    noisy = ratio_interval([100.0, 120.0, 90.0, 110.0, 105.0], [100.0, 115.0, 95.0, 108.0, 98.0])
    assert noisy.low < 1 < noisy.high and verdict(noisy) == SAME
    clear = ratio_interval([200.0, 205.0, 198.0, 202.0, 201.0], [100.0, 101.0, 99.0, 102.0, 98.0])
    assert clear.low > 1 and verdict(clear) == "faster"
    assert math.isclose(clear.median, 201.0 / 100.0)
    seeded = ratio_interval([1.0, 2.0, 3.0], [4.0, 5.0])
    assert seeded == ratio_interval([1.0, 2.0, 3.0], [4.0, 5.0])  # the same rounds print alike


def _result(run_id: str, throughputs: list[float], workers: int = 1, **facts: object) -> RunResult:
    rounds = [
        Round(k + 1, "ok", f"/runs/{run_id}-r{k + 1}", "t", 1.0, throughput=t).to_dict()
        for k, t in enumerate(throughputs)
    ]
    return RunResult(
        run_id=run_id,
        status="ok",
        created_at="2026-12-02",
        model="lenet5",
        dataset="synthetic",
        strategy=str(facts.get("strategy", "ddp")),
        framework="torch",
        workers=workers,
        global_batch=32 * workers,
        local_batch=32,
        scaling="weak",
        throughput_median=sorted(throughputs)[len(throughputs) // 2],
        rounds=rounds,
        config={"model": "lenet5", "strategy": facts.get("strategy", "ddp"), "workers": workers},
    )


def test_speedup_carries_an_interval_over_both_runs_rounds() -> None:
    base = _result("base", [100.0, 104.0, 96.0, 101.0, 99.0], strategy="sequential")
    same = add_scaling(_result("two", [103.0, 95.0, 108.0, 99.0, 101.0], workers=2), base)
    assert same.speedup_ci is not None and same.speedup_verdict == SAME
    assert same.efficiency_ci == [same.speedup_ci[0] / 2, same.speedup_ci[1] / 2]
    faster = add_scaling(_result("two", [180.0, 185.0, 178.0, 182.0, 181.0], workers=2), base)
    assert faster.speedup_verdict == "faster" and faster.speedup_ci[0] > 1  # type: ignore[index]
    itself = add_scaling(base, base)
    assert itself.speedup == 1 and itself.speedup_ci is None


def test_the_result_of_rounds_is_their_median_and_a_failed_round_fails_it(tmp_path: Path) -> None:
    item = Measured(RunConfig(model="lenet5", rounds=3), _result("x", [1.0]))
    for k, t in enumerate([300.0, 100.0, 200.0]):
        item.rounds.append(Round(k + 1, "ok", str(tmp_path), "t", 2.0, throughput=t))
    assert item.throughputs() == [300.0, 100.0, 200.0]
    item.rounds.append(Round(4, "failed", str(tmp_path), "t", 1.0, error="rank 1 died"))
    failed = item.result("ok")
    assert failed.status == "failed" and failed.error == "round 4: rank 1 died"
    assert failed.duration_s == 7.0 and len(failed.rounds) == 4


def test_precision_adds_rounds_until_narrow_or_out_of_budget(tmp_path: Path) -> None:
    cfg = RunConfig(model="lenet5", precision=5.0, budget=60.0)
    item = Measured(cfg, _result("x", [1.0]))
    assert all(wants_round(item, k, 0.0) for k in range(1, 7))  # 6 rounds before judging
    for k, t in enumerate([100.0, 101.0, 99.0, 100.5, 99.5, 100.0]):
        item.rounds.append(Round(k + 1, "ok", str(tmp_path), "t", 1.0, throughput=t))
    assert not wants_round(item, 7, 0.0) and item.precision
    assert item.precision["outcome"] == "reached"
    wide = Measured(cfg, _result("y", [1.0]))
    for k, t in enumerate([100.0, 150.0, 60.0, 120.0, 80.0, 140.0]):
        wide.rounds.append(Round(k + 1, "ok", str(tmp_path), "t", 1.0, throughput=t))
    assert wants_round(wide, 7, 10.0)
    assert not wants_round(wide, 7, 61.0) and wide.precision
    assert "budget" in wide.precision["outcome"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"rounds": 0}, "--rounds must be at least 1"),
        ({"precision": 0.0}, "--precision must be a percentage in (0, 100)"),
        ({"precision": 100.0}, "--precision must be a percentage in (0, 100)"),
        ({"precision": "ten%"}, "expected a percentage"),
    ],
)
def test_bad_measurement_settings_are_refused(settings: dict[str, object], message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RunConfig(model="lenet5", **settings)  # type: ignore[arg-type]


def test_run_sets_compare_by_configuration() -> None:
    old = [_result("a1", [100.0, 101.0, 99.0, 100.0, 100.5])]
    new = [_result("b1", [80.0, 81.0, 79.0, 80.5, 80.0])]
    [change] = compare_run_sets(old, new)
    assert change.verdict == "slower" and change.ratio == pytest.approx(0.8, rel=0.01)
    assert regressions([change], 5.0) == [change] and regressions([change], 30.0) == []
    other = [_result("c1", [80.0, 81.0], workers=2)]
    with pytest.raises(UserError, match="share no configuration"):
        compare_run_sets(old, other)


@pytest.mark.parametrize(
    ("rounds", "one_way"),
    [
        # a rerun's median leaves the range of n old rounds below when its ceil(n/2) lowest
        # values are the lowest of all 2n: C(n, k) / C(2n, k), on either side
        (3, 1 - 2 * math.comb(3, 2) / math.comb(6, 2)),
        (5, 1 - 2 * math.comb(5, 3) / math.comb(10, 3)),
    ],
)
def test_a_reruns_median_falls_in_the_first_runs_interval_as_often_as_counted_by_hand(
    rounds: int, one_way: float
) -> None:
    counted, both = rerun_agreement(rounds)
    assert counted == pytest.approx(one_way)
    assert both < counted


def test_more_rounds_make_two_runs_agree_more_often_both_ways() -> None:
    assert rerun_agreement(6)[1] > rerun_agreement(5)[1] + 0.1


def test_rerun_agreement_refuses_what_it_cannot_count() -> None:
    with pytest.raises(ValueError):
        rerun_agreement(0)
    with pytest.raises(ValueError):
        rerun_agreement(11)
