"""One entry point, two backends: a configuration's predicted step from its profile.

``formulas`` composes the closed forms (``core.predict_case``); ``simulator`` runs the
discrete-event model (``simulated.simulate_case``). Both read the same profile inputs,
through the same helpers of ``core``; ``estimate``, ``validate`` and ``simulate`` call
this, so no command has a copy of the math of its own.
"""

from __future__ import annotations

from typing import Literal, get_args

from distbench.errors import UserError
from distbench.predict.core import Case, Prediction, predict_case
from distbench.predict.simulated import (
    DEFAULT_STEPS,
    sim_strategy,
    simulate_case,
    simulate_run,
)
from distbench.profiling.profiles import Profile

Engine = Literal["formulas", "simulator"]
ENGINES: tuple[str, ...] = get_args(Engine)


def check_engine(name: str) -> Engine:
    if name not in ENGINES:
        raise UserError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")
    return "simulator" if name == "simulator" else "formulas"


def predict(
    case: Case,
    profile: Profile,
    engine: Engine = "formulas",
    steps: int = DEFAULT_STEPS,
    as_run: bool = False,
) -> Prediction | None:
    """``case``'s predicted step by ``engine``; ``None`` where that engine has no model.
    ``as_run``: the simulator replays the run as configured (its warm-up and steps, from
    a common start; ``simulated.simulate_run``) instead of ``steps`` of steady state —
    what ``validate`` compares with a measured run. The closed forms have no start."""
    if engine == "formulas":
        return predict_case(case, profile)
    if sim_strategy(case) is None:
        return None
    if as_run:
        return simulate_run(case, profile)
    return simulate_case(case, profile, steps=steps).prediction
