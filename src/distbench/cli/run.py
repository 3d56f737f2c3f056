"""``distbench run``: run benchmarks (a matrix from flags, a suite file, or the default)."""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from distbench.cli.common import add_db_option, add_json_option, int_list, str_list
from distbench.cli.tables import print_table
from distbench.config import RunConfig, SuiteConfig, load_suite
from distbench.harness.session import run_benchmarks
from distbench.registry import expand_suite
from distbench.store.export import to_json
from distbench.store.result import RunResult

# Flags that map one-to-one onto RunConfig fields (dest -> field).
RUN_SETTINGS = (
    "dataset",
    "data_dir",
    "batch_size",
    "steps",
    "warmup",
    "threads",
    "lr",
    "momentum",
    "weight_decay",
    "seed",
    "input_size",
    "num_classes",
    "timeout",
    "device",
    "nnodes",
    "node_rank",
    "master_addr",
    "master_port",
    "save_weights",
    "servers",
    "ps_semaphore",
    "microbatches",
    "partition",
    "profile_ops",
    "network",
    "hosts",
    "nodefile",
    "framework",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run benchmarks and store the results",
        description="Run benchmarks. With no selection flags, runs the default suite.",
    )
    add_selection_options(parser)
    add_training_options(parser)
    add_strategy_options(parser)
    add_launch_options(parser)
    add_db_option(parser)
    add_json_option(parser)
    parser.set_defaults(handler=run_command)


def add_selection_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("what to run")
    group.add_argument(
        "--model",
        type=str_list,
        metavar="M[,M...]",
        help="zoo model name(s), or path/file.py:Class, package.module:Class",
    )
    group.add_argument(
        "--dataset", help="synthetic (default), digits, mnist, cifar10, cifar100, imagefolder"
    )
    group.add_argument(
        "--data-dir", metavar="DIR", help="dataset directory (mnist, cifar, imagefolder)"
    )
    group.add_argument(
        "--strategy",
        type=str_list,
        metavar="S[,S...]",
        help="strategy name(s): see `distbench list strategies`",
    )
    group.add_argument(
        "--workers",
        type=int_list,
        metavar="N[,N...]",
        help="worker counts, one run each (default 1)",
    )
    group.add_argument("--suite", metavar="FILE.toml", help="run a matrix from a suite file")
    # Another framework's adapter (its strategies: sequential, sync, async).
    group.add_argument(
        "--framework",
        choices=("torch", "tensorflow", "mxnet", "horovod"),
        help="torch (default), or an adapter run in its own environment "
        "(`distbench env install NAME`); adapters offer --strategy "
        "sequential, sync, async (see docs/frameworks.md)",
    )


def add_training_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training")
    group.add_argument("--batch-size", type=int, metavar="B", help="batch per worker (32)")
    group.add_argument("--steps", type=int, metavar="K", help="measured steps (20)")
    group.add_argument("--warmup", type=int, metavar="W", help="warm-up steps, excluded (3)")
    group.add_argument("--lr", type=float, help="SGD learning rate (0.01)")
    group.add_argument("--momentum", type=float, help="SGD momentum (0)")
    group.add_argument("--weight-decay", type=float, help="SGD weight decay (0)")
    group.add_argument("--seed", type=int, help="seed for weights and data order (0)")
    group.add_argument(
        "--input-size", type=int, metavar="PX", help="input height = width (model default)"
    )
    group.add_argument("--num-classes", type=int, help="classes (dataset default)")
    group.add_argument(
        "--save-weights",
        metavar="FILE.npz",
        help="write rank 0's final weights as NumPy arrays by parameter name",
    )


def add_strategy_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("strategy options")
    group.add_argument(
        "--servers",
        choices=("central", "sharded"),
        help="ps-*: one server process (central, default) or a weight shard "
        "on every worker (sharded)",
    )
    group.add_argument(
        "--ps-semaphore",
        action="store_const",
        const=True,
        help="ps-*: a server admits one pull and one push at a time",
    )
    group.add_argument(
        "--microbatches", type=int, metavar="M", help="pipeline-*: micro-batches per batch (4)"
    )
    group.add_argument(
        "--partition",
        choices=("uniform", "profiled"),
        help="pipeline-*, model-parallel: equal block counts (uniform, "
        "default) or a cut chosen from a per-block profile (profiled)",
    )


def add_launch_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("processes")
    group.add_argument(
        "--threads",
        type=int,
        metavar="T",
        help="threads per process (default max(1, cores // processes))",
    )
    group.add_argument(
        "--timeout",
        type=float,
        metavar="SEC",
        help="wall-clock limit per run; all ranks are stopped (600)",
    )
    group.add_argument("--device", choices=("auto", "cpu", "cuda"), help="auto (default)")
    group.add_argument("--nnodes", type=int, help="nodes in a multi-node run (1)")
    group.add_argument("--node-rank", type=int, help="this node's rank, 0..nnodes-1 (0)")
    group.add_argument("--master-addr", metavar="HOST", help="address of node 0 (127.0.0.1)")
    group.add_argument(
        "--master-port",
        type=int,
        metavar="PORT",
        help="port on node 0 (a free one when single-node)",
    )
    # Operator profiles (store_const keeps a suite file's setting unless given).
    group.add_argument(
        "--profile-ops",
        action="store_const",
        const=True,
        help="torch.profiler over the last 3 measured steps of every rank: "
        "top operators per phase, a Chrome trace per rank (see docs/report.md)",
    )
    add_network_options(parser)


def add_network_options(parser: argparse.ArgumentParser) -> None:
    """Emulated networks and hosts (docs/network.md)."""
    group = parser.add_argument_group("network (needs root; see docs/network.md)")
    group.add_argument(
        "--network",
        metavar="SPEC",
        help="put every host in its own network namespace behind a shaped "
        "link: bandwidth=RATE[,up=RATE][,down=RATE][,burst=SIZE][,mtu=BYTES]"
        "[,delay=T], tc units, e.g. bandwidth=100mbit or bandwidth=1gbit",
    )
    group.add_argument(
        "--hosts",
        type=int,
        metavar="K",
        help="run the processes as K emulated hosts, one torchrun launcher "
        "each (default with --network: one host per process)",
    )
    group.add_argument(
        "--nodefile",
        metavar="FILE",
        help="one address per line: the emulated hosts' addresses (with "
        "--network/--hosts), else a real cluster's nodes (sets --nnodes, "
        "--master-addr; --node-rank from this machine's address)",
    )


def default_suite() -> SuiteConfig:
    text = resources.files("distbench").joinpath("suites/default.toml")
    with resources.as_file(text) as path:
        return load_suite(path)


def explicit_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in RUN_SETTINGS if getattr(args, name) is not None}


def configs_from_args(args: argparse.Namespace) -> list[RunConfig]:
    """Flags override the suite's settings; no selection at all means the default suite."""
    if args.suite:
        suite = load_suite(args.suite)
    elif args.model is None and args.strategy is None and args.workers is None:
        suite = default_suite()
    else:
        suite = SuiteConfig(
            models=args.model or ["resnet18"],
            strategies=args.strategy or ["sequential"],
            workers=args.workers or [1],
        )
    suite = SuiteConfig(
        models=args.model or suite.models,
        strategies=args.strategy or suite.strategies,
        workers=args.workers or suite.workers,
        base={**suite.base, **explicit_settings(args)},
    )
    configs = expand_suite(suite)
    if len(configs) > 1 and any(c.save_weights for c in configs):
        configs = [c.replace(save_weights=weights_path_for(c)) for c in configs]
    return configs


def weights_path_for(cfg: RunConfig) -> str:
    path = Path(cfg.save_weights or "weights.npz")
    return str(path.with_name(f"{path.stem}-{cfg.model}-{cfg.strategy}-{cfg.workers}w.npz"))


class ProgressView:
    """A progress bar on stderr: run i of n, and steps of the current run."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self.runs = self.progress.add_task("runs", total=None)
        self.steps = self.progress.add_task("steps", total=None)

    def __call__(self, kind: str, info: dict[str, Any]) -> None:
        if kind == "start":
            self.progress.start()  # lazily: errors before the first run print one line only
            cfg: RunConfig = info["config"]
            label = (
                f"run {info['index'] + 1}/{info['total']}: {cfg.model} {cfg.strategy} "
                f"x{cfg.workers}"
            )
            self.progress.update(
                self.runs, total=info["total"], completed=info["index"], description=label
            )
            self.progress.reset(self.steps, total=cfg.warmup + cfg.steps, description="steps")
        elif kind == "steps":
            self.progress.update(self.steps, completed=info["done"])
        elif kind == "done":
            row = info["row"]
            self.progress.update(self.runs, completed=info["index"] + 1)
            self.console.log(_done_line(row), markup=False, highlight=False)


def _done_line(row: RunResult) -> str:
    head = f"{row.model} {row.strategy} x{row.workers}: {row.status}"
    if row.ok:
        return f"{head}, {row.throughput_median:.1f} samples/s"
    return f"{head} ({row.error})"


def run_command(args: argparse.Namespace) -> int:
    configs = configs_from_args(args)
    console = Console(stderr=True)
    view = ProgressView(console)
    try:
        rows = run_benchmarks(configs, args.db, view)
    finally:
        view.progress.stop()
    if args.json:
        sys.stdout.write(to_json(rows) + "\n")
    elif rows:
        print_table(rows, title=f"distbench run ({len(rows)} runs, stored in {args.db})")
    failed = [row for row in rows if not row.ok]
    for row in failed:
        sys.stderr.write(f"run {row.run_id} failed: {row.error}\n")
    return 1 if failed else 0
