"""Emulated compute's waits: how far off the asked time they end, and what CPU they cost.

    python benchmarks/emulated_wait_error.py [--repeats 20]

For waits of 1 ms to 0.5 s (the range of a step's phases) it prints the median relative
error of one wait, the latest any wait ended (relative to its length), the time-weighted
error, and the CPU the waiting
process used per second of waiting (a spin-only wait would print 1.0). The goal is an
error under 1 % at no CPU cost.
"""

from __future__ import annotations

import argparse
import time

from distbench.compute.wait import WaitLog

DURATIONS = (0.001, 0.005, 0.02, 0.1, 0.5)


def measure(seconds: float, repeats: int) -> tuple[dict[str, float], float]:
    log = WaitLog()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(repeats):
        log.wait(seconds)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return log.summary(), cpu / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    print(f"{'wait':>8} {'median err':>11} {'latest':>10} {'weighted':>9} {'CPU/s':>6}")
    for seconds in DURATIONS:
        summary, cpu_share = measure(seconds, args.repeats)
        print(
            f"{seconds * 1000:>6.0f}ms {summary['error_median'] * 100:>10.3f}% "
            f"{summary['late_max_s'] / seconds * 100:>9.3f}% "
            f"{summary['error_weighted'] * 100:>8.3f}% {cpu_share:>6.3f}"
        )


if __name__ == "__main__":
    main()
