"""How fast a convoy breaks up: a stored asynchronous run's steps over its course, beside
the simulator's.

    python benchmarks/convoy_breakup.py STORE.db [--model M] [--block 5] [--seeds 10]

Asynchronous workers that start together pull and push together (a convoy) until
something spreads them out, and a spread-out loop runs faster: its transfers overlap less.
A run's mean step therefore depends on how soon its convoy breaks up. For every stored ok
ps-async run with a central server and emulated compute, this prints the workers' mean
step in blocks of ``--block`` steps, warm-up included, as measured (each worker's
``rank*.jsonl``), and as the simulator runs the same configuration from the profile the
run replayed (every worker starting together, the mean of ``--seeds`` simulations:
``simulator.worker_steps``). A simulated convoy that lasts longer than the measured one
shows as blocks above the measured ones that come down later.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from statistics import fmean

from async_seeds import (  # a sibling benchmark: run as python benchmarks/convoy_breakup.py
    replayable,
    stored_async_runs,
)
from distbench.predict.simulated import sim_spec
from distbench.simulator import worker_steps


def measured_worker_steps(run_dir: Path, workers: int) -> list[list[float]]:
    """Every worker's step times, warm-up included, from its records (rank k < N is
    worker k; the central server is rank N)."""
    per_worker = []
    for rank in range(workers):
        lines = (run_dir / f"rank{rank}.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines if line.strip()]
        per_worker.append([r["step_time"] for r in records if r.get("kind") == "step"])
    return per_worker


def block_means(per_worker: list[list[float]], block: int) -> list[float]:
    """The workers' mean step in each block of ``block`` steps (the steps every worker
    has)."""
    count = min(len(steps) for steps in per_worker)
    return [
        fmean(s for steps in per_worker for s in steps[start : min(start + block, count)])
        for start in range(0, count, block)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("db")
    parser.add_argument("--model", help="only runs whose model name contains this")
    parser.add_argument("--block", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    if args.block < 1 or args.seeds < 1:
        print("convoy_breakup: --block and --seeds must be at least 1", file=sys.stderr)
        return 2
    rows = stored_async_runs(args.db, "convoy_breakup")
    if rows is None:
        return 2
    print(
        f"model xN, the run's mean step as validate compares it; then the mean step of each"
        f" block of {args.block} steps (ms), warm-up included"
    )
    for row in rows:
        found = replayable(args.db, row)
        if found is None or not row.run_dir:
            continue
        cfg, case, measured, profile = found
        if cfg.servers != "central" or (args.model and args.model not in cfg.model):
            continue
        spec = sim_spec(case, profile, case.steps, warmup=case.warmup)[0]
        simulated = [worker_steps(replace(spec, seed=seed)) for seed in range(args.seeds)]
        sim_blocks = [
            fmean(b) for b in zip(*(block_means(s, args.block) for s in simulated), strict=True)
        ]
        real_blocks = block_means(measured_worker_steps(Path(row.run_dir), cfg.workers), args.block)
        name = f"{cfg.model.split(':')[-1][:12]} x{cfg.workers}, {measured * 1e3:.0f} ms"
        print(f"{name:26} measured  " + " ".join(f"{b * 1e3:6.0f}" for b in real_blocks))
        print(f"{'':26} simulated " + " ".join(f"{b * 1e3:6.0f}" for b in sim_blocks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
