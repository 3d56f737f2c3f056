"""Waiting for the slowest rank: separated from the transfer, and the slowest rank named.

In an all-reduce step (DDP, Horovod, TensorFlow's mirrored strategy) a rank's exposed
communication after its backward pass is two things: the transfer itself, and waiting for
the rank whose backward pass ends last (no all-reduce can finish before every rank has
contributed). The records say when each rank's compute ended (``t`` is the step's
wall-clock start; data, forward and backward follow contiguously), so for step ``i``

    wait(r, i) = min(comm(r, i), latest compute end(i) - compute end(r, i))

moves from ``comm`` to ``wait``. The ranks must share a clock: one host, or nodes whose
clocks agree (NTP keeps them within about a millisecond; compare that with the waits).

The slowest rank is the one with the largest mean compute (data + forward + backward) per
step; ``Straggler`` says by how much it is behind the others and how long they wait.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from statistics import fmean, median
from typing import Any

from distbench.measurement.records import RankRecords

COMPUTE_PHASES = ("data", "forward", "backward")


@dataclass(frozen=True)
class Straggler:
    """The slowest rank of a synchronous run with several workers."""

    rank: int
    host: str | None
    compute_s: float  # its mean compute per step
    others_compute_s: float  # the median of the other ranks' mean compute
    behind_s: float  # compute_s - others_compute_s
    behind_fraction: float  # behind_s / others_compute_s
    others_wait_s: float  # the other ranks' mean wait per step (0 where not separated)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sentence(self) -> str:
        where = f" on {self.host}" if self.host else ""
        wait = (
            f"; the others wait {self.others_wait_s * 1e3:.1f} ms per step"
            if (self.others_wait_s > 0)
            else ""
        )
        return (
            f"slowest rank {self.rank}{where}: {self.behind_s * 1e3:.1f} ms per step "
            f"({self.behind_fraction:+.0%}) more compute than the others{wait}"
        )


def straggler_of(extra: dict[str, Any] | None) -> Straggler | None:
    """The slowest rank a stored result names (``extra["slowest_rank"]``), if any."""
    found = (extra or {}).get("slowest_rank")
    return Straggler(**found) if isinstance(found, dict) else None


def compute_seconds(step: dict[str, Any]) -> float:
    return float(sum(step["phases"].get(p, 0.0) for p in COMPUTE_PHASES))


def aligned_steps(workers: list[RankRecords]) -> dict[int, dict[int, dict[str, Any]]]:
    """Step index -> rank -> step record, for the measured steps every worker recorded."""
    by_step: dict[int, dict[int, dict[str, Any]]] = {}
    for worker in workers:
        for step in worker.measured_steps():
            by_step.setdefault(step["step"], {})[worker.rank] = step
    return {i: ranks for i, ranks in by_step.items() if len(ranks) == len(workers)}


def separates_wait(workers: list[RankRecords]) -> bool:
    """All-reduce steps only: a ``comm`` phase and no ``wait`` of the strategy's own (the
    parameter-server and pipeline strategies time their waits themselves)."""
    steps = [s for w in workers for s in w.measured_steps()]
    return (
        len(workers) > 1
        and any("comm" in s["phases"] for s in steps)
        and not any("wait" in s["phases"] for s in steps)
    )


def separate_wait(workers: list[RankRecords]) -> None:
    """Move each rank's wait for the last compute end from ``comm`` to ``wait``, in place
    (in every measured step every worker recorded)."""
    for ranks in aligned_steps(workers).values():
        ends = {r: s["t"] + compute_seconds(s) for r, s in ranks.items()}
        latest = max(ends.values())
        for rank, step in ranks.items():
            phases = step["phases"]
            wait = max(0.0, min(phases.get("comm", 0.0), latest - ends[rank]))
            phases["comm"] = phases.get("comm", 0.0) - wait
            phases["wait"] = wait


def slowest_rank(workers: list[RankRecords]) -> Straggler | None:
    """The worker with the largest mean compute per step (None with fewer than 2)."""
    if len(workers) < 2:
        return None
    compute = {w.rank: fmean(compute_seconds(s) for s in w.measured_steps()) for w in workers}
    waits = {
        w.rank: fmean(s["phases"].get("wait", 0.0) for s in w.measured_steps()) for w in workers
    }
    slowest = max(compute, key=lambda r: compute[r])
    others = [c for r, c in compute.items() if r != slowest]
    typical = median(others)
    behind = compute[slowest] - typical
    host = next(w.meta.get("host") for w in workers if w.rank == slowest)
    return Straggler(
        rank=slowest,
        host=str(host) if host else None,
        compute_s=compute[slowest],
        others_compute_s=typical,
        behind_s=behind,
        behind_fraction=behind / typical if typical > 0 else 0.0,
        others_wait_s=fmean(w for r, w in waits.items() if r != slowest),
    )
