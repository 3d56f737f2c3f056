"""The readable table of result rows (rich); CSV and JSON exports are ``store.export``."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from distbench.measurement.stragglers import straggler_of
from distbench.store.export import phases_present
from distbench.store.result import RunResult


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def results_table(rows: Sequence[RunResult], title: str = "distbench results") -> Table:
    phases = phases_present(rows)
    table = Table(title=title, title_justify="left")
    for name in (
        "run",
        "model",
        "strategy",
        "N",
        "batch",
        "status",
        "samples/s (95% CI)",
        "step ms",
        "speedup",
        "eff.",
    ):
        table.add_column(name, justify="right" if name in ("N", "batch") else "left")
    for phase in phases:
        table.add_column(f"{phase} ms", justify="right")
    table.add_column("RSS MB", justify="right")
    for row in rows:
        table.add_row(*_table_cells(row, phases))
    return table


def _table_cells(row: RunResult, phases: list[str]) -> list[str]:
    flag = " (oversubscribed)" if row.oversubscribed else ""
    throughput = (
        f"{row.throughput_median:.1f} ({row.throughput_ci_low:.1f}-{row.throughput_ci_high:.1f})"
        if row.ok
        else (row.error or "")[:60]
    )
    breakdown = row.breakdown
    rss = row.peak_rss_bytes
    # Another framework's runs read "sync (tensorflow)" beside PyTorch's own.
    framework = row.framework or "torch"
    strategy = row.strategy if framework == "torch" else f"{row.strategy} ({framework})"
    return [
        str(row.run_id)[-6:],
        row.model,
        strategy,
        str(row.workers),
        str(row.global_batch),
        row.status + flag,
        throughput,
        _fmt(row.step_time_median and row.step_time_median * 1000, ".1f"),
        _fmt(row.speedup, ".2f"),
        _fmt(row.efficiency, ".2f"),
        *[_fmt(breakdown.get(p, 0.0) * 1000, ".1f") for p in phases],
        _fmt(rss and rss / 2**20, ".0f"),
    ]


def print_table(rows: Sequence[RunResult], title: str = "distbench results") -> None:
    console = Console(width=max(Console().width, 160))
    console.print(results_table(rows, title))
    if any(row.oversubscribed for row in rows):
        console.print(
            "oversubscribed: processes x threads exceed the cores of the host, "
            "so workers share cores and speedups understate a real cluster."
        )
    console.print(
        "Breakdown columns are per-step means over measured steps of the slowest "
        "rank; speedup = throughput / throughput of the measured one-worker run."
    )
    for row in rows:
        straggler = straggler_of(row.extra) if row.ok else None
        if straggler is not None:
            console.print(f"{str(row.run_id)[-6:]}: {straggler.sentence()}", highlight=False)
    if any(row.ok and row.speedup is None for row in rows):
        console.print(
            "speedup -: no measured one-worker run with the same settings (model, dataset, "
            "framework, batch, input size, classes, data directory, device, network); run "
            "the sequential baseline with the same flags."
        )
