"""Wall time to simulate 100 steps at 1 024 and 4 096 workers, per strategy.

    python benchmarks/simulate.py [--workers 1024,4096] [--steps 100] [--only ddp,...]

Inputs are given numbers (ResNet-18-like: 1 s of compute drawn from five measured-like
steps, 45 MB of weights, 1 Gbit/s links), so the script needs no profile. Goal on a
2-core machine: 1 024 workers within 10 s, 4 096 within 60 s (docs/simulator.md).
Parameter servers and pipelines simulate every worker (stage) as its own process; the
ring all-reduce is one process for all ranks (exact: the ring is symmetric).
"""

from __future__ import annotations

import argparse
import time

from distbench.simulator import ComputeDraws, Links, Pipeline, RingAllReduce, SimSpec, simulate

RATE = 1e9 / 8 * 0.94  # bytes/s: a 1 Gbit/s link's sustained TCP rate
WEIGHTS = 45e6
DRAWS = ComputeDraws(1.0, 2 / 3, 0.01, (0.9, 0.95, 1.0, 1.05, 1.2))
CASES: dict[str, dict[str, object]] = {
    "ddp": {"strategy": "ddp", "ring": RingAllReduce(alpha=5e-5, beta=RATE)},
    "ps-sync-join central": {"strategy": "sync-join"},
    "ps-sync-join sharded": {"strategy": "sync-join", "servers": "sharded"},
    "ps-async central": {"strategy": "async", "server_update": 0.01},
    "ps-async sharded": {"strategy": "async", "servers": "sharded", "server_update": 0.01},
    "ps-sync-join semaphore": {"strategy": "sync-join", "semaphore": True},
    "pipeline-1f1b": {"strategy": "1f1b"},
}


def spec_for(name: str, workers: int, steps: int) -> SimSpec:
    given = dict(CASES[name])
    if given["strategy"] == "1f1b":
        given["pipeline"] = Pipeline((1.0 / workers,) * workers, 8, activation_bytes=1e6)
    return SimSpec(
        workers=workers,
        compute=DRAWS,
        links=Links(RATE, RATE, latency=5e-5, transfer_overhead=0.003),
        weight_bytes=WEIGHTS,
        samples_per_step=32,
        steps=steps,
        **given,  # type: ignore[arg-type]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1024,4096")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--only", help="comma-separated strategies of the table (default: all)")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(CASES)
    counts = [int(n) for n in args.workers.split(",")]
    print(f"{'strategy':<24}" + "".join(f"{f'x{n} wall s':>14}" for n in counts))
    for name in names:
        cells = []
        for n in counts:
            start = time.perf_counter()
            simulate(spec_for(name, n, args.steps))
            cells.append(f"{time.perf_counter() - start:14.2f}")
        print(f"{name:<24}" + "".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
