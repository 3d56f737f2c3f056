"""``distbench compare``: do PyTorch, TensorFlow and MXNet compute the same thing?

Parsing and printing only; the checks are :func:`distbench.frameworks.compare.compare_frameworks`.
Exit code 0 when every judged check passes, 1 when one fails (the line names the layer),
2 for bad input (an unknown model, an environment that is not installed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from distbench.cli.common import add_json_option, str_list
from distbench.frameworks.compare import CompareReport, Tolerances, compare_frameworks


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="check that frameworks compute the same (weights, loss, training)",
        description="The comparator of the source study, against PyTorch: (1) identical "
        "initial weights, (2) the same loss on the same batch, (3) weights still close "
        "after K SGD steps on the same batches. Each framework runs in its own environment "
        "(`distbench env install ...`).",
    )
    parser.add_argument("--model", required=True, help="zoo model (e.g. lenet5, resnet18)")
    parser.add_argument(
        "--frameworks",
        type=str_list,
        default=["torch", "tensorflow", "mxnet"],
        metavar="F[,F...]",
        help="torch plus tensorflow and/or mxnet (default: torch,tensorflow,mxnet)",
    )
    parser.add_argument("--batch-size", type=int, default=8, metavar="B", help="batch (8)")
    parser.add_argument("--steps", type=int, default=3, metavar="K", help="SGD steps (3)")
    parser.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (0.05)")
    parser.add_argument("--seed", type=int, default=0, help="weights and batches (0)")
    parser.add_argument("--num-classes", type=int, default=10, help="classes (10)")
    parser.add_argument("--input-size", type=int, metavar="PX", help="model default")
    parser.add_argument("--threads", type=int, metavar="T", help="threads per framework")
    parser.add_argument(
        "--timeout", type=float, default=900.0, metavar="SEC", help="limit per framework (900)"
    )
    parser.add_argument("--keep", metavar="DIR", help="keep the exchanged .npz files here")
    parser.add_argument("--verbose", action="store_true", help="print every array's deviation")
    add_json_option(parser)
    parser.set_defaults(handler=compare_command)


def compare_command(args: argparse.Namespace) -> int:
    console = Console(stderr=True, highlight=False)
    report = compare_frameworks(
        args.model,
        args.frameworks,
        batch_size=args.batch_size,
        steps=args.steps,
        lr=args.lr,
        seed=args.seed,
        num_classes=args.num_classes,
        input_size=args.input_size,
        tolerances=Tolerances(),
        timeout=args.timeout,
        workdir=Path(args.keep) if args.keep else None,
        threads=args.threads,
        progress=lambda line: console.print(line, markup=False),
    )
    if args.json:
        sys.stdout.write(json.dumps(report.to_dict(), default=str) + "\n")
    else:
        print_report(report, args.verbose)
    return 0 if report.passed else 1


def print_report(report: CompareReport, verbose: bool = False) -> None:
    out = Console(file=sys.stdout, width=160, highlight=False)
    shape = "x".join(str(d) for d in report.input_shape)
    out.print(
        f"compare {report.model} ({shape}, {report.num_classes} classes), batch "
        f"{report.batch_size}, {report.steps} SGD steps at lr {report.lr:g}, "
        f"seed {report.seed}; reference: {report.reference}",
        markup=False,
    )
    table = Table("framework", "check", "result", "largest deviation", "where", "tolerance")
    for result in report.results:
        for check in result.checks:
            status = ("pass" if check.passed else "FAIL") if check.judged else "info"
            table.add_row(
                result.framework,
                check.check,
                status,
                f"{check.max_deviation:.3g}",
                check.worst or "-",
                check.tolerance,
            )
    out.print(table)
    for result in report.results:
        versions = ", ".join(f"{k} {v}" for k, v in result.versions.items())
        out.print(
            f"{result.framework} ({versions}, {result.seconds:.1f} s): losses "
            f"{_fmt(result.losses)} vs torch {_fmt(report.reference_losses)}",
            markup=False,
        )
        for check in result.checks:
            if check.judged and not check.passed:
                out.print(check.summary(), markup=False)
            if verbose:
                for d in check.deviations:
                    out.print(
                        f"  {check.check[:24]:24s} {d.name:40s} {d.max_abs_diff:10.3g} "
                        f"<= {d.tolerance:.3g} {'ok' if d.passed else 'FAIL'} {d.note}",
                        markup=False,
                    )
    out.print("all checks pass" if report.passed else "some checks FAIL", markup=False)


def _fmt(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.6f}" for v in values) + "]"
