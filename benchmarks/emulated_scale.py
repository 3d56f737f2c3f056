"""Emulated clusters on this machine: 16 (or 32) workers with emulated compute behind an
emulated network, and their communication against the link's physics.

    sudo python benchmarks/emulated_scale.py                        # resnet18, 16 workers, 1gbit
    sudo python benchmarks/emulated_scale.py --workers 32 --model lenet5
    sudo python benchmarks/emulated_scale.py --strategies ddp --rate 100mbit --compute 0.5

Every worker (and a central server) is its own emulated host, each behind its own link of
``--rate`` in both directions. ``--compute T`` seconds of gradient time per batch, so no
profile is needed. For each run it prints the wall time of the whole run, the step time,
the communication per step (ddp: comm + wait; ps: pull + push + wait), what the link's
physics says it must at least take, their ratio, the peak memory of a rank, the waits'
error and the CPU the run's processes used (``cpu_saturated``: the emulation is no longer
faithful). Physics: a ring all-reduce sends ``2(N-1)/N`` of the gradient bytes over every
host's link; a central server's link carries every worker's weights out (pulls) and every
worker's gradients in (pushes), ``N x bytes`` each way, the two directions at once.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from distbench.config import RunConfig
from distbench.harness.session import run_benchmarks
from distbench.netem.spec import parse_network
from distbench.strategies.common import state_sizes

COMM_PHASES = {"ddp": ("comm", "wait"), "ps": ("pull", "push", "wait")}


def physics_seconds(strategy: str, workers: int, cfg: RunConfig, rate_bps: float) -> float:
    weight_bytes, grad_bytes, _ = state_sizes(cfg)
    if strategy == "ddp":
        return 2 * (workers - 1) / workers * grad_bytes * 8 / rate_bps
    return workers * weight_bytes * 8 / rate_bps  # per direction at the central server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--rate", default="1gbit")
    parser.add_argument("--compute", default="0.2", help="seconds of gradient time per batch")
    parser.add_argument("--strategies", default="ddp,ps-sync-join")
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    network = f"bandwidth={args.rate}"
    rate = float(parse_network(network).rate_bit_s or 0)
    db = Path(tempfile.mkdtemp(prefix="distbench-scale-")) / "scale.db"
    print(f"{args.model}, {args.workers} workers, {network}, --compute {args.compute}")
    print(
        "strategy        wall s  step s  comm s  physics s  comm/phys  RSS MiB  wait err  CPU cores"
    )
    for strategy in args.strategies.split(","):
        cfg = RunConfig(
            model=args.model,
            strategy=strategy,
            workers=args.workers,
            compute=args.compute,
            network=network,
            steps=args.steps,
            warmup=2,
            timeout=1800,
        )
        started = time.monotonic()
        row = run_benchmarks([cfg], db)[0]
        wall = time.monotonic() - started
        if not row.ok:
            print(f"{strategy:<15} failed: {row.error}")
            continue
        kind = "ddp" if strategy == "ddp" else "ps"
        comm = sum(row.breakdown.get(p, 0.0) for p in COMM_PHASES[kind])
        physics = physics_seconds(kind, args.workers, cfg, rate)
        report = row.extra.get("compute", {})
        print(
            f"{strategy:<15} {wall:>6.0f} {row.step_time_median:>7.3f} {comm:>7.3f} "
            f"{physics:>10.3f} {comm / physics:>10.2f} {(row.peak_rss_bytes or 0) / 2**20:>8.0f} "
            f"{report.get('wait_error', 0) * 100:>8.2f}% {report.get('cpu_cores', 0):>9.2f}"
            + ("  cpu_saturated" if report.get("cpu_saturated") else "")
        )


if __name__ == "__main__":
    main()
