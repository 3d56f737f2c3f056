"""Time to accuracy over stored runs: summaries over seeds, the throughput / convergence
split, the price of staleness, and the MLPerf-style log."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from distbench.analysis.convergence import (
    accuracy_gap,
    staleness_price,
    summarize_goals,
)
from distbench.report.convergence_plot import convergence_figures
from distbench.store.mllog import to_mllog
from distbench.store.result import RunResult

TRAIN = 1437


def run(
    strategy: str,
    workers: int,
    steps: int | None,
    seconds: float | None,
    seed: int = 1,
    local: int = 32,
    staleness: dict[str, Any] | None = None,
) -> RunResult:
    per_update = local if strategy.endswith("async") else local * workers
    curve = [
        {"step": 10, "train_s": 0.1, "loss": 2.0, "accuracy": 0.3, "eval_s": 0.01},
        {"step": steps or 20, "train_s": seconds or 0.2, "loss": 1.0, "accuracy": 0.85
         if steps else 0.5, "eval_s": 0.01},
    ]  # fmt: skip
    extra: dict[str, Any] = {
        "convergence": {
            "target_accuracy": 0.8,
            "reached": steps is not None,
            "steps_to_accuracy": steps,
            "time_to_accuracy_s": seconds,
            "epochs_to_accuracy": steps * per_update / TRAIN if steps else None,
            "final_accuracy": curve[-1]["accuracy"],
            "samples_per_step": per_update,
            "train_size": TRAIN,
            "curve": curve,
        }
    }
    if staleness is not None:
        extra["ranks"] = {str(workers): {"server": {"staleness": staleness}}}
    return RunResult(
        run_id=f"{strategy}-{workers}-{seed}",
        status="ok",
        created_at="2026-12-04T17:00:00+00:00",
        model="lenet5",
        dataset="digits",
        strategy=strategy,
        framework="torch",
        workers=workers,
        global_batch=local * workers,
        local_batch=local,
        throughput_median=1000.0,
        duration_s=5.0,
        config={"seed": seed, "lr": 0.02, "momentum": 0.9, "eval_every": 10},
        extra=extra,
    )


def test_runs_that_differ_only_in_seed_are_summarized_together() -> None:
    rows = [run("ddp", 2, 90, 0.7, seed=s) for s in (1, 2)] + [run("ddp", 2, None, None, seed=3)]
    rows.append(run("sequential", 1, 90, 0.5))
    ddp, sequential = summarize_goals(rows)
    assert (ddp.seeds, ddp.reached, ddp.runs) == ([1, 2, 3], 2, 3)
    assert ddp.seconds is not None and ddp.seconds.median == pytest.approx(0.7)
    assert ddp.seconds.high == math.inf  # the seed that never got there
    assert ddp.steps == 90 and sequential.runs == 1


def test_most_seeds_missing_the_target_gives_no_time() -> None:
    rows = [run("ddp", 2, None, None, seed=s) for s in (1, 2)] + [run("ddp", 2, 90, 0.7, seed=3)]
    (summary,) = summarize_goals(rows)
    assert summary.seconds is not None and summary.seconds.median == math.inf


def test_the_gap_splits_exactly_into_throughput_and_convergence() -> None:
    """A: 100 updates of 32 in 1 s (3200 samples/s). B: 200 updates of 32 in 1.25 s
    (5120 samples/s): its rate alone would save 0.375 s, its doubled samples cost 0.625 s."""
    a = run("sequential", 1, 100, 1.0)
    b = run("ps-async", 2, 200, 1.25)
    gap = accuracy_gap(a, b)
    assert gap is not None
    assert gap.gap_s == pytest.approx(0.25)
    assert gap.throughput_s == pytest.approx(3200 / 5120 - 1.0)
    assert gap.convergence_s == pytest.approx(3200 / 5120)
    assert gap.throughput_s + gap.convergence_s == pytest.approx(gap.gap_s)
    assert (gap.samples_ratio, gap.rate_ratio) == (pytest.approx(2.0), pytest.approx(1.6))
    assert "from convergence" in gap.sentence()


def test_no_gap_without_both_runs_reaching_the_same_target() -> None:
    assert accuracy_gap(run("sequential", 1, 100, 1.0), run("ddp", 2, None, None)) is None


def test_staleness_is_priced_against_a_run_of_the_same_batch_per_update() -> None:
    stale = {"histogram": {"0": 50, "1": 150}, "count": 200, "mean": 0.75, "max": 1}
    asynchronous = run("ps-async", 2, 200, 1.25, staleness=stale)
    wider = run("ddp", 2, 80, 0.5)  # 64 samples an update: not comparable
    same = run("sequential", 1, 120, 0.6)
    price = staleness_price(asynchronous, [wider, same])
    assert price is not None and price.reference_run == same.run_id
    assert (price.extra_updates, price.staleness_mean) == (80, 0.75)
    assert "1.67×" in price.sentence()
    assert staleness_price(asynchronous, [wider]) is None


def test_the_mllog_has_the_mlperf_keys_on_the_training_clock() -> None:
    rows = [run("ddp", 2, 90, 0.7), run("ddp", 2, None, None, seed=2)]
    lines = [json.loads(line.split(":::MLLOG ", 1)[1]) for line in to_mllog(rows).splitlines()]
    first = [e for e in lines if e["namespace"] == rows[0].run_id]
    keys = [e["key"] for e in first]
    assert keys[:4] == ["submission_benchmark", "global_batch_size", "opt_base_learning_rate",
                        "run_start"]  # fmt: skip
    assert keys[4:] == ["eval_accuracy", "eval_accuracy", "run_stop"]
    start, stop = first[3]["time_ms"], first[-1]["time_ms"]
    assert stop - start == pytest.approx(700)
    assert first[-1]["metadata"]["status"] == "success"
    assert first[0]["metadata"]["file"] == "store/mllog.py"  # not this machine's path
    assert first[5]["metadata"]["epoch_num"] == pytest.approx(90 * 64 / TRAIN)
    missed = [e for e in lines if e["namespace"] == rows[1].run_id]
    assert missed[-1]["metadata"]["status"] == "aborted"


def test_the_report_draws_accuracy_curves_and_bars_only_for_runs_with_a_goal() -> None:
    rows = [run("sequential", 1, 90, 0.5), run("ps-async", 2, None, None)]
    accuracy, bars = convergence_figures(rows)
    assert (accuracy.stem, bars.stem) == ("accuracy", "time_to_accuracy")
    curves = accuracy.figure.axes[0].get_lines()
    assert len([line for line in curves if line.get_linestyle() == "-"]) == 2
    assert "not reached" in [t.get_text().strip() for t in bars.figure.axes[0].texts]
    plain = RunResult("x", "ok", "2026-12-04T17:00:00+00:00", "lenet5", "digits", "ddp",
                      "torch", 2)  # fmt: skip
    assert convergence_figures([plain]) == []
