"""Flags generated from ``RunConfig``'s declarations: one ``--name`` per settable field.

Each field's ``setting(...)`` metadata gives the help text, the metavar, the choices (its
``Literal`` type) and the default shown; the flag's type is the field's. Flags default to
None, so that a suite file's setting holds unless the flag is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

from distbench.config import RunConfig, parse_percent, setting_field
from distbench.errors import UserError

#: Every field the CLI sets through a flag of the same name (``--batch-size`` -> batch_size).
FLAG_SETTINGS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(RunConfig) if f.metadata.get("flag")
)


def _value_type(name: str) -> type:
    hint = typing.get_type_hints(RunConfig)[name]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return hint if isinstance(hint, type) else str


def _help(spec: dataclasses.Field[Any]) -> str:
    meta = spec.metadata
    shown = meta.get("shown_default")
    if shown is None:
        shown = (
            ""
            if spec.default is None
            else format(spec.default, "g")
            if isinstance(spec.default, float)
            else str(spec.default)
        )
    return f"{meta['doc']} ({shown})" if shown else str(meta["doc"])


def _shown_default(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return ""  # a flag that is off by default, or a setting with no default
    return format(value, "g") if isinstance(value, float) else str(value)


def percent_argument(text: str) -> float:
    """argparse type of a percentage flag: ``3%`` or ``3``."""
    try:
        return parse_percent(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_setting(group: argparse._ArgumentGroup, name: str) -> None:
    """``--name`` for the ``RunConfig`` field ``name``."""
    spec = setting_field(name)
    flag = "--" + name.replace("_", "-")
    value_type = _value_type(name)
    if value_type is bool:
        # store_const keeps a suite file's setting unless the flag is given
        group.add_argument(flag, action="store_const", const=True, help=_help(spec))
        return
    options: dict[str, Any] = {"help": _help(spec)}
    if spec.metadata.get("percent"):
        options["type"] = percent_argument
    elif spec.metadata.get("choices"):
        options["choices"] = spec.metadata["choices"]
    else:
        options["type"] = value_type
    if spec.metadata.get("metavar"):
        options["metavar"] = spec.metadata["metavar"]
    group.add_argument(flag, **options)


def add_section(
    parser: argparse.ArgumentParser, section: str, title: str, skip: tuple[str, ...] = ()
) -> argparse._ArgumentGroup:
    """A flag group with every flag-settable field of ``section``."""
    group = parser.add_argument_group(title)
    for spec in dataclasses.fields(RunConfig):
        if (
            spec.metadata.get("section") == section
            and spec.metadata.get("flag")
            and spec.name not in skip
        ):
            add_setting(group, spec.name)
    return group


def explicit_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags (those left at None are not)."""
    return {
        name: getattr(args, name) for name in FLAG_SETTINGS if getattr(args, name, None) is not None
    }
