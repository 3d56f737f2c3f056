"""Entry point of the ``distbench`` command.

Each subcommand lives in its own module exposing ``register(subparsers)``, which adds a
parser and sets ``handler`` (a function ``(argparse.Namespace) -> int``). The registry below
is explicit so that ``distbench --help`` lists exactly what exists.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from importlib import import_module

from distbench import __version__
from distbench.cli.common import OneLineParser
from distbench.errors import RunFailed, UserError

# Subcommand name -> module under distbench.cli. Order is the order of --help.
COMMANDS: dict[str, str] = {
    "run": "distbench.cli.run",
    "results": "distbench.cli.results",
    "list": "distbench.cli.list_cmd",
    "estimate": "distbench.cli.estimate",
    "profile": "distbench.cli.profile",  # calibration profile
    "validate": "distbench.cli.validate",  # prediction beside measurement
    "simulate": "distbench.cli.simulate",  # discrete-event model, to thousands of workers
    "explain": "distbench.cli.explain",  # operators and phases
    "trace": "distbench.cli.trace",  # one timeline of every rank
    "report": "distbench.cli.report",  # HTML report
    "env": "distbench.cli.env",  # framework environments
    "compare": "distbench.cli.compare",  # cross-framework equivalence
    "doctor": "distbench.cli.doctor",  # this machine's noise floor
    "reproduce": "distbench.cli.reproduce",  # published experiments
}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="distbench",
        description=(
            "Benchmark, explain and predict distributed training of deep neural networks."
        ),
    )
    parser.add_argument("--version", action="version", version=f"distbench {__version__}")
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=OneLineParser
    )
    for module_name in COMMANDS.values():
        register: Callable[[argparse._SubParsersAction], None] = import_module(module_name).register
        register(subparsers)
    return parser


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so running benchmarks are torn down, not orphaned."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """The command line; the signal handlers it installs are undone when it returns, so
    a program that calls it (a test) keeps its own."""
    previous = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return _run(argv)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def _run(argv: list[str] | None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        argv = ["run"]  # `distbench` alone runs the default suite, like `distbench run`
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except UserError as exc:
        sys.stderr.write(f"distbench {args.command}: error: {exc}\n")
        return 2
    except RunFailed as exc:  # a failure only a run can find, where nothing is stored
        sys.stderr.write(f"distbench {args.command}: failed: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"distbench {args.command}: interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
