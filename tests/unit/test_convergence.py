"""Training to a target accuracy: the stopping rule, the stored figures, bad input."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from distbench.config import RunConfig
from distbench.errors import UserError
from distbench.registry import check_run
from distbench.strategies.convergence import Convergence, UpdateClock


def goal(accuracies: Iterator[float], **changes: object) -> Convergence:
    given: dict[str, object] = {
        "model": "lenet5",
        "dataset": "digits",
        "target_accuracy": 0.9,
        "eval_every": 5,
        "max_steps": 100,
        "warmup": 2,
    }
    cfg = RunConfig(**{**given, **changes})  # type: ignore[arg-type]
    return Convergence(cfg, 0, 1, lambda: (round(next(accuracies) * 1000), 1000), 32, 320)


def train(g: Convergence, step_time: float = 0.5) -> list[int]:
    done = []
    for step in g.steps():
        done.append(step)
        g.after_step(step, step_time, loss=1.0)
    return done


def test_training_stops_at_the_first_evaluation_that_meets_the_target() -> None:
    g = goal(iter([0.2, 0.6, 0.95, 0.99]))
    assert train(g) == list(range(15))
    summary = g.summary()["convergence"]
    assert summary["reached"] is True
    assert summary["steps_to_accuracy"] == 15
    assert summary["time_to_accuracy_s"] == pytest.approx(15 * 0.5)
    assert summary["epochs_to_accuracy"] == pytest.approx(15 * 32 / 320)
    assert summary["final_accuracy"] == 0.95
    assert [p["step"] for p in summary["curve"]] == [5, 10, 15]


def test_a_target_never_met_stops_at_max_steps_and_says_so() -> None:
    g = goal(iter([0.1] * 100), max_steps=23)
    assert len(train(g)) == 23
    summary = g.summary()["convergence"]
    assert summary["reached"] is False
    assert summary["time_to_accuracy_s"] is None and summary["steps_to_accuracy"] is None
    assert summary["evaluations"] == 4  # steps 5, 10, 15, 20


def test_pulled_weights_stand_at_their_version_and_the_time_before_the_step() -> None:
    """A parameter-server worker evaluates what it pulled for the step: after step 4
    (the fifth), version 4, trained by the four steps before it."""
    g = goal(iter([0.95]))
    for step in g.steps():
        g.after_step(step, 0.5, loss=1.0, version=step)
    point = g.summary()["convergence"]["curve"][0]
    assert (point["step"], point["train_s"]) == (4, pytest.approx(4 * 0.5))


def test_asynchronous_points_take_their_time_from_the_update_rate() -> None:
    """Three updates between this worker's pulls, a step each 0.3 s: 0.1 s an update,
    whatever happened while it evaluated (other workers' updates it never timed)."""
    g = goal(iter([0.1, 0.95]), eval_every=5, warmup=0)
    g.asynchronous = True
    versions = iter([*range(0, 15, 3), *range(40, 70, 3)])  # a jump of 28 over the evaluation
    for step in g.steps():
        g.after_step(step, 0.3, loss=1.0, version=next(versions))
    curve = g.summary()["convergence"]["curve"]
    assert [p["step"] for p in curve] == [12, 52]
    assert [p["train_s"] for p in curve] == [pytest.approx(1.2), pytest.approx(5.2)]


def test_the_update_clock_falls_back_before_it_has_a_rate() -> None:
    clock = UpdateClock()
    clock.observe(0, 0.2)
    assert clock.time_of(7, fallback=1.5) == 1.5
    clock.observe(2, 0.2)
    assert clock.time_of(7, fallback=1.5) == pytest.approx(0.7)


def test_epochs_bound_the_steps_and_end_with_an_evaluation() -> None:
    """2 epochs of 320 samples at 32 a step: 20 steps, evaluated at 5, 10, ... and the end;
    an asynchronous worker of 2 trains half of them."""
    g = goal(iter([0.1] * 10), target_accuracy=None, epochs=2.0, eval_every=6)
    assert train(g) == list(range(20))
    summary = g.summary()["convergence"]
    assert [p["step"] for p in summary["curve"]] == [6, 12, 18, 20]
    assert summary["reached"] is None and summary["final_epochs"] == pytest.approx(2.0)
    shared = goal(iter([0.1] * 10), target_accuracy=None, epochs=2.0)
    shared.updaters = 2
    assert shared.step_limit == 10


def test_with_a_target_epochs_replace_max_steps() -> None:
    g = goal(iter([0.1] * 10), epochs=1.0)  # 10 steps, not --max-steps 100
    assert len(train(g)) == 10
    assert g.summary()["convergence"]["reached"] is False


def test_a_target_met_during_warmup_still_leaves_a_measured_step() -> None:
    g = goal(iter([0.99]), eval_every=1, warmup=3)
    assert train(g) == [0, 1, 2, 3]
    assert g.summary()["convergence"]["steps_to_accuracy"] == 1


def test_without_a_target_the_loop_is_warmup_plus_steps() -> None:
    g = goal(iter([]), target_accuracy=None, steps=4, warmup=2)
    assert train(g) == list(range(6))
    assert g.summary() == {}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"target_accuracy": 1.5}, "at most 1"),
        ({"target_accuracy": 0.0}, "positive"),
        ({"eval_every": 0}, "--eval-every must be at least 1"),
        ({"max_steps": 2, "warmup": 3}, "--max-steps (2) must exceed --warmup (3)"),
        ({"dataset": "synthetic"}, "random labels"),
        ({"target_accuracy": None, "epochs": 1.0, "dataset": "synthetic"}, "--epochs needs"),
        ({"epochs": 0.0}, "--epochs must be positive"),
    ],
)
def test_bad_targets_are_refused_in_one_line(changes: dict[str, object], message: str) -> None:
    given: dict[str, object] = {"model": "lenet5", "dataset": "digits", "target_accuracy": 0.8}
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_run(RunConfig(**{**given, **changes}))  # type: ignore[arg-type]


def test_a_strategy_that_cannot_train_to_a_target_is_named() -> None:
    """Every built-in strategy and adapter trains to a target; one registered without
    that ability is refused by name."""
    from distbench.strategies.convergence import check_target

    cfg = RunConfig(model="lenet5", dataset="digits", target_accuracy=0.8)
    with pytest.raises(UserError, match="not supported by strategy 'mine' yet"):
        check_target(cfg, "mine", ["ddp"])
    for framework, strategy, workers in [
        ("tensorflow", "sync", 2),
        ("tensorflow", "async", 2),
        ("mxnet", "sync", 2),
        ("mxnet", "async", 2),
        ("horovod", "sync", 2),
    ]:
        check_run(cfg.replace(framework=framework, strategy=strategy, workers=workers))
