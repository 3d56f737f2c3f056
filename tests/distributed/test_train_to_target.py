"""Training to a target accuracy on digits through the real launcher: every torch strategy
that trains to a target reaches it, and every stored figure agrees with its curve.

The target (80 % held-out accuracy, lenet5, batch 32, SGD lr 0.02 with momentum) takes
sequential training about 100 steps, under a second of training on this machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from distbench.config import RunConfig
from distbench.harness.session import run_benchmarks
from distbench.store.result import RunResult

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(600)]

TARGET = 0.8
EVERY = 10
MAX_STEPS = 1000


def to_target(strategy: str, workers: int = 1, **kw: Any) -> RunConfig:
    return RunConfig(
        model="lenet5",
        dataset="digits",
        strategy=strategy,
        workers=workers,
        batch_size=32,
        lr=0.02,
        momentum=0.9,
        warmup=1,
        target_accuracy=TARGET,
        eval_every=EVERY,
        max_steps=MAX_STEPS,
        threads=1,
        timeout=300,
        **kw,
    )


def assert_reached(row: RunResult, samples_per_update: int) -> None:
    assert row.status == "ok", row.error
    goal = row.extra["convergence"]
    assert goal["reached"] is True and goal["final_accuracy"] >= TARGET
    curve = goal["curve"]
    assert curve[-1]["step"] == goal["steps_to_accuracy"]
    assert all(p["accuracy"] < TARGET for p in curve[:-1])
    assert [p["step"] for p in curve] == sorted(p["step"] for p in curve)
    assert goal["time_to_accuracy_s"] == curve[-1]["train_s"] > 0
    train_size = 1437  # digits' training split (80 % of 1797)
    assert goal["epochs_to_accuracy"] == pytest.approx(
        goal["steps_to_accuracy"] * samples_per_update / train_size
    )
    assert goal["eval_s"] > 0 and goal["evaluations"] == len(curve)
    assert row.steps is None  # not --steps: as many as it took


def test_sequential_and_ddp_train_digits_to_a_target(db_path: Path) -> None:
    """Updates are local: a point stands at a multiple of the evaluation interval."""
    rows = run_benchmarks([to_target("sequential"), to_target("ddp", 2)], db_path)
    for row, per_update in zip(rows, (32, 64), strict=True):
        assert_reached(row, per_update)
        assert row.extra["convergence"]["steps_to_accuracy"] % EVERY == 0


def test_pipelines_train_digits_to_a_target_as_sequential_does(db_path: Path) -> None:
    """Rank 0 evaluates the stages' gathered weights: the same global batch as sequential
    (micro-batch gradients summed in another order), so the same steps to the target, to
    an evaluation interval should rounding put one right at the threshold."""
    names = ("sequential", "pipeline-gpipe", "pipeline-1f1b", "model-parallel")
    rows = run_benchmarks([to_target(n, 1 if n == "sequential" else 2) for n in names], db_path)
    for row in rows:
        assert_reached(row, 32)
    steps = {row.strategy: row.extra["convergence"]["steps_to_accuracy"] for row in rows}
    assert max(steps.values()) - min(steps.values()) <= EVERY, steps


def test_parameter_servers_train_digits_to_a_target(db_path: Path) -> None:
    """Synchronous: worker 0 evaluates the weights it pulled (version = iteration, one
    behind the steps taken), and every worker stops together. Asynchronous: the stop
    reaches the other workers through the servers, central or sharded; a point's version
    counts every worker's updates, so it runs ahead of worker 0's own steps."""
    configs = [
        to_target("ps-sync-join", 2),
        to_target("ps-async", 2),
        to_target("ps-async", 3),
        to_target("ps-async", 2, servers="sharded"),
    ]
    rows = run_benchmarks(configs, db_path)
    sync, *asynchronous = rows
    assert_reached(sync, 64)
    assert sync.extra["convergence"]["steps_to_accuracy"] % EVERY == EVERY - 1
    for row in asynchronous:
        assert_reached(row, 32)
        goal = row.extra["convergence"]
        own_steps = goal["evaluations"] * EVERY  # worker 0 evaluates every EVERY of its steps
        assert goal["steps_to_accuracy"] > own_steps
        assert goal["steps_to_accuracy"] <= max(server_updates(row))


def server_updates(row: RunResult) -> list[int]:
    """The updates each server unit applied (rank 0's own unit and every other rank's)."""
    extras = [row.extra, *row.extra.get("ranks", {}).values()]
    return [extra["server"]["updates"] for extra in extras if "server" in extra]
