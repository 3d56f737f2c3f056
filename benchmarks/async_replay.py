"""Chance or model? Each stored asynchronous run simulated with its own compute times.

    python benchmarks/async_replay.py emulated.db [--seeds 10]

For every stored ok ps-async run with a central server and emulated compute: the measured
mean step (the one its throughput implies, as ``validate`` compares it), the simulator's
replay as ``validate`` makes it (the profile's draws, every worker starting together, the
mean of ``--seeds`` simulations), the simulation with every worker's own measured forward
+ backward of each step (its ``rank*.jsonl``; ``simulator.Replay``), and the same with
each worker starting when the server began its first pull (the server's transfer records).
With the run's own compute and starts, whatever still differs from the measurement is the
model of the links and the server, not the luck of the draws.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from statistics import fmean

from async_seeds import (  # a sibling benchmark: run as python benchmarks/async_replay.py
    replayed,
    stored_async_runs,
)
from distbench.config import RunConfig
from distbench.predict.accuracy import measured_step
from distbench.predict.core import case_of
from distbench.predict.simulated import sim_spec
from distbench.simulator import Replay, SimSpec, simulate
from distbench.store.result import RunResult


def measured_compute(run_dir: Path, workers: int) -> tuple[tuple[float, ...], ...]:
    """Every worker's data + forward + backward of each step, warm-up included."""
    per_worker = []
    for rank in range(workers):
        steps = []
        for line in (run_dir / f"rank{rank}.jsonl").read_text().splitlines():
            record = json.loads(line)
            if record.get("kind") == "step":
                phases = record["phases"]
                steps.append(phases["data"] + phases["forward"] + phases["backward"])
        per_worker.append(tuple(steps))
    return tuple(per_worker)


def first_pulls(row: RunResult) -> tuple[float, ...] | None:
    """When the server began each worker's first pull, after the first of them."""
    unit = (row.extra.get("ranks") or {}).get(str(row.workers)) or {}
    transfers = (unit.get("server") or {}).get("transfers") or []
    first: dict[int, float] = {}
    for t in sorted(transfers, key=lambda t: t["start"]):
        if t["direction"] == "pull":
            first.setdefault(int(t["worker"]), float(t["start"]))
    if len(first) != row.workers:
        return None
    start = min(first.values())
    return tuple(first[w] - start for w in range(row.workers))


def step_of(spec: SimSpec, replay: Replay | None = None) -> float:
    return simulate(replace(spec, replay=replay)).step_time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("db")
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    rows = stored_async_runs(args.db, "async_replay")
    if rows is None:
        return 2
    print(
        f"{'model':12} {'N':>3} {'measured':>9} {'drawn':>16} {'own compute':>16}"
        f" {'+ own starts':>16}   (ms, error)"
    )
    for row in rows:
        pid = (row.extra.get("compute") or {}).get("profile_id")
        cfg = RunConfig.from_dict(row.config)
        starts = first_pulls(row)
        if pid is None or cfg.servers != "central" or starts is None or not row.run_dir:
            continue
        case = case_of(cfg)
        measured = measured_step(case, row)
        if measured is None:
            continue
        spec = sim_spec(case, replayed(args.db, int(pid), cfg), case.steps, warmup=case.warmup)[0]
        compute = measured_compute(Path(row.run_dir), cfg.workers)
        cells = [
            fmean(step_of(replace(spec, seed=seed)) for seed in range(args.seeds)),
            step_of(spec, Replay(compute, (0.0,) * cfg.workers)),
            step_of(spec, Replay(compute, starts)),
        ]
        print(
            f"{cfg.model.split(':')[-1][:12]:12} {cfg.workers:3} {measured * 1e3:9.1f}"
            + "".join(f" {c * 1e3:8.1f} {c / measured - 1:+6.1%}" for c in cells)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
