"""``distbench reproduce thesis``: the parameter-server thesis' experiments, reproduced on
emulated hosts (``distbench.workflows.thesis``); parsing and printing only."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console

from distbench.cli.common import add_db_option, add_json_option, int_list, str_list
from distbench.cli.run import ProgressView
from distbench.workflows.thesis import (
    MODES,
    SERVERS,
    THESIS_NETWORKS,
    ThesisPoint,
    reproduce_thesis,
    reused_points,
    thesis_configs,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "reproduce",
        help="reproduce a published experiment (the parameter-server thesis)",
        description="Run the parameter-server thesis' experiments (its chapter 6) on "
        "emulated hosts behind 1 Gbit/s links, compute emulated with the thesis' measured "
        "gradient times, and print each measured speedup beside the thesis' estimate. "
        "Needs root (emulated network). See docs/thesis.md.",
    )
    parser.add_argument("experiment", choices=["thesis"], help="the experiment (thesis)")
    parser.add_argument(
        "--models",
        type=str_list,
        default=list(THESIS_NETWORKS),
        metavar="M[,M...]",
        help=f"networks ({', '.join(THESIS_NETWORKS)}; all)",
    )
    parser.add_argument(
        "--workers",
        type=int_list,
        default=list(range(1, 9)),
        metavar="N[,N...]",
        help="worker counts (1..8; VGG16E stops at 4 as in the thesis)",
    )
    parser.add_argument(
        "--modes",
        type=str_list,
        default=list(MODES),
        metavar="MODE[,...]",
        help=f"{', '.join(MODES)} (all)",
    )
    parser.add_argument(
        "--servers",
        type=str_list,
        default=list(SERVERS),
        metavar="S[,...]",
        help="central, sharded (both)",
    )
    parser.add_argument("--steps", type=int, default=6, metavar="K", help="measured steps (6)")
    parser.add_argument(
        "--reuse", action="store_true", help="use the stored runs instead of running them"
    )
    parser.add_argument(
        "--out", metavar="DIR", help="also draw the thesis' figures (PNG and SVG) into DIR"
    )
    add_db_option(parser)
    add_json_option(parser)
    parser.set_defaults(handler=reproduce_command)


def reproduce_command(args: argparse.Namespace) -> int:
    configs = thesis_configs(args.models, args.workers, args.modes, args.servers, args.steps)
    if args.reuse:
        points = reused_points(args.db, configs)
    else:
        view = ProgressView(Console(stderr=True))
        try:
            points = reproduce_thesis(args.db, configs, view)
        finally:
            view.progress.stop()
    if args.out:
        from distbench.report.figures import save_figure, thesis_figures

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for figure in thesis_figures(points):
            save_figure(figure, out)
    if args.json:
        sys.stdout.write(json.dumps([p.to_dict() for p in points]) + "\n")
    else:
        print("\n".join(point_lines(points)))
    return 0 if all(p.status == "ok" for p in points) else 1


def point_lines(points: list[ThesisPoint]) -> list[str]:
    lines = [f"{'model':<11} {'mode':<10} {'server':<8} {'N':>2} {'measured':>9} {'thesis':>7}"]
    for p in sorted(points, key=lambda p: (p.model, p.mode, p.server, p.workers)):
        measured = f"{p.measured:.2f}" if p.measured is not None else p.status
        lines.append(
            f"{p.model:<11} {p.mode:<10} {p.server:<8} {p.workers:>2} {measured:>9} "
            f"{p.thesis_estimate:>7.2f}"
        )
    lines.append(
        "measured: speedup over the emulated sequential run (compute = the thesis' t_grad, "
        "1 Gbit/s per host); thesis: its estimate from table 6.1 (D = 128)"
    )
    return lines
