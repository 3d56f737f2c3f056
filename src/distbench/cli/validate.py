"""``distbench validate``: predicted beside measured time per step and speedup, with errors.

Parsing and printing only: selection flags are ``distbench run``'s (same option groups,
same ``configs_from_args``); the work is ``distbench.workflows.validate.validate_configs``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console

from distbench.cli.common import add_db_option, add_json_option
from distbench.cli.profile import ProfileProgress, add_profile_options
from distbench.cli.run import (
    ProgressView,
    add_launch_options,
    add_selection_options,
    add_strategy_options,
    add_training_options,
    configs_from_args,
)
from distbench.errors import UserError
from distbench.predict.accuracy import (
    BestPick,
    ValidationReport,
    ValidationRow,
    ValidationSummary,
)
from distbench.predict.engines import Engine, check_engine
from distbench.workflows.validate import CalibrationOptions, validate_configs


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="predict each run from a calibration profile and compare",
        description="For each configuration (same selection flags as `distbench run`, or "
        "--suite), predict the time per step and speedup from the stored "
        "calibration profile (taken now if missing), run it (or, with --reuse, "
        "read it from the store) and print both with the relative error, then "
        "the median and maximum error, the rank correlation and whether the "
        "predicted best configuration is the measured best.",
    )
    add_selection_options(parser)
    # rounds, interleaved, each with a fresh contention measurement (--precision is run's)
    add_training_options(parser, measurement_skip=("precision", "budget"))
    add_strategy_options(parser)
    add_launch_options(parser)
    group = parser.add_argument_group("validation")
    group.add_argument(
        "--reuse",
        action="store_true",
        help="read matching measured runs from the store instead of running (with --rounds K: "
        "each configuration's newest K, as rounds)",
    )
    group.add_argument(
        "--reprofile",
        action="store_true",
        help="take a fresh calibration profile even if one is stored",
    )
    group.add_argument(
        "--no-refresh",
        dest="refresh",
        action="store_false",
        help="do not re-measure each configuration's CPU contention just "
        "before its run (use the stored profile as it is)",
    )
    group.add_argument(
        "--engine",
        type=engine_list,
        default=("formulas",),
        metavar="E[,E]",
        help="prediction backend(s): formulas (the closed forms), simulator (the "
        "discrete-event model, docs/simulator.md), or both, each compared with the same "
        "measurements (default: formulas)",
    )
    add_profile_options(parser, selection=False)
    add_db_option(parser)
    add_json_option(parser)
    parser.set_defaults(handler=run_validate)


def engine_list(text: str) -> tuple[Engine, ...]:
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not names:
        raise argparse.ArgumentTypeError("name at least one engine")
    try:
        return tuple(check_engine(name) for name in names)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f}%"


def _num(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def row_line(row: ValidationRow) -> str:
    return (
        f"{row.model:<12} {row.strategy:<14} {row.workers:>2} "
        f"{_num(row.predicted_step, 1e3, 1):>9} {_num(row.measured_step, 1e3, 1):>9} "
        f"{_pct(row.step_error):>8} {_num(row.predicted_speedup):>6} "
        f"{_num(row.measured_speedup):>6} {_pct(row.speedup_error):>8} "
        f"{_noise(row):>7}  {row.status}{', within noise' if row.within_noise else ''}"
    )


def _noise(row: ValidationRow) -> str:
    noise = row.measurement_noise
    return "-" if noise is None else f"±{noise * 100:.1f}%"


def _faithful_line(s: ValidationSummary) -> list[str]:
    """The errors without the runs whose emulated compute was not replayed faithfully, when
    there were any (docs/emulation.md: what makes an emulation unfaithful)."""
    rows, median_error, max_error = s.faithful
    if rows == s.compared:
        return []
    return [
        f"  where the emulation was faithful ({rows} of {s.compared}): median |error| "
        f"{_pct(median_error).lstrip('+')}, max |error| {_pct(max_error).lstrip('+')}"
    ]


def render(report: ValidationReport) -> str:
    """The table and the summary as text."""
    lines = [
        f"{'model':<12} {'strategy':<14} {'N':>2} {'pred ms':>9} {'meas ms':>9} "
        f"{'err':>8} {'S_pred':>6} {'S_meas':>6} {'S err':>8} {'noise':>7}  status"
    ]
    lines += [row_line(row) for row in report.rows]
    s = report.summary
    rounds = max((len(row.round_throughputs) for row in report.rows), default=0)
    lines += [
        "",
        f"compared {s.compared} of {s.configurations} configurations"
        + (f", each by its median of {rounds} rounds" if rounds > 1 else ""),
        f"time per step: median |error| {_pct(s.median_abs_step_error).lstrip('+')}, "
        f"max |error| {_pct(s.max_abs_step_error).lstrip('+')}",
        *_faithful_line(s),
        f"speedup: median |error| {_pct(s.median_abs_speedup_error).lstrip('+')}",
        "noise: half-width of the measured throughput's interval over rounds; an error "
        "inside it is within noise",
        f"Spearman rank correlation of throughput: all {_num(s.spearman, digits=3)}, "
        f"within a workload (median) {_num(s.spearman_within_workload, digits=3)}",
    ]
    lines += [
        f"best for {pick.workload}: predicted {pick.predicted}, measured "
        f"{pick.measured} ({_verdict(pick)})"
        for pick in s.best
    ]
    lines.append(
        f"predicted best configurations are the measured best: "
        f"{'yes' if s.best_matches else 'no'}; within the measurement's noise: "
        f"{'yes' if s.best_within_noise else 'no'}"
    )
    if s.best_overall_measured is not None:
        same = "correct" if s.best_overall_predicted == s.best_overall_measured else "WRONG"
        lines.append(
            f"overall highest throughput: predicted {s.best_overall_predicted}, "
            f"measured {s.best_overall_measured} ({same})"
        )
    return "\n".join(lines)


class ValidateProgress:
    """Profile and run progress on stderr, one live display at a time."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.runs = ProgressView(console)
        self.profile = ProfileProgress(console, self.runs.progress)  # one live display

    def event(self, kind: str, info: dict[str, Any]) -> None:
        cfg = info["config"]
        if kind == "profile":
            self.profile.prefix = f"{cfg.model} b{cfg.batch_size}: "
            self.console.log(f"calibration profile for {cfg.model} (batch {cfg.batch_size})")
        elif kind == "busy profile":
            self.console.log(
                f"profile {info['profile']} of {cfg.model} was measured beside other load "
                f"({info['cores']:.2f} cores outside it): its times are a busy machine's"
            )
        else:
            rounds = f" (round {info['round']}/{info['rounds']})" if info["rounds"] > 1 else ""
            self.console.log(f"measuring {info['runs']} configuration(s) of {cfg.model}{rounds}")


def _verdict(pick: BestPick) -> str:
    if pick.matches:
        return "correct"
    gap = f"{pick.regret:.1%} below the measured best's throughput"
    if pick.tied:
        return f"tied: {gap}, within both runs' 95 % intervals"
    return f"WRONG, {gap}"


def run_validate(args: argparse.Namespace) -> int:
    configs = configs_from_args(args)  # before any progress bar is drawn: checks --rounds
    options = CalibrationOptions(
        repeats=args.repeats,
        warmup=args.profile_warmup,
        sweep_max_bytes=args.sweep_max_bytes,
        timeout=args.profile_timeout,
        reprofile=args.reprofile,
        refresh=args.refresh,
    )
    view = ValidateProgress(Console(stderr=True))
    reports = []
    with view.runs.progress:
        for index, engine in enumerate(args.engine):
            # the first engine measures; the others read the very runs it stored
            reports.append(
                validate_configs(
                    configs,
                    args.db,
                    reuse=args.reuse or index > 0,
                    options=options,
                    profile_progress=view.profile,
                    run_hook=view.runs,
                    on_event=view.event,
                    rounds=max(cfg.rounds for cfg in configs),
                    engine=engine,
                )
            )
    if args.json:
        payload = (
            reports[0].to_dict()
            if len(reports) == 1
            else {"engines": {r.engine: r.to_dict() for r in reports}}
        )
        sys.stdout.write(json.dumps(payload) + "\n")
    else:
        print("\n\n".join(_titled(r, len(reports) > 1) for r in reports))
        if len(reports) > 1:
            print("\n" + engines_line(reports))
    return 0


def _titled(report: ValidationReport, several: bool) -> str:
    return (f"engine: {report.engine}\n" if several else "") + render(report)


def engines_line(reports: list[ValidationReport]) -> str:
    """Where the engines' predictions disagree by more than 1 %, which is nearer the
    measurement, counted over the configurations both predicted."""
    first, second = reports[0], reports[1]
    nearer = {first.engine: 0, second.engine: 0}
    disagree = 0
    for a, b in zip(first.rows, second.rows, strict=True):
        if a.step_error is None or b.step_error is None or a.predicted_step is None:
            continue
        if abs((b.predicted_step or 0) - a.predicted_step) <= 0.01 * a.predicted_step:
            continue
        disagree += 1
        winner = first if abs(a.step_error) < abs(b.step_error) else second
        nearer[winner.engine] += 1
    counts = ", ".join(f"{name} {count}" for name, count in nearer.items())
    return (
        f"where the engines disagree by more than 1 % ({disagree} configurations), "
        f"nearer the measurement: {counts}"
    )
