"""``distbench estimate``: predicted speedup on 1..N workers from one-worker timings.

Parsing only: the numbers come from ``distbench.predict.estimate`` and the figure from
``distbench.report.estimate_plot``. Flags follow the 004 thesis' ``estimate.py``
(``--t-grad``, ``--t-comm``, ``--type``, ``--server``, ``--workers``, ``--batches``,
``--output``) plus the all-reduce and pipeline inputs; ``docs/model.md`` lists them all.
"""

from __future__ import annotations

import argparse
import json
from importlib import import_module
from typing import Any, cast

from distbench.cli.common import add_db_option, add_json_option, float_list
from distbench.errors import UserError
from distbench.predict.core import SERVER_ALIASES, SERVERS, canonical_server
from distbench.predict.estimate import (
    DEFAULT_MIN_GAIN,
    KINDS,
    EstimateInputs,
    Kind,
    estimate_report,
    render_csv,
    render_text,
    report_as_dict,
)
from distbench.predict.formulas import DDP_DEFAULT_BUCKET_BYTES

PROFILE_FIELDS = ("t_grad", "t_comm", "t_grad_split", "grad_bytes", "t_backward")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "estimate",
        help="predict speedup on 1..N workers from one-worker timings",
        description="Estimate training time and speedup on 1..N workers (004 thesis model,"
        " ring all-reduce, pipeline bubble). Times are seconds.",
    )
    _add_timing_options(parser)
    _add_strategy_options(parser)
    _add_output_options(parser)
    parser.set_defaults(handler=run_estimate)


def _add_timing_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("one-worker timings")
    group.add_argument(
        "--t-grad", type=float, metavar="S", help="gradient time of one full batch on one worker"
    )
    group.add_argument(
        "--t-comm",
        type=float,
        metavar="S",
        help="time to transfer the full weights once worker <-> server",
    )
    group.add_argument(
        "--t-grad-split",
        type=float_list,
        metavar="S[,S...]",
        help="sync-split: gradient time of a 1/N batch for N = 1, 2, ...;"
        " without it t_grad/N is used (labelled fallback)",
    )
    group.add_argument("--model", metavar="M", help="take timings from the stored profile of M")
    add_db_option(parser)


def _add_strategy_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("strategy")
    group.add_argument(
        "--type",
        dest="kind",
        choices=KINDS,
        default="sync-join",
        help="training strategy (default: sync-join)",
    )
    group.add_argument(
        "--server",
        "--servers",
        dest="server",
        choices=[*SERVERS, *SERVER_ALIASES],
        default="central",
        help="parameter-server type for async/sync-*: central (one server process) or "
        "sharded (weights sharded over the workers; 'distributed', the thesis' word, is "
        "an alias) (default: central)",
    )
    group.add_argument(
        "--workers", type=int, default=8, metavar="N", help="estimate for 1..N workers (default: 8)"
    )
    group.add_argument(
        "--batches", type=int, default=128, metavar="D", help="batches to train (default: 128)"
    )
    group.add_argument(
        "--whole-iterations",
        action="store_true",
        help="sync-join/ddp: count ceil(D/N) iterations instead of D/N",
    )
    group.add_argument("--alpha", type=float, metavar="S", help="ddp: per-message latency")
    group.add_argument("--beta", type=float, metavar="B/S", help="ddp: bandwidth, bytes/s")
    group.add_argument("--grad-bytes", type=float, metavar="B", help="ddp: gradient bytes")
    group.add_argument(
        "--t-backward",
        type=float,
        metavar="S",
        help="ddp: backward part of t_grad (default: 2/3 of t_grad)",
    )
    group.add_argument(
        "--overlap",
        type=float,
        metavar="F",
        help="ddp: fraction of backward hiding all-reduce (default: after the first bucket fills)",
    )
    group.add_argument(
        "--bucket-bytes",
        type=float,
        default=DDP_DEFAULT_BUCKET_BYTES,
        metavar="B",
        help="ddp: gradient bucket size (default: 25 MiB)",
    )
    group.add_argument(
        "--stage-times",
        type=float_list,
        metavar="S[,S...]",
        help="pipeline: fwd+bwd seconds per microbatch for each stage",
    )
    group.add_argument(
        "--microbatches", type=int, metavar="M", help="pipeline: microbatches per batch"
    )


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output")
    group.add_argument(
        "--output",
        choices=("single", "csv", "plot"),
        default="single",
        help="single: table + bounds + recommendation; csv: one line per N;"
        " plot: PNG (default: single)",
    )
    group.add_argument(
        "--out",
        default="speedup.png",
        metavar="PATH",
        help="PNG path for --output plot (default: speedup.png)",
    )
    group.add_argument(
        "--budget",
        type=int,
        metavar="N",
        help="most workers the recommendation may use (default: --workers)",
    )
    group.add_argument(
        "--min-gain",
        type=float,
        default=DEFAULT_MIN_GAIN,
        metavar="F",
        help="adding a worker 'stops paying' when it adds less than this share of one "
        "worker's throughput: S(N) - S(N-1) < F (default: 0.1)",
    )
    add_json_option(parser)


def _profile_values(db: str, model: str) -> dict[str, Any]:
    """Timings from the stored profile, once ``distbench.profiling.profiles`` exists."""
    try:
        lookup = import_module("distbench.profiling.profiles")
    except ModuleNotFoundError as exc:
        if exc.name not in ("distbench.profiling", "distbench.profiling.profiles"):
            raise
        raise UserError("no stored profiles yet: pass --t-grad and --t-comm") from None
    profile = lookup.load_profile(db, model)
    if isinstance(profile, dict):
        return {k: profile.get(k) for k in PROFILE_FIELDS}
    return {k: getattr(profile, k, None) for k in PROFILE_FIELDS}


def _inputs(args: argparse.Namespace) -> EstimateInputs:
    given = {k: getattr(args, k) for k in PROFILE_FIELDS}
    if args.model:
        stored = _profile_values(args.db, args.model)
        given = {k: given[k] if given[k] is not None else stored.get(k) for k in PROFILE_FIELDS}
    if args.kind in ("async", "sync-join", "sync-split") and (
        given["t_grad"] is None or given["t_comm"] is None
    ):
        raise UserError("--t-grad and --t-comm are required (or --model with a stored profile)")
    if args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    split = given["t_grad_split"]
    return EstimateInputs(
        kind=cast(Kind, args.kind),
        server=canonical_server(args.server),
        t_grad=given["t_grad"],
        t_comm=given["t_comm"],
        workers=tuple(range(1, args.workers + 1)),
        batches=args.batches,
        t_grad_split=None if split is None else tuple(split),
        alpha=args.alpha,
        beta=args.beta,
        grad_bytes=given["grad_bytes"],
        t_backward=given["t_backward"],
        overlap=args.overlap,
        bucket_bytes=args.bucket_bytes,
        stage_times=None if args.stage_times is None else tuple(args.stage_times),
        microbatches=args.microbatches,
        rounding="ceil" if args.whole_iterations else "exact",
    )


def run_estimate(args: argparse.Namespace) -> int:
    report = estimate_report(_inputs(args), args.budget, args.min_gain)
    plot_path = None
    if args.output == "plot":
        from distbench.report.estimate_plot import plot_speedup  # matplotlib only when asked

        title = f"Estimated speedup, D={report.inputs.batches}"
        plot_path = str(plot_speedup(report.compared, args.out, title))
    if args.json:
        print(json.dumps({**report_as_dict(report), "plot": plot_path}, indent=2))
    elif args.output == "csv":
        print(render_csv(report.rows), end="")
    elif args.output == "plot":
        print(plot_path)
    else:
        print(render_text(report), end="")
    return 0
