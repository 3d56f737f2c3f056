"""The readable table of result rows (rich); CSV and JSON exports are ``store.export``."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from distbench.analysis.changes import Change
from distbench.analysis.convergence import GoalSummary, staleness_price, summarize_goals
from distbench.errors import UserError
from distbench.harness.noise import BUSY_CORES
from distbench.measurement.rounds import SAME
from distbench.measurement.stragglers import straggler_of
from distbench.store.export import phases_present, rounds_text, speedup_text, throughput_text
from distbench.store.result import RunResult


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


#: The results table's columns in the order they are given up when the terminal is too
#: narrow. What identifies a run and its answer (run, model, strategy, N, status,
#: samples/s, R, speedup) is never dropped, and no cell is ever cut. Memory, efficiency
#: (speedup / N) and batch go first, then the phases of a step, the least telling first,
#: then the step time.
DROPPED_FIRST = ("RSS MB", "eff.", "batch")
PHASES_DROPPED_FIRST = ("data", "update", "forward", "backward", "wait", "comm")
DROPPED_LAST = ("step ms",)


@dataclass(frozen=True)
class FittedTable:
    table: Table
    width: int
    hidden: list[str]


def results_table(
    rows: Sequence[RunResult],
    title: str = "distbench results",
    width: int | None = None,
) -> FittedTable:
    """The results as a table no wider than ``width`` (None: every column), giving up whole
    columns by priority rather than cutting any value."""
    phases = phases_present(rows)
    names = [
        "run",
        "model",
        "strategy",
        "N",
        "batch",
        "status",
        "samples/s",
        "R",
        "step ms",
        "speedup",
        "eff.",
        *[f"{phase} ms" for phase in phases],
        "RSS MB",
    ]
    cells = [_table_cells(row, phases) for row in rows]
    order = [
        *DROPPED_FIRST,
        *(f"{p} ms" for p in PHASES_DROPPED_FIRST if p in phases),
        *(f"{p} ms" for p in phases if p not in PHASES_DROPPED_FIRST),
        *DROPPED_LAST,
    ]
    left = {"run", "model", "strategy", "status", "samples/s", "speedup"}
    return fitted_table(title, names, cells, order, width, left)


def fitted_table(
    title: str,
    names: Sequence[str],
    cells: Sequence[Sequence[str]],
    drop_order: Sequence[str],
    width: int | None,
    left: set[str],
) -> FittedTable:
    """A table no wider than ``width`` (None: every column): whole columns named in
    ``drop_order`` are given up, first ones first, until it fits; no cell is ever cut or
    wrapped, so below the width of the kept columns the table is wider than asked."""
    widths = [max([len(name), *(len(line[k]) for line in cells)]) for k, name in enumerate(names)]
    shown = fit_columns(names, widths, width, drop_order)
    table = Table(title=title, title_justify="left")
    for name in names:
        if name in shown:
            table.add_column(
                name, justify="left" if name in left else "right", no_wrap=True, overflow="fold"
            )
    for line in cells:
        table.add_row(*[cell for name, cell in zip(names, line, strict=True) if name in shown])
    needed = table_width([w for name, w in zip(names, widths, strict=True) if name in shown])
    return FittedTable(table, needed, [name for name in names if name not in shown])


def table_width(widths: Sequence[int]) -> int:
    """Width of a rich table with these content widths: one space of padding on each side
    of a cell and a rule between and around the columns."""
    return sum(w + 3 for w in widths) + 1


def fit_columns(
    names: Sequence[str], widths: Sequence[int], width: int | None, drop_order: Sequence[str]
) -> set[str]:
    """The columns that fit in ``width``, dropping those of ``drop_order`` in its order
    (every other column always stays)."""
    shown = dict(zip(names, widths, strict=True))
    if width is None:
        return set(shown)
    for name in drop_order:
        if table_width(list(shown.values())) <= width:
            break
        shown.pop(name, None)
    return set(shown)


#: Characters of a failed run's error shown in its cell; the whole error follows the table.
ERROR_CELL = 40


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _table_cells(row: RunResult, phases: list[str]) -> list[str]:
    flag = " (oversubscribed)" if row.oversubscribed else ""
    # a failed run's error in full is printed under the table (``print_table``)
    throughput = throughput_text(row) if row.ok else _short(row.error or "", ERROR_CELL)
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
        rounds_text(row),
        _fmt(row.step_time_median and row.step_time_median * 1000, ".1f"),
        speedup_text(row),
        _fmt(row.efficiency, ".2f"),
        *[_fmt(breakdown.get(p, 0.0) * 1000, ".1f") for p in phases],
        _fmt(rss and rss / 2**20, ".0f"),
    ]


def print_table(
    rows: Sequence[RunResult], title: str = "distbench results", wide: bool = False
) -> None:
    """The table fitted to the terminal (``COLUMNS`` when set), or every column with
    ``wide``; the notes below it wrap to the terminal."""
    terminal = Console().width
    fitted = results_table(rows, title, None if wide else terminal)
    console = Console(width=terminal)
    print_fitted(fitted, console)
    for row in rows:
        if not row.ok and row.error and len(row.error) > ERROR_CELL:
            console.print(f"{str(row.run_id)[-6:]}: {row.status}: {row.error}", highlight=False)
    print_goals(rows, console, wide)
    if any(row.oversubscribed for row in rows):
        console.print(
            "oversubscribed: processes x threads exceed the cores of the host, "
            "so workers share cores and speedups understate a real cluster (emulated "
            "compute: the processes' own communication kept the cores busy)."
        )
    console.print(
        "samples/s: the median over rounds (R), each a fresh process group, with its "
        "interval (order statistics; '-' with one round: give --rounds). speedup = "
        "throughput / throughput of the measured one-worker run, with a bootstrap interval "
        "over both runs' rounds. Breakdown columns are per-step means over measured steps "
        "of the slowest rank, in the median round.",
        highlight=False,
    )
    if any(row.speedup_verdict == SAME for row in rows):
        console.print(
            f"= : the speedup's interval contains 1, {SAME} from the one-worker run.",
            highlight=False,
        )
    if any(r.get("busy") for row in rows for r in row.rounds):
        console.print(
            f"!k: k rounds ran beside other load (processes outside the run took more than "
            f"{BUSY_CORES:g} cores); their figures understate this machine.",
            highlight=False,
        )
    for row in rows:
        precision = row.extra.get("precision") if row.ok else None
        if precision:
            console.print(
                f"{str(row.run_id)[-6:]}: --precision {precision['target_percent']:g} %: "
                f"{precision['outcome']} after {precision['rounds']} rounds (half-width "
                f"{precision['half_width_percent']:.1f} %)",
                highlight=False,
            )
    for row in rows:
        straggler = straggler_of(row.extra) if row.ok else None
        if straggler is not None:
            console.print(f"{str(row.run_id)[-6:]}: {straggler.sentence()}", highlight=False)
    meaning = workers_meaning(rows)
    if meaning:
        console.print(meaning, highlight=False)
    if any(row.ok and row.speedup is None for row in rows):
        console.print(
            "speedup -: no measured one-worker run with the same settings (model, dataset, "
            "framework, batch, input size, classes, data directory, device, network, compute); run "
            "the sequential baseline with the same flags."
        )


def print_fitted(fitted: FittedTable, console: Console) -> None:
    """The table at its own width (wider than the terminal only when its kept columns
    are), and which columns were left out."""
    Console(width=max(console.width, fitted.width)).print(fitted.table)
    if fitted.hidden:
        console.print(
            f"not shown for want of width: {', '.join(fitted.hidden)} (--wide shows every "
            "column; --format csv or json every field)",
            highlight=False,
        )


GOAL_COLUMNS = ("configuration", "target", "seeds", "reached", "time s (interval)", "steps",
                "epochs", "final acc.", "samples/s", "eval s", "eval MB")  # fmt: skip
#: The time-to-accuracy table's columns in the order they are given up for width; the
#: configuration, its target, how often it was reached and the time it took always stay.
GOAL_DROPPED_FIRST = ("eval MB", "eval s", "samples/s", "seeds", "epochs", "final acc.", "steps")


def workers_meaning(rows: Sequence[RunResult]) -> str | None:
    """What N counts, said where it is not data-parallel workers for every row (pipeline
    stages, model partitions), and what batch is."""
    from distbench.registry import strategy_facts

    meanings: dict[str, list[str]] = {}
    for key in dict.fromkeys((row.framework or "torch", row.strategy) for row in rows):
        try:
            facts = strategy_facts(*key)
        except UserError:  # a strategy this version no longer knows
            continue
        meanings.setdefault(facts.workers_are, []).append(key[1])
    if all(m.startswith(("data-parallel", "one worker")) for m in meanings):
        return None
    parts = [f"{', '.join(dict.fromkeys(names))}: {m}" for m, names in meanings.items()]
    return (
        f"N counts — {'; '.join(parts)}. batch: the global batch of one step "
        "(`distbench list strategies` says which strategies take --batch-size per worker)."
    )


def goals_table(summaries: Sequence[GoalSummary], width: int | None = None) -> FittedTable:
    """Time to accuracy per configuration, over its seeds, fitted to ``width``."""
    cells = [_goal_cells(g) for g in summaries]
    return fitted_table(
        "time to accuracy (training time, evaluations excluded)",
        GOAL_COLUMNS,
        cells,
        GOAL_DROPPED_FIRST,
        width,
        {"configuration"},
    )


def _goal_cells(g: GoalSummary) -> list[str]:
    return [
        g.label,
        _fmt(g.target, "g"),
        ",".join(map(str, g.seeds)),
        "-" if g.target is None else f"{g.reached}/{g.runs}",
        _interval_text(g),
        _fmt(g.steps, ".0f"),
        _fmt(g.epochs, ".2f"),
        _fmt(g.final_accuracy, ".3f"),
        _fmt(g.throughput, ".1f"),
        _fmt(g.eval_s, ".2f"),
        _fmt(g.eval_peak_rss_bytes and g.eval_peak_rss_bytes / 2**20, ".0f"),
    ]


def _interval_text(g: GoalSummary) -> str:
    if g.seconds is None:
        return "-"  # trained for --epochs, no target
    if g.seconds.median == float("inf"):
        return "not reached"
    if g.seconds.n == 1:
        return f"{g.seconds.median:.3g}"
    high = "never" if g.seconds.high == float("inf") else f"{g.seconds.high:.3g}"
    return f"{g.seconds.median:.3g} ({g.seconds.low:.3g}-{high})"


def print_goals(rows: Sequence[RunResult], console: Console, wide: bool = False) -> None:
    """The time-to-accuracy table, fitted to the terminal unless ``wide``, and what
    staleness cost the asynchronous runs."""
    summaries = summarize_goals(list(rows))
    if not summaries:
        return
    print_fitted(goals_table(summaries, None if wide else console.width), console)
    console.print(
        "time s: training time to the target, the median over seeds with its interval "
        "(order statistics; a seed that never reached it counts as never). steps: updates "
        "(asynchronous: every worker's; pipeline-pipedream: global batches, each "
        "--microbatches updates); epochs: samples trained to the target / training "
        "split (without a target: the epochs trained). eval s / MB: all evaluations' time "
        "and their peak resident memory, measured apart from training.",
        highlight=False,
    )
    for row in rows:
        if row.strategy.endswith("async"):
            price = staleness_price(row, list(rows))
            if price is not None:
                console.print(f"{str(row.run_id)[-6:]}: {price.sentence()}", highlight=False)


def print_changes(changes: Sequence[Change], a: str, b: str) -> None:
    """The ``results --compare`` table: B over A, configuration by configuration."""
    table = Table(title=f"B = {b} over A = {a}", title_justify="left")
    for name in ("configuration", "A samples/s", "B samples/s", "B / A (interval)", "verdict"):
        table.add_column(name)
    for c in changes:
        interval = (
            f" ({c.ratio_low:.3f}-{c.ratio_high:.3f})"
            if c.ratio_low is not None and c.ratio_high is not None
            else ""
        )
        table.add_row(
            c.config,
            f"{c.a_throughput:.1f}",
            f"{c.b_throughput:.1f}",
            f"{c.ratio:.3f}{interval}",
            c.verdict,
        )
    console = Console(width=max(Console().width, 120))
    console.print(table)
    console.print(
        "B / A: ratio of median throughputs, with a bootstrap interval over both runs' "
        f"rounds; faster or slower only when it excludes 1, else {SAME}.",
        highlight=False,
    )


def changes_csv(changes: Sequence[Change]) -> str:
    out = io.StringIO()
    names = list(changes[0].to_dict()) if changes else []
    writer = csv.DictWriter(out, fieldnames=names)
    writer.writeheader()
    for c in changes:
        writer.writerow(c.to_dict())
    return out.getvalue()
