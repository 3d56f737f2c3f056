"""How far a short asynchronous run can fall from its prediction by chance alone.

    python benchmarks/async_seeds.py emulated.db [--seeds 40]

A run of a few steps whose workers start together moves in a convoy that its compute
times' jitter breaks up at random moments, so one run is one draw of a chaotic schedule.
For every stored ok ps-async run with emulated compute, this simulates the run as it was
configured (its warm-up and steps, the profile it replayed) with ``--seeds`` different
draws of the compute times and prints the measured mean step (the one its throughput
implies, as ``validate`` compares it) beside the simulations' mean, 5-95 % range and
extremes: whether the run is one the simulator's own spread covers; and, for comparison,
the long run's step (``STEADY_STEPS`` steps after ``STEADY_WARMUP``, mean of 3 draws),
which the convoy of a common start does not reach, and the range of the compute draws
(the simulator's only source of the jitter that breaks a convoy).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from statistics import fmean

from distbench.config import RunConfig
from distbench.predict.accuracy import measured_step
from distbench.predict.core import Case, case_of
from distbench.predict.simulated import sim_spec
from distbench.profiling.grad_ready import with_model_sizes
from distbench.profiling.profiles import Profile
from distbench.simulator import simulate
from distbench.store.db import open_store
from distbench.store.result import RunResult

STEADY_STEPS, STEADY_WARMUP = 150, 30


def replayed(db: str, profile_id: int, cfg: RunConfig) -> Profile:
    from distbench.compute.resolve import replayed_profile

    found = replayed_profile(db, cfg.replace(compute_profile=profile_id))
    assert found is not None
    return with_model_sizes(found[0], cfg)


def replayable(db: str, row: RunResult) -> tuple[RunConfig, Case, float, Profile] | None:
    """A stored run with emulated compute as the simulator replays it: its configuration,
    case, measured step (as ``validate`` compares it) and the profile it replayed; ``None``
    for a run with real compute or without a measured step."""
    pid = (row.extra.get("compute") or {}).get("profile_id")
    if pid is None:
        return None  # real compute: not one draw of a replayed profile
    cfg = RunConfig.from_dict(row.config)
    case = case_of(cfg)
    measured = measured_step(case, row)
    if measured is None:
        return None
    return cfg, case, measured, replayed(db, int(pid), cfg)


def stored_async_runs(db: str, tool: str) -> list[RunResult] | None:
    """Every stored ok ps-async run of ``db``; ``None`` (and a line on stderr) when there
    is no such store (opening one would create it empty)."""
    if not Path(db).is_file():
        print(f"{tool}: no such store: {db}", file=sys.stderr)
        return None
    store = open_store(db)
    try:
        return store.query(strategy="ps-async", status="ok")
    finally:
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("db")
    parser.add_argument("--seeds", type=int, default=40)
    args = parser.parse_args()
    rows = stored_async_runs(args.db, "async_seeds")
    if rows is None:
        return 2
    print(
        f"{'model':12} {'N':>3} {'measured':>9} {'sim mean':>9} {'5-95 %':>15} {'range':>15}"
        f" {'':7} {'long run':>9} {'draws ms':>9}"
    )
    for row in rows:
        found = replayable(args.db, row)
        if found is None:
            continue
        cfg, case, measured, profile = found
        steps = sorted(
            simulate(sim_spec(case, profile, case.steps, seed, warmup=case.warmup)[0]).step_time
            for seed in range(args.seeds)
        )
        low, high = steps[int(0.05 * len(steps))], steps[int(0.95 * len(steps)) - 1]
        where = "inside" if low <= measured <= high else "outside"
        draws = sim_spec(case, profile, case.steps, 0, warmup=case.warmup)[0].compute.samples
        spread = f"{min(draws) * 1e3:.0f}-{max(draws) * 1e3:.0f}" if draws else "-"
        steady = fmean(
            simulate(sim_spec(case, profile, STEADY_STEPS, seed, warmup=STEADY_WARMUP)[0]).step_time
            for seed in range(3)
        )
        print(
            f"{cfg.model.split(':')[-1][:12]:12} {cfg.workers:3} {measured * 1e3:9.1f}"
            f" {fmean(steps) * 1e3:9.1f} {low * 1e3:7.0f}-{high * 1e3:<7.0f}"
            f" {steps[0] * 1e3:7.0f}-{steps[-1] * 1e3:<7.0f} {where:7} {steady * 1e3:9.1f}"
            f" {spread:>9}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
