"""``distbench list models|strategies|datasets``: what distbench knows."""

from __future__ import annotations

import argparse
import sys

import torch
from rich.console import Console
from rich.table import Table

from distbench.data import DATASETS
from distbench.models import MODELS, build_model, count_parameters, describe_blocks, model_defaults
from distbench.strategies.contract import StrategyFacts
from distbench.strategies.registry import STRATEGIES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "list",
        help="list models, strategies or datasets",
        description="List what distbench can run.",
    )
    parser.add_argument("what", choices=("models", "strategies", "datasets"))
    parser.add_argument(
        "--num-classes", type=int, default=10, help="classes used to count model parameters (10)"
    )
    parser.add_argument(
        "--blocks",
        metavar="MODEL",
        help="with 'models': MODEL's blocks (the units pipelines cut between) "
        "with parameters and activation size per sample",
    )
    parser.set_defaults(handler=list_command)


def model_rows(num_classes: int) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for name, spec in MODELS.items():
        with torch.device("meta"):  # count parameters without allocating them
            model = build_model(name, num_classes)
        shape = f"{spec.default_channels}x{spec.default_input_size}x{spec.default_input_size}"
        rows.append((name, f"{count_parameters(model):,}", shape, spec.description))
    return rows


def block_rows(model_name: str, num_classes: int) -> list[tuple[str, ...]]:
    """One row per block of ``model_name`` at its default input (shapes found on 'meta')."""
    size, channels = model_defaults(model_name)
    with torch.device("meta"):
        model = build_model(model_name, num_classes)
    return [
        (
            str(index),
            info.name,
            f"{info.params:,}",
            "x".join(map(str, info.output_shape)),
            _bytes_text(info.activation_bytes),
        )
        for index, info in enumerate(describe_blocks(model, (channels, size, size)))
    ]


def strategy_rows() -> list[tuple[str, ...]]:
    """Every framework's strategies in one vocabulary: the names they also answer to
    (``names.STRATEGY_ALIASES``), what ``--workers`` counts and what ``--batch-size`` is."""
    from distbench.frameworks import FRAMEWORK
    from distbench.names import aliases_of

    facts: list[tuple[str, StrategyFacts]] = [("torch", s) for s in STRATEGIES.values()]
    facts += [(f, s) for f, adapter in FRAMEWORK.items() for s in adapter.strategies.values()]
    return [
        (
            framework,
            s.name,
            ", ".join(aliases_of(framework, s.name)),
            s.workers_are,
            "per worker" if s.scaling == "weak" else "global (split over the workers)",
            s.description,
        )
        for framework, s in facts
    ]


def _bytes_text(nbytes: int) -> str:
    return f"{nbytes} B" if nbytes < 1024 else f"{nbytes / 1024:,.1f} KiB"


def list_command(args: argparse.Namespace) -> int:
    header: tuple[str, ...]
    rows: list[tuple[str, ...]]
    if args.what == "models" and args.blocks:
        header = (
            "#",
            f"block of {args.blocks}",
            "parameters",
            "output per sample",
            "activation per sample (float32)",
        )
        rows = block_rows(args.blocks, args.num_classes)
    elif args.what == "models":
        header = (
            "model",
            f"parameters ({args.num_classes} classes)",
            "default input",
            "description",
        )
        rows = model_rows(args.num_classes)
    elif args.what == "strategies":
        header = ("framework", "strategy", "also", "--workers counts", "--batch-size is",
                  "description")  # fmt: skip
        rows = strategy_rows()
    else:
        header = ("dataset", "needs --data-dir", "description")
        rows = [(n, "yes" if d.needs_dir else "no", d.description) for n, d in DATASETS.items()]
    table = Table(*header)
    for row in rows:
        table.add_row(*row)
    Console(file=sys.stdout).print(table)
    return 0
