"""The report's convergence figures: accuracy against training time and against steps, and
time-to-accuracy bars beside throughput bars.

Where to start: :func:`convergence_figures` returns both for the runs trained to a target
or for epochs (none without such runs). The data come from ``analysis/convergence.py``;
this module only draws. The bars sit side by side in the same order so that a reader sees
at once where the faster configuration in samples per second is the slower one to a
trained model (an asynchronous run that needs more updates, a large batch that needs more
samples).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from matplotlib.axes import Axes

from distbench.analysis.convergence import (
    GoalSummary,
    configuration_key,
    goal_of,
    run_label,
    summarize_goals,
)
from distbench.report.figures import PANEL_H, PANEL_W, ReportFigure, new_figure
from distbench.store.result import RunResult


def convergence_figures(rows: Sequence[RunResult]) -> list[ReportFigure]:
    goals = [row for row in rows if goal_of(row) is not None]
    if not goals:
        return []
    return [accuracy_figure(goals), time_to_accuracy_figure(summarize_goals(goals))]


def accuracy_figure(rows: Sequence[RunResult]) -> ReportFigure:
    """Held-out accuracy against training time (left) and against updates (right); one
    colour per configuration, one line per seed."""
    fig = new_figure(PANEL_W * 2, PANEL_H)
    by_time, by_steps = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    colours: dict[str, str] = {}
    targets: set[float] = set()
    for row in rows:
        goal = goal_of(row)
        if goal is None or not goal.curve:
            continue
        key = configuration_key(row)
        first = key not in colours
        colour = colours.setdefault(key, f"C{len(colours) % 10}")
        label = run_label(row) if first else None
        accuracy = [p["accuracy"] for p in goal.curve]
        by_time.plot([p["train_s"] for p in goal.curve], accuracy, color=colour, label=label)
        by_steps.plot([p["step"] for p in goal.curve], accuracy, color=colour, label=label)
        if goal.target is not None:
            targets.add(goal.target)
    for ax, xlabel in ((by_time, "training time (s, evaluations excluded)"), (by_steps,
                       "updates (asynchronous: every worker's)")):  # fmt: skip
        for target in targets:
            ax.axhline(target, color="0.4", linestyle="--", linewidth=0.8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("held-out accuracy")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    by_steps.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    return ReportFigure(
        "accuracy",
        "Accuracy on the way to the target",
        "Held-out accuracy at each evaluation against training time (left) and against "
        "updates (right), one line per run, one colour per configuration; the dashed line "
        "is the target. Evaluations are timed apart and left out of the time axis.",
        fig,
        section="convergence",
    )


def _draw_bars(
    ax: Axes, names: list[str], values: list[float], low: list[float], high: list[float]
) -> None:
    positions = list(range(len(names)))
    ax.barh(positions, values, xerr=[low, high], capsize=3, color="C0")
    ax.set_yticks(positions, names, fontsize="small")
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)


def time_to_accuracy_figure(summaries: Sequence[GoalSummary]) -> ReportFigure:
    """Time to accuracy (median over seeds, interval) beside training throughput."""
    shown = [s for s in summaries if s.seconds is not None]
    fig = new_figure(PANEL_W * 2, max(PANEL_H, 0.45 * len(shown) + 1.2))
    tta, rate = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    names = [f"{s.label} ({s.reached}/{s.runs})" for s in shown]
    seconds = [s.seconds for s in shown if s.seconds is not None]
    reached = [i.median if math.isfinite(i.median) else 0.0 for i in seconds]
    _draw_bars(
        tta,
        names,
        reached,
        [m - i.low if math.isfinite(i.median) else 0.0 for m, i in zip(reached, seconds,
         strict=True)],
        [min(i.high, 10 * max(reached or [1.0])) - m if math.isfinite(i.median) else 0.0
         for m, i in zip(reached, seconds, strict=True)],
    )  # fmt: skip
    for position, interval in enumerate(seconds):
        if not math.isfinite(interval.median):
            tta.text(0, position, " not reached", va="center", fontsize="small")
    tta.set_xlabel("time to accuracy (s, median over seeds)")
    throughput = [s.throughput or 0.0 for s in shown]
    _draw_bars(rate, names, throughput, [0.0] * len(shown), [0.0] * len(shown))
    rate.set_xlabel("training throughput (samples / s)")
    fig.tight_layout()
    return ReportFigure(
        "time_to_accuracy",
        "Time to accuracy beside throughput",
        "Left: training time to the target, the median over seeds with its interval (in "
        "brackets: seeds that reached it / seeds). Right: the same configurations' "
        "training throughput. Where the orders differ, convergence (more updates or "
        "samples to the target) outweighs speed.",
        fig,
        section="convergence",
    )
