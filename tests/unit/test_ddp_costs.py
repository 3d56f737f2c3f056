"""The pure parts of ``profiling.ddp_costs``: how long each measurement runs and how the
all-reduce after a step is read from the ranks' clocks."""

from __future__ import annotations

import pytest

from distbench.profiling.calibrate import ddp_levels
from distbench.profiling.ddp_costs import StepCount, after_last_backward


def test_step_count_lasts_about_the_asked_seconds_within_bounds() -> None:
    assert StepCount.lasting(2.0, 0.01, warmup=2, least=5, most=200) == StepCount(2, 200)
    assert StepCount.lasting(2.0, 0.05, warmup=2, least=5, most=200) == StepCount(2, 40)
    assert StepCount.lasting(2.0, 1.4, warmup=1, least=5, most=200) == StepCount(1, 5)
    assert StepCount.lasting(2.0, 0.0, warmup=0, least=5, most=50).timed == 50


def test_all_reduce_after_a_step_starts_at_the_last_backward() -> None:
    rank0 = [(10.0, 10.5), (20.0, 20.7)]  # (end of backward, end of all-reduce)
    rank1 = [(10.2, 10.5), (20.4, 20.7)]  # rank 1 is the straggler: its wait is not comm
    assert after_last_backward([rank0, rank1]) == pytest.approx([0.3, 0.3])
    with pytest.raises(ValueError):
        after_last_backward([rank0, rank1[:1]])  # ranks must have timed the same steps


def test_ddp_levels_are_the_multi_worker_runs_of_this_host() -> None:
    assert ddp_levels(1, 2) == []
    assert ddp_levels(3, 2) == [(2, 1), (3, 1)]
    assert ddp_levels(4, 8) == [(2, 4), (3, 2), (4, 2)]


def test_ddp_costs_measure_the_all_reduce_after_a_step_on_loopback_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from distbench.config import RunConfig
    from distbench.profiling import calibrate
    from distbench.profiling.profiles import LoadedAllReduce, StepTimes

    measured_levels: list[tuple[int, int]] = []

    def loaded(
        cfg: RunConfig, k: int, t: int, nbytes: int, count: StepCount, timeout: float
    ) -> LoadedAllReduce:
        measured_levels.append((k, t))
        return LoadedAllReduce(k, t, 0.001, count.timed)

    monkeypatch.setattr(calibrate, "measure_ddp_overhead", lambda *args: 0.0005)
    monkeypatch.setattr(calibrate, "measure_loaded_allreduce", loaded)
    monkeypatch.setattr(calibrate.os, "cpu_count", lambda: 2)
    base = StepTimes(1, 2, 32, 0.0, 0.001, 0.002, 0.0, 0.003, 0.003, 0.004, 0.004, 5)
    loopback = calibrate.ProfileRequest(cfg=RunConfig(model="lenet5"), workers=2)
    overhead, levels = calibrate.measure_ddp_costs(loopback, [base], 1000)
    assert overhead == 0.0005 and [(a.processes, a.threads) for a in levels] == [(2, 1)]
    shaped = calibrate.ProfileRequest(
        cfg=RunConfig(model="lenet5", network="bandwidth=100mbit"), workers=2
    )
    assert calibrate.measure_ddp_costs(shaped, [base], 1000) == (0.0005, [])
    assert measured_levels == [(2, 1)]  # nothing measured for the shaped-link profile
