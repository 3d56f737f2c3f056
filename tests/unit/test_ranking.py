"""Which configuration is fastest: ranked by median throughput, tied only where the
intervals over rounds overlap."""

from __future__ import annotations

from distbench.analysis.ranking import FASTEST, SLOWER, TIED, rank_configurations
from distbench.store.result import RunResult


def _row(
    run_id: str,
    strategy: str,
    workers: int,
    median: float,
    low: float | None,
    high: float | None,
    model: str = "lenet5",
    created: str = "2026-12-06",
) -> RunResult:
    return RunResult(
        run_id=run_id, status="ok", created_at=created, model=model, dataset="synthetic",
        strategy=strategy, framework="torch", workers=workers, throughput_median=median,
        throughput_ci_low=low, throughput_ci_high=high,
    )  # fmt: skip


def test_ranks_fastest_first_and_ties_only_overlapping_intervals() -> None:
    rows = [
        _row("a", "sequential", 1, 100.0, 95.0, 105.0),
        _row("b", "ddp", 2, 180.0, 170.0, 190.0),
        _row("c", "ps-sync-join", 2, 172.0, 160.0, 171.0),  # overlaps b's (170-190)
        _row("d", "ps-async", 2, 150.0, 140.0, 160.0),  # below b's interval
    ]
    (workload,) = rank_configurations(rows)
    assert [(r.row.run_id, r.standing) for r in workload.runs] == [
        ("b", FASTEST), ("c", TIED), ("d", SLOWER), ("a", SLOWER),
    ]  # fmt: skip
    assert workload.runs[2].verdict() == "17% slower"
    assert not workload.measured_once


def test_one_round_is_never_called_tied_and_the_latest_run_counts() -> None:
    rows = [
        _row("old", "ddp", 2, 500.0, None, None, created="2026-12-01"),
        _row("new", "ddp", 2, 150.0, None, None, created="2026-12-06"),
        _row("seq", "sequential", 1, 149.0, None, None),
        _row("x", "ddp", 2, 10.0, None, None, model="resnet18"),
    ]
    lenet, resnet = rank_configurations(rows)
    assert [r.row.run_id for r in lenet.runs] == ["new", "seq"]
    assert lenet.runs[1].standing == SLOWER and lenet.measured_once
    assert resnet.workload == "resnet18 on synthetic" and len(resnet.runs) == 1
