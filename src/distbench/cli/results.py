"""``distbench results``: show stored runs as a table, CSV or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from distbench.analysis.changes import compare_run_sets, load_run_set, regressions
from distbench.cli.common import add_db_option, add_json_option, add_wide_option
from distbench.cli.settings import percent_argument
from distbench.cli.tables import changes_csv, print_changes, print_table
from distbench.errors import UserError
from distbench.store import open_store
from distbench.store.export import to_csv, to_json
from distbench.store.mllog import to_mllog
from distbench.store.result import RunResult


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
    add_wide_option(parser)
    parser.add_argument(
        "--format",
        choices=("table", "csv", "json", "mllog"),
        default="table",
        help="output format (table); mllog: MLPerf-style ':::MLLOG' lines per run "
        "(run_start, eval_accuracy, run_stop with its status)",
    )
    parser.add_argument(
        "--export",
        nargs=2,
        metavar=("TOOL", "DIR"),
        help="write the selected runs for an experiment tracker instead of printing them; "
        "TOOL: tensorboard (one TensorBoard run per stored run under DIR: configuration as "
        "HParams, figures, per-step, per-round, accuracy and resource curves; open with "
        "`tensorboard --logdir DIR`)",
    )
    compare = parser.add_argument_group("comparing two sets of runs")
    compare.add_argument(
        "--compare",
        nargs=2,
        metavar=("A", "B"),
        help="per configuration, B's throughput over A's with a bootstrap interval over "
        "rounds: faster / slower / no measurable difference. A and B are each a results "
        "database file or KEY=VALUE over --db (commit=PREFIX, host=NAME, torch=VERSION, "
        "any stored environment key)",
    )
    compare.add_argument(
        "--fail-above",
        type=percent_argument,
        metavar="P%",
        help="with --compare: exit 1 when a configuration is measurably slower in B by "
        "more than P %% (for a CI job)",
    )
    add_db_option(parser)
    add_json_option(parser)  # the same as --format json, as on every other command
    parser.set_defaults(handler=results_command)


def results_command(args: argparse.Namespace) -> int:
    if args.fail_above is not None and not args.compare:
        raise UserError("--fail-above needs --compare A B")
    if args.compare:
        return compare_command(args)
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
    if args.export:
        return export_command(rows, *args.export)
    if args.json or args.format == "json":
        sys.stdout.write(to_json(rows) + "\n")
    elif args.format == "csv":
        sys.stdout.write(to_csv(rows))
    elif args.format == "mllog":
        sys.stdout.write(to_mllog(rows))
    elif rows:
        print_table(rows, wide=args.wide)
    else:
        sys.stderr.write("no runs match the filters\n")
    return 0


#: Experiment trackers ``--export`` writes for, each through the tracker's own library.
TRACKERS = ("tensorboard",)


def export_command(rows: list[RunResult], tool: str, out_dir: str) -> int:
    if tool not in TRACKERS:
        raise UserError(f"--export: unknown tracker '{tool}' (known: {', '.join(TRACKERS)})")
    if not rows:
        raise UserError("--export: no runs match the filters")
    from distbench.store.tensorboard import export_tensorboard

    written = export_tensorboard(rows, out_dir)
    sys.stderr.write(
        f"wrote {len(written)} run(s) for TensorBoard under {out_dir}; "
        f"open them with: tensorboard --logdir {out_dir}\n"
    )
    return 0


def compare_command(args: argparse.Namespace) -> int:
    if args.fail_above is not None and not 0 < args.fail_above < 100:
        raise UserError(f"--fail-above must be a percentage in (0, 100), got {args.fail_above}")
    a, b = (load_run_set(selector, args.db) for selector in args.compare)
    changes = compare_run_sets(a, b)
    worse = regressions(changes, args.fail_above) if args.fail_above is not None else []
    if args.json or args.format == "json":
        sys.stdout.write(json.dumps([c.to_dict() for c in changes]) + "\n")
    elif args.format == "csv":
        sys.stdout.write(changes_csv(changes))
    else:
        print_changes(changes, *args.compare)
    for change in worse:
        sys.stderr.write(
            f"regression: {change.config} is {1 - change.ratio:.1%} slower in B "
            f"(more than --fail-above {args.fail_above:g} %)\n"
        )
    return 1 if worse else 0
