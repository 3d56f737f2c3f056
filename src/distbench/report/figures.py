"""The report's figures, drawn with matplotlib on explicit Agg canvases (no pyplot, no
display, no global state).

Where to start: ``report_figures(rows)`` returns every figure for a selection of stored
rows (with speedup from ``ResultStore.with_scaling``) as ``ReportFigure`` objects; each
function below draws one kind. Runs are grouped into one panel per (model, dataset),
because step times of different models differ by orders of magnitude. In the scaling
figures, a line is a (strategy, framework) pair; when the same configuration was run more
than once, the most recent run is drawn. ``save_figure`` writes PNG and SVG.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from distbench.measurement.timer import PHASES
from distbench.store.result import RunResult

Row = RunResult
LegendLoc = Literal["best", "lower right"]
PHASE_COLORS = {
    "data": "#8c8c8c",
    "forward": "#4c72b0",
    "backward": "#dd8452",
    "comm": "#c44e52",
    "pull": "#937860",
    "push": "#da8bc3",
    "wait": "#d4c35a",
    "update": "#55a868",
}
EXTRA_COLORS = ("#64b5cd", "#8172b3", "#ccb974", "#4d4d4d")
MIB = 2**20
PANEL_W, PANEL_H = 5.2, 3.6
DPI = 110
OPERATORS_SHOWN = 10


@dataclass
class ReportFigure:
    """A drawn figure and what the report says about it."""

    stem: str  # file name without extension
    title: str
    caption: str
    figure: Figure
    #: The report section it answers (``report/html.py``'s ``SECTIONS``).
    section: str = "scaling"


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def panel_grid(
    count: int, width: float = PANEL_W, height: float = PANEL_H
) -> tuple[Figure, list[Axes]]:
    """A figure with ``count`` panels, at most three per row."""
    cols = min(3, max(1, count))
    rows = math.ceil(max(1, count) / cols)
    fig = new_figure(width * cols, height * rows)
    axes = [fig.add_subplot(rows, cols, index + 1) for index in range(max(1, count))]
    return fig, axes


def group_rows(rows: Sequence[Row]) -> dict[str, list[Row]]:
    """Rows by panel title "model on dataset", in first-seen order."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(f"{row.model} on {row.dataset}", []).append(row)
    return groups


def series_key(row: Row, frameworks: int) -> str:
    """A line of its own per strategy and the server settings that change it (sharded
    servers, the semaphore), and per framework where several are drawn."""
    name = row.strategy
    if row.config.get("servers") == "sharded":
        name += " sharded"
    if row.config.get("ps_semaphore"):
        name += " semaphore"
    return name if frameworks <= 1 else f"{name} ({row.framework})"


def latest_by_workers(rows: Sequence[Row]) -> dict[str, dict[int, Row]]:
    """Per line (strategy, framework): the most recent run at each worker count."""
    frameworks = len({row.framework for row in rows})
    lines: dict[str, dict[int, Row]] = {}
    for row in sorted(rows, key=lambda r: (r.created_at, r.run_id)):
        lines.setdefault(series_key(row, frameworks), {})[int(row.workers)] = row
    return lines


def phases_present(rows: Sequence[Row]) -> list[str]:
    seen = {p for row in rows for p, v in (row.breakdown or {}).items() if v}
    return [p for p in PHASES if p in seen] + sorted(seen - set(PHASES))


def phase_color(phase: str) -> str:
    """Fixed colours for the canonical phases; a stable pick for any other name."""
    return PHASE_COLORS.get(phase, EXTRA_COLORS[sum(map(ord, phase)) % len(EXTRA_COLORS)])


def bar_label(row: Row, frameworks: int, duplicates: bool) -> str:
    label = f"{row.strategy}\n×{row.workers}"
    if frameworks > 1:
        label += f"\n{row.framework}"
    return label + (f"\n…{row.run_id[-4:]}" if duplicates else "")


def _draw_breakdown(ax: Axes, title: str, rows: Sequence[Row], phases: Sequence[str]) -> None:
    rows = sorted(
        rows,
        key=lambda r: (
            r.strategy != "sequential",
            r.strategy,
            r.framework,
            r.workers,
            r.created_at,
        ),
    )
    keys = [(r.strategy, r.framework, r.workers) for r in rows]
    duplicates = len(set(keys)) < len(keys)
    frameworks = len({r.framework for r in rows})
    positions = list(range(len(rows)))
    bottom = [0.0] * len(rows)
    for phase in phases:
        values = [(r.breakdown or {}).get(phase, 0.0) * 1e3 for r in rows]
        ax.bar(positions, values, bottom=bottom, color=phase_color(phase), label=phase, width=0.7)
        _hatch_unseparated(ax, rows, phase, values, bottom)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_xticks(positions, [bar_label(r, frameworks, duplicates) for r in rows], fontsize="small")
    ax.set_ylabel("ms per step")
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)


UNSEPARATED_LABEL = "several phases"


def _hatch_unseparated(
    ax: Axes, rows: Sequence[Row], phase: str, values: Sequence[float], bottom: Sequence[float]
) -> None:
    """Hatch the segments where a framework could not separate phases (TensorFlow's
    ``backward`` includes its forward pass: ``extra.unseparated_phases``)."""
    marked = [
        i
        for i, r in enumerate(rows)
        if phase in ((r.extra or {}).get("unseparated_phases") or {}) and values[i]
    ]
    if not marked:
        return
    labelled = UNSEPARATED_LABEL in ax.get_legend_handles_labels()[1]
    ax.bar(
        [float(i) for i in marked],
        [values[i] for i in marked],
        bottom=[bottom[i] for i in marked],
        width=0.7,
        facecolor="none",
        edgecolor="0.15",
        hatch="//",
        linewidth=0.0,
        label=None if labelled else UNSEPARATED_LABEL,
    )


def breakdown_figure(rows: Sequence[Row]) -> ReportFigure:
    groups = group_rows(rows)
    phases = phases_present(rows)
    widest = max(len(members) for members in groups.values())
    fig, axes = panel_grid(len(groups), width=max(PANEL_W, 0.9 * widest + 1.5))
    for ax, (title, members) in zip(axes, groups.items(), strict=True):
        _draw_breakdown(ax, title, members, phases)
    legend: dict[str, Any] = {}
    for ax in axes:  # every panel's entries once: the hatch may be in any of them
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    hatch = legend.pop(UNSEPARATED_LABEL, None)
    labels = list(legend)[::-1] + ([UNSEPARATED_LABEL] if hatch else [])
    handles = list(legend.values())[::-1] + ([hatch] if hatch else [])
    fig.legend(
        handles, labels, loc="center right", fontsize="small", title="phase"
    )  # reversed: top of the legend = top of the stack
    fig.suptitle("Per-step time breakdown")
    margin = (1.35 if hatch else 1.0) / fig.get_figwidth()  # room for the legend
    fig.tight_layout(rect=(0.0, 0.0, 1.0 - margin, 1.0))
    return ReportFigure(
        "breakdown",
        "Where a step's time goes",
        (
            "Stacked bars, one per run (strategy × workers, framework where several): the mean "
            "time per training step of the slowest worker, split into phases. comm is "
            "communication left exposed after backward; pull/push are parameter-server transfers; "
            "wait is time blocked on other workers. A hatched segment holds several phases the "
            "framework could not time apart (TensorFlow's backward includes its forward pass; "
            "each run's extra.unseparated_phases says which). Drawn per step, as study 002 "
            "draws per training run."
        ),
        fig,
        section="time",
    )


def _scaling_panels(
    rows: Sequence[Row],
    title: str,
    draw: Callable[[Axes, str, dict[int, Row]], None],
    ylabel: str,
    from_zero: bool = False,
    legend_loc: LegendLoc = "best",
) -> Figure:
    groups = group_rows(rows)
    fig, axes = panel_grid(len(groups))
    for ax, (group, members) in zip(axes, groups.items(), strict=True):
        lines = latest_by_workers(members)
        for name, points in lines.items():
            draw(ax, name, points)
        counts = sorted({int(r.workers) for r in members})
        ax.set_xticks(counts)
        ax.set_xlabel("workers")
        ax.set_ylabel(ylabel)
        ax.set_title(group)
        ax.grid(True, alpha=0.3)
        if from_zero:
            ax.set_ylim(bottom=0)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc=legend_loc, fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _draw_throughput(ax: Axes, name: str, points: dict[int, Row]) -> None:
    workers = sorted(points)
    med = [points[n].throughput_median or 0.0 for n in workers]
    low = [m - (points[n].throughput_ci_low or m) for n, m in zip(workers, med, strict=True)]
    high = [(points[n].throughput_ci_high or m) - m for n, m in zip(workers, med, strict=True)]
    ax.errorbar(workers, med, yerr=[low, high], marker="o", capsize=3, label=name)


def throughput_figure(rows: Sequence[Row]) -> ReportFigure:
    fig = _scaling_panels(
        rows,
        "Throughput against workers",
        _draw_throughput,
        "samples / s (median, 95% CI)",
        from_zero=True,
    )
    return ReportFigure(
        "throughput",
        "Throughput",
        (
            "Median training throughput of all workers together, with its 95% confidence "
            "interval, one line per strategy."
        ),
        fig,
    )


def _draw_memory(ax: Axes, name: str, points: dict[int, Row]) -> None:
    workers = sorted(points)
    rss = [(points[n].peak_rss_bytes or 0) / MIB for n in workers]
    (line,) = ax.plot(workers, rss, marker="o", label=f"{name} RSS")
    for key, style in (("allocated_peak_bytes", "--"), ("reserved_peak_bytes", ":")):
        values = [getattr(points[n], key) for n in workers]
        if any(v is not None for v in values):
            ax.plot(
                workers,
                [(v or 0) / MIB for v in values],
                linestyle=style,
                color=line.get_color(),
                label=f"{name} {key.split('_')[0]}",
            )


def memory_figure(rows: Sequence[Row]) -> ReportFigure:
    fig = _scaling_panels(
        rows,
        "Peak memory against workers",
        _draw_memory,
        "MiB per process (max over ranks)",
        from_zero=True,
        legend_loc="lower right",
    )
    return ReportFigure(
        "memory",
        "Peak memory",
        (
            "Peak resident set size of the largest process of each run (solid); on GPUs also the "
            "allocator's peak allocated (dashed) and reserved (dotted) memory. Every process "
            "holds the whole model under data parallelism, so the per-process peak stays flat "
            "while the total grows with the workers."
        ),
        fig,
        section="resources",
    )


def _draw_speedup(ax: Axes, name: str, points: dict[int, Row]) -> None:
    """Measured speedups with their intervals over rounds (none with one round); points
    measured with emulated compute are drawn hollow."""
    workers = [n for n in sorted(points) if points[n].speedup is not None]
    if not workers:
        return
    values = [points[n].speedup or 0.0 for n in workers]
    intervals = [points[n].speedup_ci or [v, v] for n, v in zip(workers, values, strict=True)]
    below = [v - ci[0] for v, ci in zip(values, intervals, strict=True)]
    above = [ci[1] - v for v, ci in zip(values, intervals, strict=True)]
    line = ax.errorbar(workers, values, yerr=[below, above], marker="o", capsize=3, label=name)
    emulated = [i for i, n in enumerate(workers) if _emulated(points[n])]
    if emulated:
        ax.plot(
            [workers[i] for i in emulated],
            [values[i] for i in emulated],
            "o",
            markerfacecolor="white",
            color=line.lines[0].get_color(),
            zorder=3,
        )


def _emulated(row: Row) -> bool:
    return str((row.config or {}).get("compute", "real")) != "real"


#: How each prediction engine's line is drawn beside the measured points.
ENGINE_STYLES = {"formulas": (":", "x"), "simulator": ("-.", "+")}


def _draw_predicted(
    ax: Axes, members: Sequence[Row], predictions: Mapping[str, Mapping[str, float]]
) -> None:
    """Per measured line (strategy), each engine's predicted speedup at the measured Ns."""
    for name, points in latest_by_workers(members).items():
        for engine, (style, marker) in ENGINE_STYLES.items():
            predicted = [
                (n, predictions[row.run_id][engine])
                for n, row in sorted(points.items())
                if engine in predictions.get(row.run_id, {})
            ]
            if predicted:
                ax.plot(
                    [n for n, _ in predicted],
                    [v for _, v in predicted],
                    linestyle=style,
                    marker=marker,
                    label=f"{name}: {engine}",
                )


def _say_no_baseline(ax: Axes) -> None:
    """A panel with nothing measured to draw says why, instead of showing a bare line."""
    ax.text(
        0.5,
        0.55,
        "no speedup: this workload has no\nmeasured one-worker run at this\nper-worker batch "
        "(run it with --workers 1)",
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize="small",
        color="#a33",
        bbox={"facecolor": "white", "edgecolor": "#a33", "boxstyle": "round"},
    )


def _keep_speedups_in_view(ax: Axes, members: Sequence[Row], top: int) -> None:
    """The y-axis spans the ideal line and the measured speedups; an interval far wider
    (a noisy baseline) is cut at the edge rather than squashing every point to the floor."""
    measured = [r.speedup for r in members if r.speedup is not None]
    ax.set_ylim(0, max([1.25 * top, *(1.25 * v for v in measured)]))


def speedup_figure(
    rows: Sequence[Row], predictions: Mapping[str, Mapping[str, float]] | None = None
) -> ReportFigure:
    """Measured speedup per strategy (hollow: emulated compute), the ideal ``S = N`` and,
    where given, each engine's predicted speedup beside it (``predictions``: run id ->
    engine -> speedup, ``workflows.validate.predicted_speedups``)."""
    fig = _scaling_panels(
        rows, "Speedup against workers", _draw_speedup, "speedup over the 1-worker baseline"
    )
    top = max(int(r.workers) for r in rows)
    for ax, members in zip(fig.axes, group_rows(rows).values(), strict=False):
        if all(r.speedup is None for r in members):
            _say_no_baseline(ax)
        _keep_speedups_in_view(ax, members, top)
        ax.plot([1, top], [1, top], linestyle="--", color="grey", label="ideal (S = N)")
        if predictions:
            _draw_predicted(ax, members, predictions)
        ax.legend(loc="best", fontsize="x-small")
    return ReportFigure(
        "speedup",
        "Speedup",
        (
            "Throughput divided by that of the measured one-worker run of the same model, "
            "dataset, framework and per-worker batch (a sequential run when one exists); the "
            "dashed line is ideal linear speedup. Bars: bootstrap interval over both runs' "
            "rounds (cut at the panel's edge where it is far wider than the points); a bar that "
            "crosses 1 is no measurable difference from one worker. "
            "Hollow points were measured with emulated compute (docs/emulation.md). Dotted "
            "(x): the formulas' prediction; dash-dotted (+): the simulator's — both from the "
            "workload's stored profile alone, never from the run itself. Above the line "
            "usually means the baseline was slowed, e.g. by sharing cores. A panel without "
            "a measured one-worker run says so."
        ),
        fig,
    )


def operator_table(row: Row) -> dict[str, float]:
    """Self seconds per profiled step keyed by "phase: operator"."""
    phases = (row.operators or {}).get("phases") or {}
    return {
        f"{phase}: {op['name']}": op["self_s"]
        for phase, entry in phases.items()
        for op in entry.get("ops", [])
    }


def _draw_operators(ax: Axes, title: str, rows: Sequence[Row]) -> None:
    tables = [operator_table(r) for r in rows]
    names = sorted(
        {n for t in tables for n in t}, key=lambda n: -max(t.get(n, 0.0) for t in tables)
    )
    names = names[:OPERATORS_SHOWN][::-1]
    height = 0.8 / len(rows)
    for index, (row, table) in enumerate(zip(rows, tables, strict=True)):
        y = [i + (len(rows) - 1 - index) * height for i in range(len(names))]  # 1st on top
        ax.barh(
            y,
            [table.get(n, 0.0) * 1e3 for n in names],
            height=height,
            label=f"{row.strategy} ×{row.workers} …{row.run_id[-4:]}",
        )
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(names))], names, fontsize="x-small")
    ax.set_xlabel("self time, ms per profiled step")
    ax.set_title(title)
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize="x-small")


def operators_figure(rows: Sequence[Row]) -> ReportFigure | None:
    profiled = [r for r in rows if r.operators]
    if not profiled:
        return None
    groups = group_rows(profiled)
    fig, axes = panel_grid(len(groups), width=7.0, height=4.8)
    for ax, (title, members) in zip(axes, groups.items(), strict=True):
        _draw_operators(ax, title, members)
    fig.suptitle("Top operators of profiled runs (--profile-ops)")
    fig.tight_layout()
    return ReportFigure(
        "operators",
        "Operators",
        (
            f"The {OPERATORS_SHOWN} operators with the most self CPU time in any profiled run, "
            "labelled by the phase of the step they ran in, per profiled step of the governing "
            "rank. Chrome traces of every rank (trace_rank*.json in the run directory) open in "
            "https://ui.perfetto.dev."
        ),
        fig,
        section="why",
    )


def _rates(times: Sequence[float], counts: Sequence[float]) -> tuple[list[float], list[float]]:
    """Per-interval rate (MB/s) from cumulative byte counts."""
    out_t, out_v = [], []
    for i in range(1, len(times)):
        span = times[i] - times[i - 1]
        if span > 0:
            out_t.append(times[i])
            out_v.append((counts[i] - counts[i - 1]) / span / 1e6)
    return out_t, out_v


#: Small multiples of resource timelines: at most this many runs per row of cells.
RESOURCE_COLUMNS = 4


def _host_share(series: dict[str, Any], cores: int) -> list[float]:
    """A process's CPU as a share of the whole host (100 = every core busy)."""
    return [v / cores for v in series["cpu_percent"]]


def _draw_resources(axes: Sequence[Axes], row: Row) -> None:
    """One run's cell: host CPU on a fixed 0-100 % axis (each rank's share, and the host's
    total), each rank's resident memory, the host's network traffic; the x-axis spans the
    measured steps with a margin as long as they are on each side."""
    resources = row.resources or {}
    ranks = resources.get("ranks", {})
    cores = int((row.env or {}).get("logical_cores") or 1)
    for rank, series in sorted(ranks.items(), key=lambda item: int(item[0])):
        axes[0].plot(series["t"], _host_share(series, cores), linewidth=1, label=f"rank {rank}")
        axes[1].plot(series["t"], [v / MIB for v in series["rss_bytes"]], linewidth=1)
    first = ranks[min(ranks, key=int)]
    if first.get("system_cpu_percent"):
        axes[0].plot(first["t"], first["system_cpu_percent"], color="0.4", linestyle=":",
                     linewidth=1, label="host")  # fmt: skip
    for key, style in (("net_sent_bytes", "-"), ("net_recv_bytes", "--")):
        t, v = _rates(first["t"], first.get(key) or [0] * len(first["t"]))
        axes[2].plot(t, v, linestyle=style, color="0.3", linewidth=1, label=key.split("_")[1])
    axes[0].set_ylim(0, 100)
    axes[1].set_ylim(bottom=0)
    axes[2].set_ylim(bottom=0)
    window = resources.get("window")
    last = max((series["t"][-1] for series in ranks.values() if series["t"]), default=0.0)
    for ax in axes:
        if window:
            ax.axvspan(window[0], window[1], color="#55a868", alpha=0.15)
            margin = max(window[1] - window[0], 0.5)
            ax.set_xlim(max(0.0, window[0] - margin), min(window[1] + margin, max(last, window[1])))
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize="x-small")
    axes[0].set_title(
        f"{row.model} {row.strategy} ×{row.workers}"
        + (f" ({row.framework})" if row.framework != "torch" else "")
        + f"\n…{row.run_id[-6:]}",
        fontsize="small",
    )
    axes[0].legend(loc="lower left", fontsize="xx-small", ncols=3)


def resources_figure(rows: Sequence[Row]) -> ReportFigure | None:
    """Every run's resources as small multiples: one column of three panels per run."""
    shown = [r for r in rows if r.resources and r.resources.get("ranks")]
    if not shown:
        return None
    cols = min(RESOURCE_COLUMNS, len(shown))
    grid_rows = math.ceil(len(shown) / cols)
    fig = new_figure(3.3 * cols, 4.4 * grid_rows)
    for index, row in enumerate(shown):
        r, c = divmod(index, cols)
        axes = [fig.add_subplot(grid_rows * 3, cols, (r * 3 + k) * cols + c + 1) for k in range(3)]
        _draw_resources(axes, row)
        if c == 0:
            for ax, label in zip(axes, ("CPU % of host", "RSS MiB", "net MB/s"), strict=True):
                ax.set_ylabel(label, fontsize="x-small")
    fig.tight_layout(h_pad=0.3)
    return ReportFigure(
        "resources",
        "Resources of every run",
        (
            "One column per run. Top: each rank's CPU as a share of the whole host "
            "(100 % = every core busy) and the host's total (dotted), on a fixed 0-100 % "
            "axis; middle: each rank's resident memory; bottom: the host's network traffic "
            "(system-wide counters, loopback included, where gloo traffic goes on one host), "
            "sent (solid) and received (dashed). Sampled every 0.25 s; green: the measured "
            "steps, shown with a margin as long as they are on each side (start-up and "
            "shutdown outside it are cut)."
        ),
        fig,
        section="resources",
    )


def report_figures(
    rows: Sequence[Row], predictions: Mapping[str, Mapping[str, float]] | None = None
) -> list[ReportFigure]:
    """Every figure for ``ok`` rows: breakdown, throughput, speedup, memory, operators,
    the resources of every run as small multiples."""
    figures = [
        breakdown_figure(rows),
        throughput_figure(rows),
        speedup_figure(rows, predictions),
        memory_figure(rows),
    ]
    optional = (operators_figure(rows), resources_figure(rows))
    figures.extend(f for f in optional if f is not None)
    return figures


def save_figure(figure: ReportFigure, out_dir: Path) -> tuple[Path, Path, bytes]:
    """Write ``stem.png`` and ``stem.svg``; return both paths and the PNG bytes."""
    buffer = io.BytesIO()
    figure.figure.savefig(buffer, format="png", dpi=DPI)
    png = out_dir / f"{figure.stem}.png"
    png.write_bytes(buffer.getvalue())
    svg = out_dir / f"{figure.stem}.svg"
    figure.figure.savefig(svg, format="svg")
    return png, svg, buffer.getvalue()


def thesis_figures(points: Sequence[Any]) -> list[ReportFigure]:
    """The thesis' figures 6.1-6.11: per network and mode, measured speedup against N for
    the central and the sharded server, beside the thesis' estimate (dashed).
    ``points``: ``workflows.thesis.ThesisPoint``s."""
    panels: dict[tuple[str, str], list[Any]] = {}
    for point in points:
        panels.setdefault((point.model, point.mode), []).append(point)
    figures = []
    for (model, mode), group in sorted(panels.items()):
        fig = new_figure(PANEL_W, PANEL_H)
        ax = fig.add_subplot(1, 1, 1)
        for index, server in enumerate(("central", "sharded")):
            mine = sorted((p for p in group if p.server == server), key=lambda p: p.workers)
            if not mine:
                continue
            color = EXTRA_COLORS[index]
            measured = [p for p in mine if p.measured is not None]
            ax.plot(
                [p.workers for p in measured],
                [p.measured for p in measured],
                "o-",
                color=color,
                label=f"{server}: measured",
            )
            ax.plot(
                [p.workers for p in mine],
                [p.thesis_estimate for p in mine],
                "--",
                color=color,
                label=f"{server}: thesis estimate",
            )
        ax.axhline(1.0, color="#999999", linewidth=0.8)
        ax.set_xlabel("workers N")
        ax.set_ylabel("speedup")
        ax.set_title(f"{model}, {mode}")
        ax.legend(loc="best", fontsize="small")
        fig.tight_layout()
        figures.append(
            ReportFigure(
                stem=f"thesis-{model}-{mode}",
                title=f"{model} {mode}: speedup against N",
                caption="Measured on emulated hosts (1 Gbit/s each, compute = the thesis' "
                "t_grad) beside the thesis' estimate from its table 6.1.",
                figure=fig,
            )
        )
    return figures
