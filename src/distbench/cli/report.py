"""``distbench report``: an HTML report with figures from the results store.

Parsing only; the work is ``distbench.report.html.build_report``.
"""

from __future__ import annotations

import argparse
import json
import sys

from distbench.cli.common import add_db_option, add_json_option, str_list

DEFAULT_OUT = "distbench-report"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write an HTML report with figures",
        description="Write DIR/report.html (self-contained, figures embedded) and every "
        "figure as PNG and SVG: per-step breakdown, throughput, speedup, memory, "
        "operators of profiled runs, resource timelines, and a written summary.",
    )
    parser.add_argument(
        "--out",
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"output directory, created if needed (default: ./{DEFAULT_OUT})",
    )
    parser.add_argument("--model", type=str_list, metavar="M[,M...]", help="only these models")
    parser.add_argument("--dataset", type=str_list, metavar="D[,D...]", help="only these datasets")
    parser.add_argument(
        "--strategy", type=str_list, metavar="S[,S...]", help="only these strategies"
    )
    add_db_option(parser)
    add_json_option(parser)
    parser.set_defaults(handler=report_command)


def report_command(args: argparse.Namespace) -> int:
    # Imported here: matplotlib takes a second to import, and every `distbench` call
    # builds all subcommands' parsers.
    from distbench.report.html import Selection, build_report
    from distbench.workflows.validate import predicted_speedups

    selection = Selection(models=args.model, datasets=args.dataset, strategies=args.strategy)
    result = build_report(
        args.db, args.out, selection, predict=lambda rows: predicted_speedups(args.db, rows)
    )
    if args.json:
        sys.stdout.write(
            json.dumps(
                {
                    "html": str(result.html),
                    "runs": result.runs,
                    "failed": result.failed,
                    "files": [str(p) for p in result.files],
                },
                indent=2,
            )
            + "\n"
        )
    else:
        sys.stdout.write(
            f"{result.html} ({result.runs} runs, {result.failed} failed, "
            f"{len(result.files) // 2} figures as PNG and SVG in {args.out})\n"
        )
    return 0
