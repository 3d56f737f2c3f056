"""The results table fits the terminal: whole columns are left out by priority, no value
is ever cut, ``--wide`` shows everything."""

from __future__ import annotations

import pytest
from rich.console import Console

from distbench.cli.tables import print_table, results_table
from distbench.store.result import Round, RunResult

PHASES = {"data": 0.001, "forward": 0.02, "backward": 0.04, "comm": 0.01, "update": 0.002}


def _row(run_id: str, model: str, throughputs: list[float], **facts: object) -> RunResult:
    rounds = [
        Round(k + 1, "ok", f"/runs/{run_id}-r{k + 1}", "t", 1.0, throughput=t).to_dict()
        for k, t in enumerate(throughputs)
    ]
    row = RunResult(
        run_id=run_id,
        status=str(facts.get("status", "ok")),
        error=facts.get("error"),  # type: ignore[arg-type]
        created_at="2026-12-06",
        model=model,
        dataset="synthetic",
        strategy="ps-sync-join",
        framework="torch",
        workers=16,
        global_batch=512,
        local_batch=32,
        scaling="weak",
        throughput_median=sorted(throughputs)[len(throughputs) // 2],
        throughput_ci_low=min(throughputs),
        throughput_ci_high=max(throughputs),
        step_time_median=0.0734,
        rounds=rounds,
        breakdown=dict(PHASES),
        peak_rss_bytes=512 * 2**20,
    )
    return row


ROWS = [
    _row("20261206-101010-abcdef", "efficientnet_b0", [2001.4, 2010.9, 1999.2]),
    _row("20261206-101011-123456", "squeezenet", [10432.25, 10501.5, 10390.75]),
]


def printed(capsys: pytest.CaptureFixture[str], rows: list[RunResult], wide: bool = False) -> str:
    print_table(rows, wide=wide)
    return capsys.readouterr().out


@pytest.mark.parametrize("columns", [60, 80, 100, 120])
def test_the_table_fits_the_terminal_and_cuts_no_run_id_model_or_number(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, columns: int
) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    out = printed(capsys, ROWS)
    table_lines = [line for line in out.splitlines() if line[:1] in "┏┃┡│└"]
    fitted = results_table(ROWS, width=columns)
    # the table is as wide as its columns need: within the terminal, or, below the essential
    # columns' own width (60 here), wider than it rather than cut
    assert max(len(line) for line in table_lines) == fitted.width
    assert fitted.width <= columns or (fitted.hidden[-1] == "RSS MB" and len(fitted.hidden) == 9)
    for value in ("abcdef", "123456", "efficientnet_b0", "squeezenet", "2001.4", "10432.2"):
        assert value in out, value
    assert "…" not in "".join(table_lines)
    assert "(1999.2-2010.9)" in out  # the interval whole


def test_columns_go_least_telling_first_and_the_essential_ones_never() -> None:
    full = results_table(ROWS)
    assert full.hidden == []
    # memory, efficiency and batch first, then the phases least telling first: comm stays
    assert results_table(ROWS, width=140).hidden == [
        "batch",
        "eff.",
        "data ms",
        "forward ms",
        "update ms",
        "RSS MB",
    ]
    assert "step ms" in results_table(ROWS, width=100).hidden  # the last to go
    tiny = results_table(ROWS, width=10)
    shown = [c.header for c in tiny.table.columns]
    assert shown == ["run", "model", "strategy", "N", "status", "samples/s", "R", "speedup"]


def test_a_narrow_table_says_what_it_left_out_and_wide_shows_everything(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "90")
    narrow = printed(capsys, ROWS)
    assert "not shown for want of width:" in narrow and "--wide" in narrow
    wide = printed(capsys, ROWS, wide=True)
    assert "not shown for want of width" not in wide
    for header in ("RSS MB", "batch", "eff.", "data ms", "comm ms", "update ms"):
        assert header in wide


def test_a_failed_runs_long_error_is_shortened_in_its_cell_and_given_whole_below(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    error = "rank 1: RuntimeError: " + "the peer closed the connection during all-reduce " * 2
    failed = _row("20261206-101012-ffffff", "lenet5", [1.0], status="failed", error=error)
    out = printed(capsys, [failed])
    assert f"ffffff: failed: {error}" in " ".join(out.split("\n"))


def test_time_to_accuracy_table_fits_too_and_keeps_the_answer() -> None:
    """The time-to-accuracy table gives up whole columns for width (evaluation figures
    first), never the configuration, target, reached or the time, and cuts no value."""
    from distbench.analysis.convergence import GoalSummary
    from distbench.cli.tables import goals_table
    from distbench.measurement.rounds import median_interval

    summary = GoalSummary(
        label="efficientnet_b0 ps-sync-join ×16 (tensorflow)", target=0.8,
        run_ids=["a", "b", "c"], seeds=[1, 2, 3], reached=3,
        seconds=median_interval([12.25, 13.5, 14.75]), steps=340.0, epochs=2.57,
        final_accuracy=0.812, throughput=2001.4, eval_s=1.23, eval_peak_rss_bytes=300 * 2**20,
    )  # fmt: skip
    narrow = goals_table([summary], width=120)
    assert narrow.hidden == ["seeds", "samples/s", "eval s", "eval MB"]
    assert narrow.width <= 120
    assert goals_table([summary], width=40).hidden == [
        "seeds",
        "steps",
        "epochs",
        "final acc.",
        "samples/s",
        "eval s",
        "eval MB",
    ]  # fmt: skip  (the four kept ones are wider than 40: the table is, no value is cut)
    console = Console(width=200, record=True)
    console.print(narrow.table)
    text = console.export_text()
    assert "efficientnet_b0 ps-sync-join ×16 (tensorflow)" in text and "…" not in text
    assert "13.5" in text
    assert goals_table([summary], width=None).hidden == []


def test_the_table_says_what_n_counts_where_it_is_not_workers() -> None:
    """One vocabulary: N is data-parallel workers, except pipeline stages and model
    partitions, and the table says so only when such a run is in it."""
    from dataclasses import replace

    from distbench.cli.tables import workers_meaning

    ddp = replace(ROWS[0], strategy="ddp")
    assert workers_meaning([ddp]) is None
    pipe = replace(ROWS[1], strategy="pipeline-1f1b")
    mp = replace(ROWS[1], strategy="model-parallel")
    text = workers_meaning([ddp, pipe, mp]) or ""
    assert "ddp: data-parallel workers" in text
    assert "pipeline-1f1b: pipeline stages (stages x replicas" in text
    assert "model-parallel: model partitions" in text
    assert "batch: the global batch of one step" in text


def test_old_adapter_names_are_read_as_the_new_ones() -> None:
    from distbench.config import RunConfig
    from distbench.names import strategy_spellings

    assert RunConfig(model="lenet5", framework="tensorflow", strategy="sync").strategy == (
        "allreduce"
    )
    assert RunConfig(model="lenet5", framework="mxnet", strategy="sync").strategy == (
        "ps-sync-join"
    )
    assert RunConfig(model="lenet5", framework="mxnet", strategy="async").strategy == "ps-async"
    assert RunConfig(model="lenet5", strategy="allreduce").strategy == "ddp"
    assert strategy_spellings("sync") == [
        (None, "sync"), ("horovod", "allreduce"), ("mxnet", "ps-sync-join"),
        ("tensorflow", "allreduce"),
    ]  # fmt: skip
