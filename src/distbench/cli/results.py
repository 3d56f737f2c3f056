"""``distbench results``: show stored runs as a table, CSV or JSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from distbench.cli.common import add_db_option, add_json_option
from distbench.cli.tables import print_table
from distbench.errors import UserError
from distbench.store import open_store
from distbench.store.export import to_csv, to_json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "results",
        help="show stored results",
        description="Show stored runs with speedup and efficiency.",
    )
    parser.add_argument("--model", help="only this model")
    parser.add_argument("--dataset", help="only this dataset")
    parser.add_argument("--strategy", help="only this strategy")
    parser.add_argument("--workers", type=int, help="only this worker count")
    parser.add_argument("--status", choices=("ok", "failed"), help="only ok or failed runs")
    parser.add_argument("--last", type=int, metavar="K", help="only the K most recent runs")
    parser.add_argument(
        "--format", choices=("table", "csv", "json"), default="table", help="output format (table)"
    )
    add_db_option(parser)
    add_json_option(parser)  # the same as --format json, as on every other command
    parser.set_defaults(handler=results_command)


def results_command(args: argparse.Namespace) -> int:
    if not Path(args.db).is_file():
        raise UserError(f"no results database at {args.db} (run `distbench run` first)")
    store = open_store(args.db)
    try:
        rows = store.with_scaling(
            store.query(
                model=args.model,
                strategy=args.strategy,
                workers=args.workers,
                status=args.status,
                dataset=args.dataset,
            )
        )
    finally:
        store.close()
    if args.last is not None:
        rows = rows[-args.last :]
    if args.json or args.format == "json":
        sys.stdout.write(to_json(rows) + "\n")
    elif args.format == "csv":
        sys.stdout.write(to_csv(rows))
    elif rows:
        print_table(rows)
    else:
        sys.stderr.write("no runs match the filters\n")
    return 0
