"""Shared CLI plumbing: a parser whose errors are one line, and common option groups."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn, TypeVar

DEFAULT_DB = "distbench.db"


class OneLineParser(argparse.ArgumentParser):
    """argparse prints usage plus the message; we promise one clear line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def add_db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        default=DEFAULT_DB,
        metavar="PATH",
        help=f"SQLite results store (default: ./{DEFAULT_DB})",
    )


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help="print machine-readable JSON on stdout (and nothing else there)",
    )


def add_wide_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wide",
        action="store_true",
        help="every column of the results table, however wide (by default columns are left "
        "out, least telling first, to fit the terminal; COLUMNS sets its width)",
    )


T = TypeVar("T", int, float)


def _number_list(text: str, kind: type[T], what: str) -> list[T]:
    try:
        values = [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated {what}s, got '{text}'"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one {what}")
    return values


def int_list(text: str) -> list[int]:
    """Parse '1,2,4' into [1, 2, 4] with a one-line error for anything else."""
    return _number_list(text, int, "integer")


def float_list(text: str) -> list[float]:
    """Parse '0.5,0.26,0.18' into floats with a one-line error for anything else."""
    return _number_list(text, float, "number")


def str_list(text: str) -> list[str]:
    values = [part.strip() for part in text.split(",") if part.strip()]
    if not values:
        raise argparse.ArgumentTypeError("expected at least one name")
    return values
