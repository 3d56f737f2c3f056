"""A discrete-event simulator of every strategy, on SimPy (docs/simulator.md).

Where to start: ``spec`` says what a simulation is told (``SimSpec``: compute draws, links,
the strategy's own inputs — no profile, no torch); ``engine.simulate`` runs one and
returns a ``SimResult`` (time per step, throughput, the step's split, the links' use),
``engine.worker_steps`` every worker's steps one by one;
``links.FairLink`` is the bandwidth-sharing link every transfer crosses.
``distbench.predict.simulated`` builds specs from calibration profiles.
"""

from distbench.simulator.engine import SPLIT, SimResult, simulate, worker_steps
from distbench.simulator.spec import (
    SIM_STRATEGIES,
    ComputeDraws,
    Links,
    Pipeline,
    Replay,
    RingAllReduce,
    SimSpec,
)

__all__ = [
    "SIM_STRATEGIES",
    "SPLIT",
    "ComputeDraws",
    "Links",
    "Pipeline",
    "Replay",
    "RingAllReduce",
    "SimResult",
    "SimSpec",
    "simulate",
    "worker_steps",
]
