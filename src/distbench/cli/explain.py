"""``distbench explain RUN_A RUN_B``: why one run's step takes longer than the other's.

Parsing and printing only; the comparison is ``distbench.analysis.explain.explain_runs``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from distbench.analysis.explain import Delta, Explanation, explain_runs, explanation_as_dict
from distbench.analysis.explain import seconds as fmt_s
from distbench.cli.common import add_db_option, add_json_option
from distbench.errors import UserError
from distbench.store import open_store


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="explain the step-time difference between two runs",
        description="Top-down comparison of two stored runs: step time, compute vs. "
        "communication, the phase that accounts for most of the difference, and "
        "within it the operators (when both runs used --profile-ops).",
    )
    parser.add_argument("run_a", metavar="RUN_A", help="run id (or a unique suffix of it)")
    parser.add_argument("run_b", metavar="RUN_B", help="run id (or a unique suffix of it)")
    parser.add_argument(
        "--phase", metavar="P", help="drill into this phase instead of the one that differs most"
    )
    parser.add_argument(
        "--top",
        type=int,
        default=5,
        metavar="K",
        help="operators to list (default 5; the conclusion names 3)",
    )
    add_db_option(parser)
    add_json_option(parser)
    parser.set_defaults(handler=explain_command)


def explain_command(args: argparse.Namespace) -> int:
    if not Path(args.db).is_file():
        raise UserError(f"no results database at {args.db} (run `distbench run` first)")
    if args.top < 1:
        raise UserError(f"--top must be at least 1, got {args.top}")
    store = open_store(args.db)
    try:
        explanation = explain_runs(store, args.run_a, args.run_b, args.top, args.phase)
    finally:
        store.close()
    if args.json:
        sys.stdout.write(json.dumps(explanation_as_dict(explanation), indent=2) + "\n")
    else:
        print_explanation(explanation)
    return 0


def _delta_table(title: str, rows: list[Delta], first: str, share_of: str) -> Table:
    table = Table(title=title, title_justify="left")
    for name in (first, "A", "B", "B − A", f"share of {share_of}"):
        table.add_column(name, justify="left" if name == first else "right")
    for row in rows:
        share = "-" if row.share is None else f"{row.share * 100:.0f}%"
        mark = " *" if row.partial else ""
        table.add_row(
            row.name + mark, fmt_s(row.a_s), fmt_s(row.b_s), fmt_s(row.delta_s, signed=True), share
        )
    return table


def print_explanation(e: Explanation) -> None:
    console = Console(width=max(Console().width, 100))
    for name, side in (("A", e.a), ("B", e.b)):
        console.print(
            f"{name}  {side.run_id}  {side.label}: {fmt_s(side.step_time_s)} per "
            "step (mean of measured steps; synchronous: the mean over workers)"
        )
    if e.throughput_ratio is not None:
        interval = (
            f", interval over rounds {e.throughput_ratio_ci[0]:.2f}-{e.throughput_ratio_ci[1]:.2f}"
            if e.throughput_ratio_ci
            else ""
        )
        console.print(
            f"throughput B / A: {e.throughput_ratio:.2f}{interval}: {e.difference}",
            highlight=False,
        )
    console.print(_delta_table("1. compute vs. communication", e.groups, "part", "total"))
    console.print(_delta_table("2. phases (per-step means)", e.phases, "phase", "total"))
    if e.operators:
        console.print(
            _delta_table(
                f"3. operators in {e.operator_scope} (self time per profiled step)",
                e.operators,
                "operator",
                "operator Δ",
            )
        )
        if any(op.partial for op in e.operators):
            console.print("* in one run's top list only; counted as 0 in the other")
    elif e.operator_scope == "none" and not (e.a.profiled and e.b.profiled):
        console.print("3. operators: run both with --profile-ops to see operators")
    for note in e.notes:
        console.print(f"note: {note}")
    console.print(e.conclusion, style="bold")
    if e.accuracy_gap is not None:
        console.print(e.accuracy_gap.sentence(), style="bold", highlight=False)
