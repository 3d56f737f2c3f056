"""The HTML report: one self-contained file plus every figure as PNG and SVG.

Where to start: ``build_report(db, out_dir, ...)`` selects runs from the results store,
draws ``figures.report_figures``, writes ``out_dir/report.html`` (figures embedded as
base64 PNG, so the file can be mailed or attached to a CI job) and returns a
``ReportResult``. The page follows a reader's questions in order (``SECTIONS``): which
configuration is fastest (``analysis.ranking``), what the runs say
(``analysis.explain.suite_findings``, the same logic as ``distbench explain``), how it
scales, where the time goes, why, training to a target, resources, and every run. An
empty selection is a ``UserError``.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from string import Template
from typing import Any

from distbench.analysis.explain import Finding, suite_findings
from distbench.analysis.ranking import FASTEST, RankedWorkload, rank_configurations
from distbench.errors import UserError
from distbench.measurement.rounds import SAME
from distbench.measurement.stragglers import straggler_of
from distbench.report.convergence_plot import convergence_figures
from distbench.report.figures import DPI, ReportFigure, Row, report_figures, save_figure
from distbench.store import open_store
from distbench.store.export import rounds_text, speedup_text, throughput_text


@dataclass
class ReportResult:
    html: Path
    files: list[Path] = field(default_factory=list)  # every PNG and SVG written
    runs: int = 0
    failed: int = 0


@dataclass(frozen=True)
class Selection:
    """Filters; ``None`` or an empty list means "any"."""

    models: Sequence[str] | None = None
    datasets: Sequence[str] | None = None
    strategies: Sequence[str] | None = None

    def matches(self, row: Row) -> bool:
        return all(
            not wanted or getattr(row, key) in wanted
            for key, wanted in (
                ("model", self.models),
                ("dataset", self.datasets),
                ("strategy", self.strategies),
            )
        )

    def describe(self) -> str:
        parts = [
            f"{name} {','.join(values)}"
            for name, values in (
                ("--model", self.models),
                ("--dataset", self.datasets),
                ("--strategy", self.strategies),
            )
            if values
        ]
        return " ".join(parts) or "all runs"


def select_rows(db: str | Path, selection: Selection) -> list[Row]:
    """Matching rows with speedup and efficiency; a missing DB or no match is a UserError."""
    if not Path(db).is_file():
        raise UserError(f"no results database at {db} (run `distbench run` first)")
    store = open_store(db)
    try:
        rows = store.with_scaling([r for r in store.query() if selection.matches(r)])
    finally:
        store.close()
    if not rows:
        raise UserError(f"no runs match {selection.describe()} in {db}")
    if not any(r.status == "ok" for r in rows):
        raise UserError(
            f"none of the {len(rows)} runs matching {selection.describe()} "
            "succeeded; nothing to plot (see `distbench results --status failed`)"
        )
    return rows


def build_report(
    db: str | Path,
    out_dir: str | Path,
    selection: Selection | None = None,
    predict: Callable[[list[Row]], Mapping[str, Mapping[str, float]]] | None = None,
) -> ReportResult:
    """The report of the runs ``selection`` picks; ``predict`` gives each run's predicted
    speedups by engine (``workflows.validate.predicted_speedups``), drawn beside them."""
    selection = selection or Selection()
    rows = select_rows(db, selection)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    ok = [r for r in rows if r.status == "ok"]
    result = ReportResult(html=out / "report.html", runs=len(rows), failed=len(rows) - len(ok))
    by_section: dict[str, list[str]] = {}
    figures = report_figures(ok, predict(ok) if predict else None) + convergence_figures(ok)
    for figure in figures:
        png, svg, data = save_figure(figure, out)
        result.files += [png, svg]
        by_section.setdefault(figure.section, []).append(
            figure_html(figure, data, png.name, svg.name)
        )
    meta = {
        "db": str(db),
        "selection": selection.describe(),
        "runs": len(rows),
        "failed": result.failed,
    }
    result.html.write_text(
        render_page(rows, by_section, suite_findings(rows), meta), encoding="utf-8"
    )
    return result


def figure_html(figure: ReportFigure, png: bytes, png_name: str, svg_name: str) -> str:
    encoded = base64.b64encode(png).decode("ascii")
    width = int(figure.figure.get_figwidth() * DPI)  # 1:1 on a normal screen
    return (
        f'<figure id="{html.escape(figure.stem)}"><h3>{html.escape(figure.title)}</h3>'
        f'<img src="data:image/png;base64,{encoded}" alt="{html.escape(figure.title)}" '
        f'style="max-width:min(100%, {width}px)">'
        f"<figcaption>{html.escape(figure.caption)} "
        f'Files: <a href="{html.escape(png_name)}">PNG</a>, '
        f'<a href="{html.escape(svg_name)}">SVG</a>.</figcaption></figure>'
    )


def _fmt(value: Any, pattern: str, scale: float = 1.0) -> str:
    return "–" if value is None else format(value * scale, pattern)


RUN_COLUMNS = (
    "run",
    "model",
    "dataset",
    "strategy",
    "framework",
    "N",
    "threads",
    "batch",
    "samples/s (interval over rounds)",
    "rounds",
    "step ms",
    "speedup (interval)",
    "eff.",
    "peak RSS MiB",
    "profiled",
    "notes",
)


def run_cells(row: Row) -> list[str]:
    notes = []
    if row.oversubscribed:
        notes.append("oversubscribed")
    if row.status != "ok":
        notes.append(f"failed: {row.error or ''}")
    straggler = straggler_of(row.extra) if row.ok else None
    if straggler is not None:
        notes.append(straggler.sentence())
    if row.speedup_verdict == SAME:
        notes.append(f"speedup: {SAME} (its interval contains 1)")
    busy = sum(1 for r in row.rounds if r.get("busy"))
    if busy:
        notes.append(f"{busy} round(s) ran beside other load")
    return [
        row.run_id,
        row.model,
        row.dataset,
        row.strategy,
        row.framework,
        str(row.workers),
        str(row.threads_per_worker or "–"),
        str(row.global_batch or "–"),
        throughput_text(row) if row.ok else "–",
        rounds_text(row),
        _fmt(row.step_time_median, ".1f", 1e3),
        speedup_text(row),
        _fmt(row.efficiency, ".2f"),
        _fmt(row.peak_rss_bytes, ".0f", 2**-20),
        "yes" if row.operators else "",
        "; ".join(notes),
    ]


def runs_table(rows: Sequence[Row]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in RUN_COLUMNS)
    body = []
    for row in rows:
        cls = ' class="failed"' if row.status != "ok" else ""
        cells = "".join(f"<td>{html.escape(c)}</td>" for c in run_cells(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return (
        f'<table class="runs"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


def findings_html(findings: Sequence[Finding]) -> str:
    if not findings:
        return "<p>No successful runs to compare.</p>"
    items = []
    for finding in findings:
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in finding.notes)
        extra = f'<ul class="notes">{notes}</ul>' if notes else ""
        items.append(
            f"<li><b>{html.escape(finding.topic)}</b>: {html.escape(finding.text)}{extra}</li>"
        )
    return f'<ul class="findings">{"".join(items)}</ul>'


#: The page's sections, in the order a reader asks: (anchor, heading).
SECTIONS = (
    ("fastest", "Which configuration is fastest"),
    ("findings", "What the runs say"),
    ("scaling", "How it scales"),
    ("time", "Where the time goes"),
    ("why", "Why: operators and the slowest rank"),
    ("convergence", "Training to a target"),
    ("resources", "Resources"),
    ("runs", "Every run"),
)

RANK_COLUMNS = ("#", "configuration", "samples/s (interval over rounds)", "rounds", "speedup",
                "standing", "run")  # fmt: skip


def ranking_html(workloads: Sequence[RankedWorkload]) -> str:
    """Per workload, its configurations fastest first, with their intervals."""
    if not workloads:
        return "<p>No successful runs to rank.</p>"
    parts = []
    head = "".join(f"<th>{html.escape(c)}</th>" for c in RANK_COLUMNS)
    for workload in workloads:
        body = []
        for entry in workload.runs:
            row = entry.row
            cells = [str(entry.place), entry.configuration, throughput_text(row),
                     rounds_text(row), speedup_text(row), entry.verdict(), row.run_id]  # fmt: skip
            cls = ' class="best"' if entry.standing == FASTEST else ""
            body.append(
                f"<tr{cls}>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
            )
        note = (
            '<p class="meta">Some of these were measured in one round: no interval, so their '
            "order rests on single measurements (give <code>--rounds</code>).</p>"
            if workload.measured_once
            else ""
        )
        parts.append(
            f"<h3>{html.escape(workload.workload)}</h3>"
            f'<div class="scroll"><table class="runs"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>{note}"
        )
    return "".join(parts)


def why_html(rows: Sequence[Row]) -> str:
    """The slowest rank of every run that had one, and where to look further."""
    items = []
    for row in rows:
        straggler = straggler_of(row.extra) if row.ok else None
        if straggler is not None:
            items.append(
                f"<li><code>{html.escape(row.run_id)}</code> {html.escape(row.model)} "
                f"{html.escape(row.strategy)} ×{row.workers}: "
                f"{html.escape(straggler.sentence())}</li>"
            )
    found = (
        f'<ul class="findings">{"".join(items)}</ul>'
        if items
        else "<p>No run had a rank measurably slower than the others.</p>"
    )
    return (
        found + '<p class="meta">Every rank of a run on one clock: <code>distbench trace '
        "RUN</code> (open it in Perfetto). Two runs side by side, operator by operator: "
        "<code>distbench explain RUN_A RUN_B</code>.</p>"
    )


def render_page(
    rows: Sequence[Row],
    figures: Mapping[str, Sequence[str]],
    findings: Sequence[Finding],
    meta: dict[str, Any],
) -> str:
    """The page: ``figures`` (HTML per section anchor) placed under their questions."""
    ok = [r for r in rows if r.ok]
    content = {
        "fastest": ranking_html(rank_configurations(ok)),
        "findings": findings_html(findings),
        "scaling": "\n".join(figures.get("scaling", [])),
        "time": "\n".join(figures.get("time", [])),
        "why": why_html(ok) + "\n".join(figures.get("why", [])),
        "convergence": "\n".join(figures.get("convergence", [])),
        "resources": "\n".join(figures.get("resources", [])),
        "runs": f'<div class="scroll">{runs_table(rows)}</div>{RUNS_NOTE}',
    }
    shown = [(anchor, title) for anchor, title in SECTIONS if content[anchor]]
    nav = " · ".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t in shown)
    body = "\n".join(
        f'<section id="{a}"><h2>{html.escape(t)}</h2>\n{content[a]}</section>' for a, t in shown
    )
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return PAGE.substitute(
        generated=html.escape(generated),
        db=html.escape(meta["db"]),
        selection=html.escape(meta["selection"]),
        runs=meta["runs"],
        failed=meta["failed"],
        nav=nav,
        body=body,
    )


RUNS_NOTE = """<p class="meta">Throughput is the median over rounds (each a fresh process
group) with the interval of that median; one round has none. Step time is the median over
measured steps (warm-up excluded) of the slowest worker; speedup and efficiency are
relative to the measured one-worker run named in <code>distbench results</code>, with a
bootstrap interval over both runs' rounds; "=" marks a speedup whose interval contains 1
(no measurable difference). Use <code>distbench explain RUN_A RUN_B</code> to drill into
any pair.</p>"""


PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>distbench report</title>
<link rel="icon" href="data:,">
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1400px; padding: 0 1.5rem; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; } .meta { color: #666; margin-top: 0; }
nav { margin: 0.6rem 0 0; font-size: 0.9rem; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2.2rem; }
table.runs { border-collapse: collapse; font-size: 0.85rem; }
table.runs th, table.runs td { border-bottom: 1px solid #e4e4e4; padding: 0.25rem 0.5rem;
       text-align: left; white-space: nowrap; }
table.runs tr.failed td { color: #a33; }
table.runs tr.best td { font-weight: 600; background: #f1f7ee; }
figure { margin: 1.5rem 0 2.5rem; } figure h3 { margin-bottom: 0.4rem; }
figure img { display: block; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9rem; max-width: 70rem; margin-top: 0.4rem; }
ul.findings li { margin-bottom: 0.5rem; } ul.notes { color: #666; font-size: 0.9rem; }
.scroll { overflow-x: auto; max-width: 100%; }
code { overflow-wrap: anywhere; }
@media (max-width: 640px) {
  body { margin: 1rem auto; padding: 0 0.7rem; }
  h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; }
}
</style>
</head>
<body>
<h1>distbench report</h1>
<p class="meta">Generated $generated from <code>$db</code>; selection: $selection;
$runs runs ($failed failed).</p>
<nav>$nav</nav>
$body
</body>
</html>
""")
