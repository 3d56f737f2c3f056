"""``distbench doctor``: this machine's noise floor, so a user knows what it can resolve."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console

from distbench.cli.common import add_json_option
from distbench.cli.run import ProgressView
from distbench.harness.noise import BUSY_CORES
from distbench.workflows.doctor import NOISE_WORKLOAD, NoiseFloor, measure_noise_floor


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="measure this machine's noise floor (round-to-round spread)",
        description="Run a fixed small workload (lenet5, sequential, one thread) in "
        "several rounds and print the round-to-round spread, the CPU other processes "
        "took meanwhile and the smallest difference this machine can resolve. Nothing "
        "is stored.",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=7,
        metavar="R",
        help="rounds of the fixed workload (7; at least 3)",
    )
    add_json_option(parser)
    parser.set_defaults(handler=doctor_command)


def doctor_command(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    view = ProgressView(console)
    try:
        floor = measure_noise_floor(args.rounds, view)
    finally:
        view.progress.stop()
    if args.json:
        sys.stdout.write(json.dumps(floor.to_dict()) + "\n")
    else:
        print("\n".join(describe(floor)))
    return 0


def describe(floor: NoiseFloor) -> list[str]:
    workload = ", ".join(f"{k} {v}" for k, v in NOISE_WORKLOAD.items())
    peak = max(floor.outside_cores, default=0.0)
    lines = [
        f"noise workload: {workload}; {floor.rounds} rounds",
        f"throughput: median {floor.median:.1f} samples/s, interval {floor.low:.1f}-"
        f"{floor.high:.1f} ({floor.level * 100:.0f} %), rounds spread "
        f"{floor.spread * 100:.1f} % (max - min over median)",
        f"outside load: up to {peak:.2f} cores; {floor.busy_rounds} of {floor.rounds} rounds "
        f"ran beside other load (more than {BUSY_CORES:g} cores)",
        f"noise floor: with {floor.rounds} rounds per configuration a difference smaller than "
        f"about {floor.resolvable * 100:.1f} % is no measurable difference on this machine",
    ]
    if floor.busy_rounds:
        lines.append("other processes were busy: run again on a quieter machine for a floor")
    return lines
