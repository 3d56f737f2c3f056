"""This machine's noise floor: the round-to-round spread of a fixed small workload.

``measure_noise_floor`` runs a fixed workload (lenet5, sequential, synthetic data, one
thread) in R rounds into a temporary store, and returns the spread of its rounds, the CPU
that other processes took meanwhile, and the smallest difference two configurations
measured with as many rounds could be told apart by: the half-width of the bootstrap
interval of the ratio of two resamplings of the *same* rounds (no true difference), so a
measured ratio nearer to 1 than that is no measurable difference on this machine.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from distbench.config import RunConfig
from distbench.errors import UserError
from distbench.measurement.rounds import median_interval, ratio_interval

#: The fixed workload: small, one process, one thread, so that it measures the machine.
NOISE_WORKLOAD = {
    "model": "lenet5",
    "strategy": "sequential",
    "dataset": "synthetic",
    "threads": 1,
    "steps": 40,
    "warmup": 5,
}


@dataclass(frozen=True)
class NoiseFloor:
    rounds: int
    throughputs: list[float]
    median: float
    low: float
    high: float
    level: float
    #: (max - min) / median of the rounds.
    spread: float
    #: The median's interval half-width, relative.
    half_width: float
    #: Smallest ratio difference resolvable with this many rounds on each side.
    resolvable: float
    outside_cores: list[float]
    busy_rounds: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_noise_floor(
    rounds: int, on_event: Callable[[str, dict[str, Any]], None] | None = None
) -> NoiseFloor:
    from distbench.harness.session import run_benchmarks

    if rounds < 3:
        raise UserError(f"--rounds must be at least 3 to measure a spread, got {rounds}")
    cfg = RunConfig(**NOISE_WORKLOAD, rounds=rounds)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory(prefix="distbench-doctor-") as tmp:
        [row] = run_benchmarks([cfg], Path(tmp) / "doctor.db", on_event)
    if not row.ok:
        raise UserError(f"the noise workload failed: {row.error}")
    values = row.round_throughputs()
    interval = median_interval(values)
    same = ratio_interval(values, values, seed=1)
    return NoiseFloor(
        rounds=len(values),
        throughputs=values,
        median=interval.median,
        low=interval.low,
        high=interval.high,
        level=interval.level,
        spread=(max(values) - min(values)) / interval.median,
        half_width=interval.half_width,
        resolvable=max(same.high - 1, 1 - same.low),
        outside_cores=[float(r.get("outside_cores") or 0.0) for r in row.rounds],
        busy_rounds=sum(1 for r in row.rounds if r.get("busy")),
    )
