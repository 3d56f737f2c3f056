"""``distbench run``: run benchmarks (a matrix from flags, a suite file, or the default)."""

from __future__ import annotations

import argparse
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from distbench.cli.common import (
    add_db_option,
    add_json_option,
    add_wide_option,
    int_list,
    str_list,
)
from distbench.cli.settings import add_section, explicit_settings
from distbench.cli.tables import print_table
from distbench.config import RunConfig, SuiteConfig, load_suite
from distbench.errors import UserError
from distbench.harness.session import run_benchmarks
from distbench.harness.slurm import SlurmOptions, prepare_job, run_on_slurm
from distbench.registry import expand_suite
from distbench.store.export import to_json
from distbench.store.result import Round, RunResult


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
    add_cluster_options(parser)
    add_db_option(parser)
    add_json_option(parser)
    add_wide_option(parser)
    parser.set_defaults(handler=run_command)


def add_selection_options(parser: argparse.ArgumentParser) -> None:
    """The suite axes (comma lists: one run per combination), a suite file, and the
    workload's other settings."""
    group = add_section(parser, "workload", "what to run")
    group.add_argument(
        "--model",
        type=str_list,
        metavar="M[,M...]",
        help="zoo model name(s), or path/file.py:Class, package.module:Class",
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
    group.add_argument(
        "--seeds",
        type=int_list,
        metavar="S[,S...]",
        help="one run per seed (initial weights and data order); `results` then gives "
        "time to accuracy as a median over seeds with its interval",
    )
    group.add_argument("--suite", metavar="FILE.toml", help="run a matrix from a suite file")


def add_training_options(
    parser: argparse.ArgumentParser, measurement_skip: tuple[str, ...] = ()
) -> None:
    add_section(parser, "training", "training")
    add_section(
        parser,
        "measurement",
        "measurement (rounds; see docs/measurement.md)",
        skip=measurement_skip,
    )
    add_section(parser, "output", "output")


def add_strategy_options(parser: argparse.ArgumentParser) -> None:
    add_section(parser, "strategy", "strategy options")


def add_launch_options(parser: argparse.ArgumentParser) -> None:
    add_section(parser, "processes", "processes")
    add_network_options(parser)


def add_network_options(parser: argparse.ArgumentParser) -> None:
    """Emulated networks and hosts (docs/network.md)."""
    add_section(parser, "network", "network (needs root; see docs/network.md)")


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """Where the processes run: this machine, or a SLURM job (docs/cluster.md)."""
    group = parser.add_argument_group("cluster (see docs/cluster.md)")
    group.add_argument(
        "--launcher",
        choices=("local", "slurm"),
        default="local",
        help="local: this machine (or this node of --nnodes); slurm: one SLURM job for the "
        "whole invocation, one task per node (sbatch, or srun inside an allocation) "
        "(default local)",
    )
    group.add_argument(
        "--slurm-partition", metavar="P", help="with --launcher slurm: the partition"
    )
    group.add_argument(
        "--slurm-time", metavar="T", help="with --launcher slurm: the time limit (as sbatch --time)"
    )
    group.add_argument(
        "--slurm-account", metavar="A", help="with --launcher slurm: the account to charge"
    )
    group.add_argument(
        "--dry-run",
        action="store_true",
        help="with --launcher slurm: write the job directory and print its batch script "
        "instead of submitting it",
    )


SLURM_ONLY = ("slurm_partition", "slurm_time", "slurm_account", "dry_run")


def slurm_options(args: argparse.Namespace, configs: list[RunConfig]) -> SlurmOptions | None:
    """The SLURM request, or None for a local run; SLURM's flags without it are an error."""
    if args.launcher != "slurm":
        given = [name for name in SLURM_ONLY if getattr(args, name)]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise UserError(f"{flag} is for --launcher slurm; add it or leave {flag} out")
        return None
    return SlurmOptions(
        nodes=configs[0].nnodes,
        partition=args.slurm_partition,
        time=args.slurm_time,
        account=args.slurm_account,
    )


def default_suite() -> SuiteConfig:
    text = resources.files("distbench").joinpath("suites/default.toml")
    with resources.as_file(text) as path:
        return load_suite(path)


def uses_default_suite(args: argparse.Namespace) -> bool:
    """No suite file and no selection: `distbench` alone, or `distbench run`."""
    return not args.suite and args.model is None and args.strategy is None and not args.workers


#: What the default suite took on a 2-core machine, as measured (docs/measurement.md,
#: "The default suite is stable"): told before it starts, so nobody waits blind.
DEFAULT_SUITE_MEASURED = "about 7 minutes on a 2-core machine"


def announce_default_suite(configs: list[RunConfig]) -> str:
    """The line said before the default suite starts: what it runs and how long it takes."""
    models = ", ".join(dict.fromkeys(cfg.model for cfg in configs))
    kinds = ", ".join(dict.fromkeys(f"{cfg.strategy} x{cfg.workers}" for cfg in configs))
    rounds = max(cfg.rounds for cfg in configs)
    first = configs[0]
    return (
        f"no selection given: running the default suite, {len(configs)} configurations "
        f"({models}; {kinds}) on {first.dataset} data, {rounds} interleaved rounds of "
        f"{first.steps} measured steps each; {DEFAULT_SUITE_MEASURED} "
        "(docs/measurement.md). Ctrl-C stops it and keeps what is finished."
    )


def configs_from_args(args: argparse.Namespace) -> list[RunConfig]:
    """Flags override the suite's settings; no selection at all means the default suite."""
    if args.suite:
        suite = load_suite(args.suite)
    elif uses_default_suite(args):
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
        seeds=getattr(args, "seeds", None) or suite.seeds,
    )
    configs = expand_suite(suite)
    if len(configs) > 1 and any(c.save_weights for c in configs):
        configs = [c.replace(save_weights=weights_path_for(c)) for c in configs]
    return configs


def say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def run_locally(configs: list[RunConfig], db: str) -> list[RunResult]:
    console = Console(stderr=True)
    view = ProgressView(console)
    try:
        return run_benchmarks(configs, db, view)
    finally:
        view.progress.stop()


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
        self.rounds = RoundClock()

    def __call__(self, kind: str, info: dict[str, Any]) -> None:
        if kind == "start":
            self.progress.start()  # lazily: errors before the first run print one line only
            cfg: RunConfig = info["config"]
            label = (
                f"{_round_label(info)}run {info['index'] + 1}/{info['total']}: {cfg.model} "
                f"{cfg.strategy} x{cfg.workers}"
            )
            self.progress.update(
                self.runs, total=info["total"], completed=info["index"], description=label
            )
            self.progress.reset(self.steps, total=cfg.warmup + cfg.steps, description="steps")
        elif kind == "steps":
            self.progress.update(self.steps, completed=info["done"])
        elif kind == "done":
            self.progress.update(self.runs, completed=info["index"] + 1)
            left = self.rounds.after(info)
            if left:
                self.console.log(left, markup=False, highlight=False)
            self.console.log(_done_line(info), markup=False, highlight=False)


class RoundClock:
    """After each round of every configuration, the time it took and, from the rounds so
    far, the time left (the planned rounds; ``--precision`` may add more)."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def after(self, info: dict[str, Any]) -> str | None:
        number, planned = int(info.get("round", 1)), int(info.get("rounds", 1))
        if planned <= 1 or info["index"] + 1 != info["total"]:
            return None  # not the last configuration of a round
        per_round = (time.monotonic() - self.started) / number
        left = max(planned - number, 0) * per_round
        if not left:
            return f"round {number}/{planned} of every configuration done"
        return (
            f"round {number}/{planned} of every configuration done, "
            f"{per_round:.0f} s a round: about {_duration(left)} left"
        )


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _round_label(info: dict[str, Any]) -> str:
    rounds = int(info.get("rounds", 1))
    number = int(info.get("round", 1))
    if rounds == 1 and number == 1:
        return ""
    return f"round {number}/{rounds}{'+' if number > rounds else ''} "


def _done_line(info: dict[str, Any]) -> str:
    cfg: RunConfig = info["config"]
    entry: Round = info["round_result"]
    head = f"{_round_label(info)}{cfg.model} {cfg.strategy} x{cfg.workers}: {entry.status}"
    load = f" (beside other load: {entry.outside_cores:.2f} cores)" if entry.busy else ""
    if entry.status == "ok":
        return f"{head}, {entry.throughput or 0:.1f} samples/s{load}"
    return f"{head} ({entry.error}){load}"


def run_command(args: argparse.Namespace) -> int:
    configs = configs_from_args(args)
    slurm = slurm_options(args, configs)
    if slurm is not None and args.dry_run:
        script = prepare_job(configs, Path(args.db).resolve(), slurm)
        sys.stdout.write(script.read_text(encoding="utf-8"))
        say(f"not submitted; to submit it yourself: sbatch {script}")
        return 0
    if uses_default_suite(args):
        say(announce_default_suite(configs))
    if slurm is not None:
        rows = run_on_slurm(configs, Path(args.db).resolve(), slurm, say)
    else:
        rows = run_locally(configs, args.db)
    if args.json:
        sys.stdout.write(to_json(rows) + "\n")
    elif rows:
        title = f"distbench run ({len(rows)} runs, stored in {args.db})"
        print_table(rows, title=title, wide=args.wide)
    failed = [row for row in rows if not row.ok]
    for row in failed:
        sys.stderr.write(f"run {row.run_id} failed: {row.error}\n")
    return 1 if failed else 0
