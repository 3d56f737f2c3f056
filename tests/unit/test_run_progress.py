"""What a user is told before and during a long run: the default suite announced with
what it runs and how long it takes, and the time left after each round."""

from __future__ import annotations

from distbench.cli.main import build_parser
from distbench.cli.run import RoundClock, announce_default_suite, configs_from_args, default_suite


def test_plain_run_announces_the_default_suite_from_the_suite_itself() -> None:
    configs = configs_from_args(build_parser().parse_args(["run"]))
    suite = default_suite()
    line = announce_default_suite(configs)
    assert f"{len(configs)} configurations" in line
    for model in suite.models:
        assert model in line
    assert f"{suite.base['rounds']} interleaved rounds of {suite.base['steps']} measured" in line
    assert "minutes" in line and "Ctrl-C" in line


def test_the_time_left_comes_from_the_rounds_so_far() -> None:
    clock = RoundClock()
    clock.started -= 120.0  # two rounds of every configuration took 120 s
    last = {"round": 2, "rounds": 6, "index": 8, "total": 9}
    said = clock.after(last)
    assert said is not None and "60 s a round: about 4 min left" in said
    assert clock.after({**last, "index": 3}) is None  # mid-round: nothing to say yet
    assert clock.after({**last, "round": 6}) == "round 6/6 of every configuration done"
    assert clock.after({**last, "rounds": 1, "round": 1}) is None  # one round: no clock
