"""The fluid replays of ``benchmarks/coupled_links.py``, whose figures docs/emulation.md
quotes: per-link processor sharing (the simulator's links) against max-min fair rates."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from coupled_links import push_phase  # a script beside the package


@pytest.mark.parametrize("coupled", [False, True])
def test_pushes_that_start_together_take_their_bytes_over_the_rate(coupled: bool) -> None:
    """Four workers push equal shards at once: every downlink carries three shards, every
    uplink three, so both models end at 3 shards / rate."""
    shards = [2.0, 2.0, 2.0, 2.0]
    assert push_phase(shards, [0.0] * 4, 1, 1.0, coupled) == pytest.approx(6.0)


def test_a_push_limited_by_its_uplink_keeps_the_downlink_busy_only_with_max_min() -> None:
    """Worker 2 pushes alone to units 0 and 1 (a byte each, rate 1): its uplink gives each
    push half. Worker 0 pushes a byte to unit 1 from t = 1. Per link, unit 1's downlink
    served worker 2's push at the whole rate and is free at t = 1, so worker 0's push ends
    at 2. With max-min rates worker 2's push still has half a byte to send at t = 1, the
    two share the downlink until 2, and worker 0's last half byte ends at 2.5."""
    shards, offsets = [1.0, 1.0, 0.0], [1.0, 1.0, 0.0]
    assert push_phase(shards, offsets, 1, 1.0, coupled=False) == pytest.approx(2.0)
    assert push_phase(shards, offsets, 1, 1.0, coupled=True) == pytest.approx(2.5)
