"""``distbench env install NAME | list``: the per-framework virtual environments.

The work is in :mod:`distbench.frameworks.envs`; this module parses and prints.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict

from rich.console import Console
from rich.table import Table

from distbench.cli.common import add_json_option
from distbench.frameworks.envs import (
    DEFAULT_INSTALL_TIMEOUT,
    ENV_SPECS,
    install_env,
    list_envs,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "env",
        help="install or list the TensorFlow / MXNet / Horovod environments",
        description="Each framework gets its own virtual environment under $DISTBENCH_ENVS "
        "(default ~/.cache/distbench/envs), because their pins conflict.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    install = actions.add_parser("install", help="create a framework's environment")
    install.add_argument(
        "names",
        nargs="+",
        choices=tuple(ENV_SPECS),
        metavar="NAME",
        help=f"one or more of: {', '.join(ENV_SPECS)}",
    )
    install.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_INSTALL_TIMEOUT,
        metavar="SEC",
        help="limit per environment (1800)",
    )
    install.add_argument("--force", action="store_true", help="rebuild even if installed")
    install.set_defaults(handler=install_command)
    listing = actions.add_parser("list", help="show the environments and their versions")
    add_json_option(listing)
    listing.set_defaults(handler=list_command)


def install_command(args: argparse.Namespace) -> int:
    console = Console(stderr=True, highlight=False)
    for name in args.names:
        started = time.monotonic()

        def progress(line: str, name: str = name, started: float = started) -> None:
            console.print(f"[{name} {time.monotonic() - started:5.0f}s] {line}", markup=False)

        marker = install_env(name, timeout=args.timeout, force=args.force, progress=progress)
        versions = ", ".join(f"{k} {v}" for k, v in marker["versions"].items())
        console.print(f"{name}: ready ({versions})", markup=False)
    return 0


def list_command(args: argparse.Namespace) -> int:
    rows = list_envs()
    if args.json:
        sys.stdout.write(json.dumps([asdict(r) for r in rows], indent=1) + "\n")
        return 0
    table = Table(
        "env", "installed", "versions", "path", title="distbench environments", title_justify="left"
    )
    for row in rows:
        versions = ", ".join(f"{k} {v}" for k, v in row.versions.items()) or "-"
        state = "yes" if row.installed else f"unusable: {row.problem}" if row.problem else "no"
        table.add_row(row.name, state, versions, row.path)
    Console(file=sys.stdout, width=160).print(table)
    return 0
