"""``distbench simulate``: a workload's step, speedup and bottleneck at 1..thousands of
workers, from its stored profile, by the discrete-event simulator (docs/simulator.md).

Parsing and printing only: the work is ``distbench.workflows.simulate.simulate_workload``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json

from distbench.cli.common import add_db_option, add_json_option, int_list
from distbench.predict.core import SERVER_ALIASES, SERVERS, canonical_server
from distbench.predict.simulated import DEFAULT_STEPS
from distbench.simulator import SPLIT
from distbench.workflows.simulate import (
    DEFAULT_MIN_GAIN,
    SimRow,
    SimulateReport,
    SimulateRequest,
    simulate_workload,
)

DEFAULT_WORKERS = "1,2,4,8,16,32,64,128,256,512,1024"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="simulate a workload on 1..thousands of workers from its profile",
        description="Simulate every (strategy, N) of one workload with the discrete-event "
        "model: the time per step, throughput, speedup over one worker, efficiency, the "
        "step's split (compute / exposed communication / waiting / server) and its "
        "bottleneck, then the best configuration and where each strategy stops paying. "
        "Compute comes from the workload's stored profile (`distbench profile`) or "
        "--t-grad; every worker is its own host behind --network.",
    )
    what = parser.add_argument_group("workload")
    what.add_argument("--model", required=True, metavar="M", help="model of the stored profile")
    what.add_argument("--dataset", default="synthetic", help="dataset of the profile (synthetic)")
    what.add_argument("--batch-size", type=int, default=32, metavar="B", help="batch (32)")
    what.add_argument(
        "--profile",
        dest="profile_id",
        type=int,
        metavar="ID",
        help="the stored profile to use (default: the newest of the workload measured "
        "behind --network, else the newest)",
    )
    how = parser.add_argument_group("what to simulate")
    how.add_argument(
        "--strategy",
        required=True,
        type=lambda text: [s.strip() for s in text.split(",") if s.strip()],
        metavar="S[,S...]",
        help="strategies: sequential, ddp, ps-sync-join, ps-sync-split, ps-async, "
        "pipeline-gpipe, pipeline-1f1b, model-parallel",
    )
    how.add_argument(
        "--workers",
        type=int_list,
        default=int_list(DEFAULT_WORKERS),
        metavar="N[,N...]",
        help=f"worker counts ({DEFAULT_WORKERS})",
    )
    how.add_argument(
        "--servers",
        choices=[*SERVERS, *SERVER_ALIASES],
        default="central",
        help="ps-*: one central server or sharded over the workers (central)",
    )
    how.add_argument(
        "--ps-semaphore",
        action="store_true",
        help="ps-*: the server admits one pull and one push at a time",
    )
    how.add_argument(
        "--microbatches", type=int, default=4, metavar="M", help="pipeline-*: micro-batches (4)"
    )
    how.add_argument(
        "--network",
        metavar="SPEC",
        help="every host's link, as run's --network (e.g. bandwidth=1gbit,delay=50us): "
        "the profile's measured rate when it was taken behind this spec, else the spec's "
        "line rate (default: the profile's own links)",
    )
    how.add_argument(
        "--steps",
        type=int,
        default=DEFAULT_STEPS,
        metavar="K",
        help=f"simulated steps per configuration, after 2 warm-up steps ({DEFAULT_STEPS})",
    )
    how.add_argument("--seed", type=int, default=0, help="seed of the compute draws (0)")
    how.add_argument(
        "--link-unfairness",
        type=float,
        default=0.0,
        metavar="U",
        help="what-if: weight each transfer's share of a link by a draw from [1-U, 1+U], as "
        "TCP flows share unequally (0: equal shares; nothing measures U, docs/simulator.md)",
    )
    given = parser.add_argument_group("without a profile")
    given.add_argument(
        "--t-grad", type=float, metavar="S", help="forward + backward seconds of one batch"
    )
    given.add_argument(
        "--t-comm", type=float, metavar="S", help="seconds to move the weights once (no --network)"
    )
    given.add_argument("--weight-bytes", type=float, metavar="B", help="bytes of the weights")
    out = parser.add_argument_group("output")
    out.add_argument(
        "--max-workers",
        type=int,
        metavar="K",
        help="most workers the recommendation may use (default: the largest --workers)",
    )
    out.add_argument(
        "--min-gain",
        type=float,
        default=DEFAULT_MIN_GAIN,
        metavar="F",
        help="a strategy stops paying where each added worker adds less than this share of "
        f"an ideal worker's throughput ({DEFAULT_MIN_GAIN})",
    )
    out.add_argument(
        "--output", choices=("text", "csv"), default="text", help="text table or CSV (text)"
    )
    add_db_option(parser)
    add_json_option(parser)
    parser.set_defaults(handler=run_simulate)


def request_of(args: argparse.Namespace) -> SimulateRequest:
    return SimulateRequest(
        model=args.model,
        strategies=tuple(args.strategy),
        workers=tuple(args.workers),
        dataset=args.dataset,
        batch_size=args.batch_size,
        db=args.db,
        servers=canonical_server(args.servers),
        semaphore=args.ps_semaphore,
        microbatches=args.microbatches,
        network=args.network,
        profile_id=args.profile_id,
        t_grad=args.t_grad,
        t_comm=args.t_comm,
        weight_bytes=args.weight_bytes,
        steps=args.steps,
        seed=args.seed,
        min_gain=args.min_gain,
        max_workers=args.max_workers,
        link_unfairness=args.link_unfairness,
    )


def run_simulate(args: argparse.Namespace) -> int:
    report = simulate_workload(request_of(args))
    if args.json:
        print(json.dumps(report.to_dict()))
    elif args.output == "csv":
        print(render_csv(report.rows), end="")
    else:
        print(render_text(report))
    return 0


CSV_FIELDS = (
    "strategy",
    "servers",
    "workers",
    "step_time_median",
    "throughput_median",
    "speedup",
    "efficiency",
    "compute",
    "comm",
    "wait",
    "server",
    "bottleneck",
)


def render_csv(rows: list[SimRow]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_FIELDS)
    for row in rows:
        writer.writerow(
            [
                row.strategy,
                row.servers or "",
                row.workers,
                f"{row.step_time_median:.6g}",
                f"{row.throughput_median:.6g}",
                f"{row.speedup:.4g}",
                f"{row.efficiency:.4g}",
                *(f"{row.split[part]:.6g}" for part in SPLIT),
                row.bottleneck,
            ]
        )
    return buffer.getvalue()


def render_text(report: SimulateReport) -> str:
    lines = [
        f"{report.model} (batch {report.batch_size}, {report.dataset})"
        + (f" behind {report.network}" if report.network else ""),
        f"inputs: {report.inputs}",
        "",
        f"{'strategy':<15} {'N':>5} {'step ms':>10} {'samples/s':>10} {'speedup':>8} "
        f"{'eff':>5} {'compute':>8} {'comm':>8} {'wait':>8} {'server':>8}  bottleneck",
    ]
    for row in report.rows:
        name = row.strategy + (f" ({row.servers[0]})" if row.servers else "")
        split = " ".join(f"{row.split[part] * 1e3:8.1f}" for part in SPLIT)
        lines.append(
            f"{name:<15} {row.workers:>5} {row.step_time_median * 1e3:10.1f} "
            f"{row.throughput_median:10.1f} {row.speedup:8.2f} {row.efficiency:5.2f} "
            f"{split}  {row.bottleneck}"
        )
    lines += ["", "split: ms of a step, mean over workers; speedup: over one worker alone"]
    rec = report.recommendation
    lines += [
        "",
        f"recommendation (at most {rec.max_workers} workers): {rec.strategy} on "
        f"{rec.workers} workers, {rec.throughput:.1f} samples/s, speedup {rec.speedup:.2f}",
    ]
    for name, n in rec.knees.items():
        if n is None:
            lines.append(f"  {name}: one worker count simulated, no knee to find")
            continue
        where = rec.bottleneck_at_knee.get(name, "")
        lines.append(
            f"  {name}: pays up to {n} workers (each added worker adds at least "
            f"{rec.min_gain:g} of an ideal one); there the step waits on {where}"
        )
    lines.append(f"  confidence: {rec.confidence}")
    return "\n".join(lines)
