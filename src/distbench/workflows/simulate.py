"""The work behind ``distbench simulate``: one workload over strategies and worker counts.

Where to start: :func:`simulate_workload` takes a ``SimulateRequest`` (the workload, the
strategies, the worker counts, the network, where the compute comes from), finds the
stored calibration profile as ``validate`` does (or takes ``--t-grad``), simulates every
(strategy, N) and returns a ``SimulateReport``: rows like stored runs (``strategy``,
``workers``, ``step_time_median``, ``throughput_median``), each with its speedup over one
worker training alone, its efficiency, the step's split and its bottleneck, and a
``Recommendation``. Nothing here prints.

Speedup is throughput over the simulated one-worker ``sequential`` throughput of the same
workload (the same inputs), so the inputs' own error cancels in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from itertools import pairwise
from typing import Any

from distbench.compute.resolve import replayed_profile
from distbench.config import RunConfig
from distbench.errors import UserError
from distbench.predict.core import Case, case_of
from distbench.predict.simulated import (
    DEFAULT_STEPS,
    Simulated,
    sim_strategy,
    simulate_case,
    timings_profile,
)
from distbench.profiling.profiles import Profile, find_profile_row
from distbench.simulator import SPLIT

#: A worker "stops paying" when each added worker adds less than this share of one
#: ideal worker's throughput (the same rule as ``estimate``).
DEFAULT_MIN_GAIN = 0.1
#: A link busy less than this share of the time is not what communication waits on.
IDLE_LINK = 0.1


@dataclass(frozen=True)
class SimulateRequest:
    model: str
    strategies: tuple[str, ...]
    workers: tuple[int, ...]
    dataset: str = "synthetic"
    batch_size: int = 32
    db: str = "distbench.db"
    servers: str = "central"
    semaphore: bool = False
    microbatches: int = 4
    network: str | None = None
    profile_id: int | None = None
    t_grad: float | None = None
    t_comm: float | None = None
    weight_bytes: float | None = None
    steps: int = DEFAULT_STEPS
    seed: int = 0
    min_gain: float = DEFAULT_MIN_GAIN
    max_workers: int | None = None  # the recommendation's budget (default: max workers)
    link_unfairness: float = 0.0  # a what-if: transfers' shares of a link drawn unequal

    def __post_init__(self) -> None:
        if not self.strategies:
            raise UserError("name at least one strategy (--strategy)")
        if not self.workers:
            raise UserError("name at least one worker count (--workers)")
        for n in self.workers:
            if n < 1:
                raise UserError(f"worker counts must be >= 1, got {n}")
        if self.max_workers is not None and self.max_workers < min(self.workers):
            raise UserError(
                f"--max-workers {self.max_workers} is below every simulated worker count"
            )
        if not 0 < self.min_gain <= 1:
            raise UserError(f"--min-gain must lie in (0, 1], got {self.min_gain}")
        if not 0 <= self.link_unfairness < 1:
            raise UserError(f"--link-unfairness must lie in [0, 1), got {self.link_unfairness}")


@dataclass(frozen=True)
class SimRow:
    """One simulated (strategy, N)."""

    strategy: str
    servers: str | None
    workers: int
    step_time_median: float
    throughput_median: float
    speedup: float
    efficiency: float
    split: dict[str, float]
    bottleneck: str
    links: dict[str, dict[str, float]]
    formula: str


@dataclass(frozen=True)
class Recommendation:
    """The best configuration within ``max_workers``, and where each strategy stops paying.

    ``knees[strategy]``: the largest simulated N up to which every added worker adds at
    least ``min_gain`` of an ideal worker's throughput (``None``: it never did beyond one);
    ``bottleneck_at_knee[strategy]``: what a step waits on there."""

    strategy: str
    workers: int
    throughput: float
    speedup: float
    max_workers: int
    min_gain: float
    knees: dict[str, int | None] = field(default_factory=dict)
    bottleneck_at_knee: dict[str, str] = field(default_factory=dict)
    confidence: str = ""


@dataclass(frozen=True)
class SimulateReport:
    model: str
    dataset: str
    batch_size: int
    network: str | None
    profile_id: int | None
    inputs: str
    rows: list[SimRow]
    recommendation: Recommendation

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _config(request: SimulateRequest, strategy: str, workers: int) -> RunConfig:
    """The run configuration the simulated one stands for: every worker its own host
    (``--compute profile``: each computes as the one-worker profile measured, on its own
    cores), behind ``--network`` when given."""
    return RunConfig(
        model=request.model,
        dataset=request.dataset,
        strategy=strategy,
        workers=workers,
        batch_size=request.batch_size,
        servers=request.servers,
        ps_semaphore=request.semaphore,
        microbatches=request.microbatches,
        compute="profile" if request.t_grad is None else f"{request.t_grad:g}",
        network=request.network,
        steps=request.steps,
    )


def _case(request: SimulateRequest, strategy: str, workers: int) -> Case:
    case = case_of(_config(request, strategy, workers))
    if sim_strategy(case) is None:
        raise UserError(f"the simulator has no model of strategy {strategy!r}")
    if case.local_batch < 1:
        raise UserError(
            f"{strategy} splits the batch of {request.batch_size} over the workers: "
            f"at most {request.batch_size} workers, got {workers}"
        )
    return replace(case, host_links=case.network is not None)


def find_workload_profile(request: SimulateRequest) -> tuple[Profile, int | None, str]:
    """The profile to simulate from: ``--profile ID``; else the newest of the workload
    measured behind the same network, else the newest of any; else, with ``--t-grad``,
    one made of the given timings. No profile and no ``--t-grad``: a ``UserError``."""
    if request.t_grad is not None:
        profile = timings_profile(
            request.model,
            request.batch_size,
            request.t_grad,
            request.t_comm,
            request.weight_bytes,
            request.network,
        )
        return profile, None, "given timings (--t-grad)"
    if request.profile_id is not None:
        pinned = _config(request, "sequential", 1).replace(compute_profile=request.profile_id)
        found = replayed_profile(request.db, pinned)
    else:
        keys = (request.db, request.model, request.dataset, request.batch_size)
        found = find_profile_row(*keys, network=request.network) or find_profile_row(*keys)
    if found is None:
        raise UserError(
            f"no stored profile of {request.model} (batch {request.batch_size}, "
            f"{request.dataset}) in {request.db}: run `distbench profile --model "
            f"{request.model} --db {request.db}` or give --t-grad"
        )
    profile, pid = found
    if not profile.server_tensor_bytes:  # stored before the sizes were
        from distbench.profiling.grad_ready import with_model_sizes

        profile = with_model_sizes(profile, _config(request, "sequential", 1))
    where = f"behind {profile.network}" if profile.network else "on loopback"
    return profile, pid, f"profile {pid} of {profile.model} (links measured {where})"


def simulate_workload(request: SimulateRequest) -> SimulateReport:
    profile, pid, source = find_workload_profile(request)
    cases = {(s, n): _case(request, s, n) for s in request.strategies for n in request.workers}
    base_case = _case(request, "sequential", 1)
    unfair = request.link_unfairness
    base = simulate_case(base_case, profile, request.steps, request.seed, unfairness=unfair)
    rows = [
        _row(
            simulate_case(case, profile, request.steps, request.seed, unfairness=unfair), case, base
        )
        for case in cases.values()
    ]
    inputs = f"{source}; {base.inputs.split('; ', 1)[-1]}"
    return SimulateReport(
        model=request.model,
        dataset=request.dataset,
        batch_size=request.batch_size,
        network=request.network,
        profile_id=pid,
        inputs=inputs,
        rows=rows,
        recommendation=recommend(
            rows, request.max_workers or max(request.workers), request.min_gain, inputs
        ),
    )


def _row(sim: Simulated, case: Case, base: Simulated) -> SimRow:
    result = sim.result
    speedup = result.throughput / base.result.throughput
    is_ps = sim.spec.strategy in ("sync-join", "sync-split", "async")
    return SimRow(
        strategy=case.strategy,
        servers=sim.spec.servers if is_ps else None,
        workers=case.workers,
        step_time_median=result.step_time,
        throughput_median=result.throughput,
        speedup=speedup,
        efficiency=speedup / case.workers,
        split=dict(result.split),
        bottleneck=bottleneck(result.split, result.links),
        links=result.links,
        formula=sim.prediction.formula,
    )


def bottleneck(split: dict[str, float], links: dict[str, dict[str, float]]) -> str:
    """What a step spends most of its time on; for communication, the busiest link (a
    central server's two links take turns in a synchronous step, so neither is busy all
    the time), or latency and per-transfer cost where no link is busy."""
    part = max(SPLIT, key=lambda name: split.get(name, 0.0))
    if part == "comm":
        busiest = max(links.items(), key=lambda item: item[1]["busy"], default=None)
        if busiest is None or busiest[1]["busy"] < IDLE_LINK:
            return "communication: latency and per-transfer cost (no link busy)"
        name, use = busiest
        # the symmetric closed forms name one link for all alike ("each host up")
        label = name if name.startswith("each ") else f"the {name}"
        return f"{label} link ({use['busy']:.0%} busy)"
    return {
        "compute": "compute",
        "wait": "waiting for other workers (the slowest, or the pipeline's bubble)",
        "server": "the server's updates",
    }[part]


def knee(rows: Sequence[SimRow], min_gain: float) -> int | None:
    """The largest N up to which each added worker adds at least ``min_gain`` of an
    ideal worker (a speedup of 1 per worker), judged between consecutive simulated Ns:
    ``(S(N) - S(M)) / (N - M) >= min_gain``. Linear scaling never stops paying (the
    knee is the largest N simulated); a network-bound model stops where its speedup
    flattens. ``None`` with a single worker count."""
    ordered = sorted(rows, key=lambda r: r.workers)
    if len(ordered) < 2:
        return None
    for prev, row in pairwise(ordered):
        if (row.speedup - prev.speedup) / (row.workers - prev.workers) < min_gain:
            return prev.workers
    return ordered[-1].workers


def recommend(
    rows: Sequence[SimRow], max_workers: int, min_gain: float, inputs: str
) -> Recommendation:
    within = [r for r in rows if r.workers <= max_workers]
    best = max(within, key=lambda r: (r.throughput_median, -r.workers))
    by_strategy: dict[str, list[SimRow]] = {}
    for row in within:
        by_strategy.setdefault(row.strategy, []).append(row)
    knees = {name: knee(group, min_gain) for name, group in by_strategy.items()}
    at_knee = {
        name: next(r.bottleneck for r in by_strategy[name] if r.workers == n)
        for name, n in knees.items()
        if n is not None
    }
    return Recommendation(
        strategy=best.strategy,
        workers=best.workers,
        throughput=best.throughput_median,
        speedup=best.speedup,
        max_workers=max_workers,
        min_gain=min_gain,
        knees=knees,
        bottleneck_at_knee=at_knee,
        confidence=confidence(inputs),
    )


def confidence(inputs: str) -> str:
    """Which inputs were measured, in words (``inputs``: the report's inputs line)."""
    if inputs.startswith("given timings"):
        return "low: compute and links are given numbers, not measurements"
    if "line rate" in inputs or "loopback" in inputs:
        return (
            "medium: compute measured; the links are the network spec's line rate or "
            "loopback transfers, not measured behind the network simulated"
        )
    return "high: compute and links measured (one worker, two hosts behind the network)"
