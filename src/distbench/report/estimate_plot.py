"""Speedup-versus-workers figure for analytic estimates (matplotlib, Agg canvas).

Where to start: ``plot_speedup`` takes one or more estimate tables (strategy name ->
rows) and writes a PNG with the ideal line ``S = N``, each estimate as a line, and the
best/worst band shaded where the model has one. It draws on an explicit Agg canvas
rather than through pyplot, so it neither needs a display nor touches global state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from distbench.predict.estimate import EstimateRow


def plot_speedup(
    series: Mapping[str, Sequence[EstimateRow]],
    path: str | Path,
    title: str | None = None,
) -> Path:
    """Write the figure to ``path`` (parent folders created) and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(6.4, 4.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    max_n = max((row.workers for rows in series.values() for row in rows), default=1)
    ax.plot([1, max_n], [1, max_n], linestyle="--", color="grey", label="ideal (S = N)")
    for name, rows in series.items():
        _draw_series(ax, name, sorted(rows, key=lambda r: r.workers))
    ax.axhline(1.0, color="black", linewidth=0.6)
    ax.set_xlabel("workers N")
    ax.set_ylabel("speedup S = D·t_grad / t_parallel")
    ax.set_xticks(range(1, max_n + 1))
    ax.set_title(title or "Estimated speedup")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    return out


def _draw_series(ax: Axes, name: str, rows: Sequence[EstimateRow]) -> None:
    workers = [row.workers for row in rows]
    (line,) = ax.plot(
        workers, [row.speedup_estimate for row in rows], marker="o", label=f"{name} estimate"
    )
    best = [row.speedup_best for row in rows]
    worst = [row.speedup_worst for row in rows]
    if all(v is not None for v in best + worst) and len(rows) > 1:
        ax.fill_between(
            workers,
            [float(v or 0.0) for v in worst],
            [float(v or 0.0) for v in best],
            color=line.get_color(),
            alpha=0.2,
            label=f"{name} best..worst",
        )
