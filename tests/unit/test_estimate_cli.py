"""``distbench estimate`` in-process: csv, single, json, plot and one-line errors.

Most tests build a tiny parser from ``OneLineParser`` and this module's ``register`` so
that they run while the other subcommands are still being written; one goes through
``distbench.cli.main.main`` and skips until those modules exist.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from distbench.cli import estimate as estimate_cli
from distbench.cli.common import OneLineParser
from distbench.errors import UserError

SQUEEZE = [
    "estimate",
    "--t-grad",
    "0.758",
    "--t-comm",
    "0.033",
    "--type",
    "sync-join",
    "--server",
    "distributed",
    "--workers",
    "8",
    "--batches",
    "128",
]


def run_cli(argv: list[str]) -> int:
    """What ``main`` does, with only the estimate subcommand registered."""
    parser = OneLineParser(prog="distbench")
    subparsers = parser.add_subparsers(dest="command", parser_class=OneLineParser)
    estimate_cli.register(subparsers)
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except UserError as exc:
        import sys

        sys.stderr.write(f"distbench {args.command}: error: {exc}\n")
        return 2


def test_csv_has_header_and_eight_rows(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli([*SQUEEZE, "--output", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split(",")[:2] == ["workers", "t_best"]
    assert len(lines) == 9
    assert [line.split(",")[0] for line in lines[1:]] == [str(n) for n in range(1, 9)]
    speedup_col = lines[0].split(",").index("speedup_estimate")
    values = [float(line.split(",")[speedup_col]) for line in lines[1:]]
    assert values == sorted(values)
    assert values[-1] == pytest.approx(7.4337, abs=1e-3)


def test_single_prints_table_semaphore_and_recommendation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_cli([*SQUEEZE, "--output", "single"]) == 0
    out = capsys.readouterr().out
    assert "sync-join/sharded" in out
    assert "semaphore bound (N=8)" in out
    assert "recommendation" in out
    assert len([ln for ln in out.splitlines() if ln.strip().split(" ")[0].isdigit()]) == 8


def test_json_is_machine_readable(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli([*SQUEEZE, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["rows"]) == 8
    assert data["strategy"] == "sync-join/sharded"
    assert set(data["compared"]) == {"sync-join/central", "sync-join/sharded"}
    assert data["recommendation"]["workers"] == 8
    assert data["semaphore"]["t_worst"] == pytest.approx(8 * 0.033)


def test_plot_writes_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "figs" / "speedup.png"
    assert run_cli([*SQUEEZE, "--output", "plot", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ddp_and_pipeline_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run_cli(
            [
                "estimate",
                "--t-grad",
                "0.3",
                "--type",
                "ddp",
                "--beta",
                "1.25e8",
                "--grad-bytes",
                "4.6e7",
                "--alpha",
                "5e-5",
                "--workers",
                "4",
                "--output",
                "csv",
            ]
        )
        == 0
    )
    assert len(capsys.readouterr().out.splitlines()) == 5
    assert (
        run_cli(
            [
                "estimate",
                "--type",
                "pipeline",
                "--microbatches",
                "8",
                "--stage-times",
                "0.01,0.012,0.011",
                "--output",
                "csv",
            ]
        )
        == 0
    )
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_sync_split_times_per_n(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run_cli(
            [
                "estimate",
                "--t-grad",
                "0.8",
                "--t-comm",
                "0.1",
                "--type",
                "sync-split",
                "--t-grad-split",
                "0.8,0.45",
                "--workers",
                "2",
                "--output",
                "csv",
            ]
        )
        == 0
    )
    assert "measured t_grad_split" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["estimate", "--t-comm", "0.1"],  # missing --t-grad
        ["estimate", "--t-grad", "-1", "--t-comm", "0.1"],  # negative time
        ["estimate", "--t-grad", "abc", "--t-comm", "0.1"],  # not a number (argparse)
        ["estimate", "--t-grad", "1", "--t-comm", "0.1", "--workers", "0"],
        ["estimate", "--t-grad", "1", "--t-comm", "0.1", "--batches", "0"],
        ["estimate", "--t-grad", "1", "--t-comm", "0.1", "--type", "nope"],
        [
            "estimate",
            "--t-grad",
            "1",
            "--t-comm",
            "0.1",
            "--type",
            "sync-split",
            "--t-grad-split",
            "1,0.5",
            "--workers",
            "3",
        ],
        ["estimate", "--t-grad", "1", "--type", "pipeline"],  # no --microbatches
    ],
)
def test_bad_input_is_one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = run_cli(argv)
    except SystemExit as exc:  # argparse errors exit from the parser
        code = int(exc.code or 0)
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "error" in err


def test_model_without_profiles_is_user_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from distbench.store import open_store

    db = tmp_path / "x.db"
    open_store(db).close()  # a store with no profile in it
    assert run_cli(["estimate", "--model", "resnet18", "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert "no stored profile of model 'resnet18'" in err
    assert "distbench profile --model resnet18" in err  # and how to make one


def test_register_sets_handler() -> None:
    parser = OneLineParser(prog="distbench")
    subparsers = parser.add_subparsers(dest="command", parser_class=OneLineParser)
    estimate_cli.register(subparsers)
    args = parser.parse_args(["estimate", "--t-grad", "1", "--t-comm", "0.1"])
    assert isinstance(args, argparse.Namespace)
    assert args.handler is estimate_cli.run_estimate
    assert (args.kind, args.server, args.workers, args.batches, args.output) == (
        "sync-join",
        "central",
        8,
        128,
        "single",
    )


def test_through_main(capsys: pytest.CaptureFixture[str]) -> None:
    from distbench.cli.main import main

    assert main([*SQUEEZE, "--output", "csv"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 9
    assert main(["estimate", "--t-grad", "-1", "--t-comm", "0.1"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_the_command_line_gives_back_the_callers_signal_handlers() -> None:
    """While a command runs, SIGTERM and SIGHUP unwind it like Ctrl-C; a program that
    calls ``main`` (a test, a notebook) has its own handlers back afterwards, also when
    the command fails."""
    import signal

    from distbench.cli.main import main

    def mine(signum: int, frame: object) -> None:
        return None

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        assert main(["estimate", "--t-grad", "-1"]) == 2
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)
