"""``distbench profile``: calibrate the speedup model on this host and store the profile.

Parsing and printing only: the measurements are ``distbench.profiling.calibrate`` and the
storage ``distbench.profiling.profiles``. ``docs/model.md`` lists what is measured.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from distbench.cli.common import add_db_option, add_json_option
from distbench.config import RunConfig
from distbench.data import check_dataset
from distbench.errors import UserError
from distbench.profiling.profiles import Profile
from distbench.registry import check_run


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "profile",
        help="measure t_grad, t_comm, alpha/beta and CPU contention; store them",
        description="Calibrate the speedup model on this host: gradient times (full batch, "
        "1/k splits, k workers sharing the host), one full weight transfer "
        "between two gloo ranks, and point-to-point / all-reduce size sweeps "
        "fitted to latency and bandwidth. Medians over --repeats.",
    )
    add_profile_options(parser)
    add_db_option(parser)
    add_json_option(parser)
    parser.set_defaults(handler=run_profile)


def add_profile_options(parser: argparse.ArgumentParser, selection: bool = True) -> None:
    """The calibration flags (``selection=False``: without --model/--dataset/--batch-size,
    for commands that take those from their own flags)."""
    group = parser.add_argument_group("calibration")
    if selection:
        group.add_argument("--model", required=True, metavar="M", help="zoo model name")
        group.add_argument("--dataset", default="synthetic", help="dataset (synthetic)")
        group.add_argument("--data-dir", metavar="DIR", help="dataset directory")
        group.add_argument(
            "--batch-size", type=int, default=32, metavar="B", help="per-worker batch (32)"
        )
        group.add_argument("--input-size", type=int, metavar="PX", help="input height = width")
        group.add_argument("--num-classes", type=int, help="classes (dataset default)")
        group.add_argument(
            "--workers",
            type=int,
            default=2,
            metavar="N",
            help="splits 1/2..1/N and contention of up to N workers (2)",
        )
        group.add_argument(
            "--threads",
            type=int,
            metavar="T",
            help="threads of the one-worker measurement (all cores)",
        )
        group.add_argument(
            "--operators",
            action="store_true",
            help="first run the one-worker workload (sequential) under "
            "torch.profiler and store it as a run: top operators per phase "
            "and a Chrome trace (as `distbench run --profile-ops`)",
        )
        group.add_argument(
            "--network",
            metavar="SPEC",
            help="measure t_comm and the sweeps between two emulated hosts "
            "behind this shaped link, as `distbench run --network` builds "
            "them (e.g. bandwidth=100mbit; needs root); default: loopback",
        )
    group.add_argument(
        "--repeats",
        type=int,
        default=10,
        metavar="R",
        help="timed repetitions per measurement; medians are stored (10)",
    )
    if selection:
        group.add_argument(
            "--rounds",
            type=int,
            default=1,
            metavar="R",
            help="calibrate R times, each with fresh process groups, and store the round "
            "with the median t_grad, every round's t_grad and t_comm beside it (1)",
        )
    group.add_argument(
        "--profile-warmup",
        type=int,
        default=2,
        metavar="W",
        help="untimed repetitions before each measurement (2)",
    )
    group.add_argument(
        "--sweep-max-bytes",
        type=int,
        metavar="B",
        help="largest message of the size sweeps (64 MiB; behind --network "
        "about 2 s of traffic at its rate, 1-64 MiB)",
    )
    group.add_argument(
        "--profile-timeout",
        type=float,
        default=600.0,
        metavar="SEC",
        help="wall-clock limit per group of calibration processes (600)",
    )


class ProfileProgress:
    """A rich progress bar on stderr for one or more calibrations."""

    def __init__(self, console: Console, progress: Progress | None = None) -> None:
        self.progress = progress or Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self.task = self.progress.add_task("profile", total=None)
        self.prefix = ""

    def __call__(self, what: str, done: int, total: int) -> None:
        self.progress.update(
            self.task, description=f"{self.prefix}{what}", completed=done, total=total
        )


def request_from_args(args: argparse.Namespace) -> Any:
    from distbench.profiling.calibrate import ProfileRequest

    cfg = RunConfig(
        model=args.model,
        dataset=args.dataset,
        data_dir=args.data_dir,
        batch_size=args.batch_size,
        input_size=args.input_size,
        num_classes=args.num_classes,
        network=args.network,
    )
    check_run(cfg)
    check_dataset(cfg.dataset, cfg.data_dir)
    return ProfileRequest(
        cfg=cfg,
        workers=args.workers,
        repeats=args.repeats,
        warmup=args.profile_warmup,
        threads=args.threads,
        sweep_max_bytes=args.sweep_max_bytes,
        timeout=args.profile_timeout,
    )


def profile_lines(profile: Profile) -> list[str]:
    """A readable summary (milliseconds, MB, GB/s)."""
    ms = 1e3
    lines = [
        f"profile of {profile.model} on {profile.dataset}, batch {profile.batch_size}, "
        f"{profile.threads} threads, {profile.cores} cores ({profile.host}), links "
        f"{'behind --network ' + profile.network if profile.network else 'on loopback'}",
        f"  t_grad {profile.t_grad * ms:.2f} ms (forward {profile.t_forward * ms:.2f}, "
        f"backward {profile.t_backward * ms:.2f}; data {profile.t_data * ms:.2f}, "
        f"update {profile.t_update * ms:.2f})",
        "  t_grad of 1/k batch: "
        + ", ".join(f"k={k} {t * ms:.2f} ms" for k, t in enumerate(profile.t_grad_split, 1)),
        f"  weights {profile.weight_bytes / 1e6:.2f} MB ({profile.tensors} tensors), "
        f"t_comm {profile.t_comm * ms:.2f} ms, parameter-server protocol "
        f"+{(profile.ps_overhead or 0.0) * ms:.3f} ms per transfer",
        f"  p2p: alpha {profile.p2p.alpha * 1e6:.1f} us, beta "
        f"{profile.p2p.beta / 1e9:.3f} GB/s; all-reduce (ring): alpha "
        f"{profile.allreduce.alpha * 1e6:.1f} us, beta {profile.allreduce.beta / 1e9:.3f}"
        " GB/s",
        "  contention (processes x threads: t_grad median / slowest, step):",
    ]
    for c in profile.contended:
        lines.append(
            f"    {c.processes} x {c.threads}: {c.t_grad * ms:.2f} / "
            f"{c.t_grad_max * ms:.2f} ms, step {c.t_step * ms:.2f} ms"
        )
    return lines + ddp_lines(profile) + round_lines(profile) + load_lines(profile)


def load_lines(profile: Profile) -> list[str]:
    """A warning when the calibration shared the machine with other work."""
    if not profile.beside_other_load:
        return []
    return [
        f"  measured beside other load: processes outside the calibration took "
        f"{profile.outside_load_cores:.2f} cores; its times are a busy machine's"
    ]


def round_lines(profile: Profile) -> list[str]:
    """With --rounds: the spread of t_grad and t_comm over rounds."""
    if not profile.rounds:
        return []
    ms = 1e3
    grads = [r["t_grad"] for r in profile.rounds]
    comms = [r["t_comm"] for r in profile.rounds]
    return [
        f"  {len(grads)} rounds (the median one is stored): t_grad {min(grads) * ms:.2f}-"
        f"{max(grads) * ms:.2f} ms, t_comm {min(comms) * ms:.2f}-{max(comms) * ms:.2f} ms"
    ]


def ddp_lines(profile: Profile) -> list[str]:
    """DDP's measured extras (absent from profiles taken before they were measured)."""
    if profile.ddp_overhead is None:
        return []
    ms = 1e3
    loaded = ", ".join(
        f"{a.processes} x {a.threads}: {a.seconds * ms:.2f} ms" for a in profile.allreduce_loaded
    )
    return [
        f"  DDP machinery +{profile.ddp_overhead * ms:.3f} ms per step (one rank)"
        + (f"; all-reduce after a step {loaded}" if loaded else "")
    ]


def run_profile(args: argparse.Namespace) -> int:
    from distbench.profiling.calibrate import profile_model
    from distbench.profiling.profiles import median_profile, save_profile
    from distbench.store import open_store

    request = request_from_args(args)
    open_store(args.db).close()  # fail on an unusable --db before measuring anything
    if request.cfg.network:  # and on missing privileges or kernel support
        from distbench.netem.namespaces import check_spec_supported, require_privileges
        from distbench.netem.spec import parse_network

        require_privileges()
        check_spec_supported(parse_network(request.cfg.network))
    if args.rounds < 1:
        raise UserError(f"--rounds must be at least 1, got {args.rounds}")
    operators = operator_run(request, args) if args.operators else None
    view = ProfileProgress(Console(stderr=True))
    with view.progress:
        profile = median_profile([profile_model(request, view) for _ in range(args.rounds)])
    profile_id = save_profile(args.db, profile)
    if args.json:
        out = {**profile.to_dict(), "profile_id": profile_id}
        if operators is not None:
            out["operator_run"] = operators
        sys.stdout.write(json.dumps(out) + "\n")
        return 0
    lines = profile_lines(profile)
    if operators is not None:
        lines += operator_lines(operators)
    print("\n".join([*lines, f"stored as profile {profile_id} in {args.db}"]))
    return 0


def operator_run(request: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The one-worker workload under ``torch.profiler``, stored as an ordinary run."""
    from distbench.errors import RunFailed
    from distbench.harness.session import run_benchmarks

    cfg = request.cfg.replace(
        strategy="sequential",
        workers=1,
        profile_ops=True,
        threads=args.threads,
        steps=max(5, args.repeats),
        warmup=args.profile_warmup,
        timeout=args.profile_timeout,
    )
    rows = run_benchmarks([cfg], args.db)
    if not rows or not rows[0].ok:
        raise RunFailed(f"operator profile run failed: {rows[0].error if rows else '?'}")
    return rows[0].to_dict()


def operator_lines(row: dict[str, Any], top: int = 5) -> list[str]:
    """The operator run's id, its top operators per step split forward / backward, and
    where its Chrome trace is."""
    ops = row.get("operators") or {}
    lines = [
        f"  operators (run {row['run_id']}, self CPU ms per step: total = forward + "
        "backward + other phases):"
    ]
    for op in (ops.get("top") or [])[:top]:
        split = op.get("self_s_by_phase") or {}
        forward, backward = split.get("forward", 0.0), split.get("backward", 0.0)
        lines.append(
            f"    {op['name']}: {op['self_s'] * 1e3:.2f} = {forward * 1e3:.2f} + "
            f"{backward * 1e3:.2f} + {(op['self_s'] - forward - backward) * 1e3:.2f}"
        )
    traces = ops.get("traces") or []
    if traces:
        lines.append(f"  Chrome trace: {row.get('run_dir', 'the run directory')}/{traces[0]}")
    return lines
