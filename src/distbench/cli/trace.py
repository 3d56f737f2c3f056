"""``distbench trace RUN``: one Chrome-trace / Perfetto timeline of every rank of a run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from distbench.analysis.explain import resolve_run
from distbench.analysis.timeline import merged_trace
from distbench.cli.common import add_db_option
from distbench.errors import UserError
from distbench.harness.session import round_directory
from distbench.store import open_store


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "trace",
        help="write one timeline of every rank of a run (open it in Perfetto)",
        description="Write a Chrome trace of a run: every rank (and server) a process, its "
        "steps and their phases on one clock, and with --profile-ops the operators "
        "beside them. Open it at https://ui.perfetto.dev (Open trace file).",
    )
    parser.add_argument("run", metavar="RUN", help="a run id, or its last characters")
    parser.add_argument(
        "--round",
        type=int,
        metavar="K",
        help="which round of a run with rounds (default: the one the result's figures come from)",
    )
    parser.add_argument(
        "--out", metavar="FILE.json", help="where to write it (default: trace-RUN.json)"
    )
    add_db_option(parser)
    parser.set_defaults(handler=trace_command)


def trace_command(args: argparse.Namespace) -> int:
    store = open_store(args.db)
    try:
        row = resolve_run(store, args.run)
    finally:
        store.close()
    run_dir = round_directory(row, args.round)
    if not run_dir.is_dir():
        raise UserError(f"the run directory {run_dir} of run {row.run_id} is gone")
    try:
        trace = merged_trace(run_dir)
    except ValueError as exc:
        raise UserError(f"run {row.run_id}: {exc}") from exc
    out = Path(args.out or f"trace-{row.run_id}.json")
    out.write_text(json.dumps(trace), encoding="utf-8")
    ranks = len({e["pid"] for e in trace["traceEvents"]})
    sys.stderr.write(
        f"wrote {out}: {ranks} rank(s) of run {row.run_id} on one clock; open it at "
        "https://ui.perfetto.dev (Open trace file) or chrome://tracing\n"
    )
    return 0
