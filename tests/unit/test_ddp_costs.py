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
