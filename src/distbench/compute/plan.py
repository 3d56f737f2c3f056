"""``--compute``: what it means, and the plan an emulated worker replays (pure, no torch).

- ``real``: the model's forward, backward and update run (the default).
- ``profile``: each step's data, forward, backward and update are waits drawn from the
  stored one-worker profile of this workload: one whole measured step per draw (so the
  phases of a step keep their correlation), independently on every rank, so a synchronous
  step waits for the slowest of N draws as it would on N real machines.
- a number ``T``: ``T`` seconds of gradient time (forward + backward) per batch of
  ``--batch-size``, split by the profile's forward:backward ratio, or 1:2 without one; no
  data or update time. The same every step.

Either way a plan also says when each parameter's gradient becomes ready during backward
(``grad_ready``: the fraction of backward elapsed, measured by ``distbench profile``; by
reverse parameter order weighted by size where not measured), so DDP's buckets launch
when they would. A strategy whose local batch is not the profile's (``ps-sync-split``
splits the batch) scales data, forward and backward by ``batch_ratio``.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median
from typing import Any, Literal

from distbench.errors import UserError

#: The file in a run directory that holds the plan every emulated rank replays.
PLAN_FILE = "compute.json"
#: Forward : backward split of a user-given gradient time without a profile.
DEFAULT_FORWARD_SHARE = 1.0 / 3.0
#: The phases a plan replays; ``comm``, ``pull``, ``push`` and ``wait`` stay real.
EMULATED_PHASES = ("data", "forward", "backward", "update")


@dataclass(frozen=True)
class ComputeSpec:
    """``--compute`` parsed: ``mode`` and, for ``seconds``, the gradient time per batch."""

    mode: Literal["real", "profile", "seconds"]
    seconds: float | None = None

    @property
    def emulated(self) -> bool:
        return self.mode != "real"


def parse_compute(value: str | float | int) -> ComputeSpec:
    """``real`` | ``profile`` | a positive number of seconds; UserError otherwise."""
    text = str(value).strip().lower()
    if text in ("real", "profile"):
        return ComputeSpec(mode=text)  # type: ignore[arg-type]
    try:
        seconds = float(text.removesuffix("s"))
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise UserError(
            f"--compute must be real, profile or a positive number of seconds of gradient "
            f"time per batch, got '{value}'"
        )
    return ComputeSpec(mode="seconds", seconds=seconds)


def normalized_compute(value: str | float | int) -> str:
    """The stored spelling of ``--compute``: ``real``, ``profile`` or the seconds as ``%g``."""
    spec = parse_compute(value)
    return f"{spec.seconds:g}" if spec.mode == "seconds" else spec.mode


@dataclass(frozen=True)
class ComputePlan:
    """What an emulated rank replays. ``steps``: the measured steps to draw from, each a
    dict of ``EMULATED_PHASES`` (seconds, at the profile's batch); ``grad_ready[i]``: the
    fraction of backward elapsed when parameter ``i`` (``model.parameters()`` order) has
    its gradient, empty for "by size, last layer first"; ``scale``: this rank's local batch
    relative to the profile's (data, forward and backward are multiplied by it)."""

    source: str
    steps: list[dict[str, float]]
    grad_ready: list[float] = field(default_factory=list)
    scale: float = 1.0
    profile_id: int | None = None

    def draw(self, rng: random.Random) -> dict[str, float]:
        """One step's phases: a random measured step, scaled to this rank's batch."""
        step = self.steps[rng.randrange(len(self.steps))] if len(self.steps) > 1 else self.steps[0]
        return {
            phase: step.get(phase, 0.0) * (1.0 if phase == "update" else self.scale)
            for phase in EMULATED_PHASES
        }

    def mean(self, phase: str) -> float:
        scale = 1.0 if phase == "update" else self.scale
        return scale * sum(s.get(phase, 0.0) for s in self.steps) / len(self.steps)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ComputePlan:
        return cls(**data)


def write_plan(run_dir: Path, plan: ComputePlan) -> Path:
    path = run_dir / PLAN_FILE
    path.write_text(json.dumps(plan.to_dict()), encoding="utf-8")
    return path


def read_plan(run_dir: Path) -> ComputePlan:
    path = run_dir / PLAN_FILE
    if not path.is_file():
        raise RuntimeError(f"emulated compute: {path} is missing (the launcher writes it)")
    return ComputePlan.from_dict(json.loads(path.read_text(encoding="utf-8")))


def batch_ratio(batch_size: int, t_grad_split: list[float], local_batch: int) -> float:
    """The gradient time of ``local_batch`` samples relative to ``batch_size`` samples.

    ``t_grad_split[k-1]`` is the measured time of ``batch_size // k`` samples. An exact
    measured batch is used as is; otherwise the line fitted through the measured points
    (proportional to the batch with one point)."""
    if local_batch == batch_size or not t_grad_split:
        return 1.0
    points = [(max(1, batch_size // k), t) for k, t in enumerate(t_grad_split, start=1)]
    base = t_grad_split[0]
    for size, seconds in points:
        if size == local_batch:
            return seconds / base
    sizes = {size for size, _ in points}
    if len(sizes) < 2:
        return local_batch / batch_size
    n = len(points)
    mean_b = sum(b for b, _ in points) / n
    mean_t = sum(t for _, t in points) / n
    slope = sum((b - mean_b) * (t - mean_t) for b, t in points) / sum(
        (b - mean_b) ** 2 for b, _ in points
    )
    fitted = mean_t + slope * (local_batch - mean_b)
    return max(fitted, 0.0) / base


def plan_from_profile(
    profile_id: int,
    phase_samples: list[dict[str, float]],
    grad_ready: list[float],
    scale: float,
) -> ComputePlan:
    """``--compute profile``: replay the profile's measured steps."""
    if not phase_samples:
        raise UserError(
            f"profile {profile_id} has no per-step phase times (it was taken before emulated "
            "compute existed): run `distbench profile` again"
        )
    steps = [{p: float(s.get(p, 0.0)) for p in EMULATED_PHASES} for s in phase_samples]
    return ComputePlan("profile", steps, list(grad_ready), scale, profile_id)


def plan_from_seconds(
    seconds: float,
    scale: float,
    forward_share: float | None = None,
    grad_ready: list[float] | None = None,
    profile_id: int | None = None,
) -> ComputePlan:
    """``--compute T``: a fixed gradient time, split forward : backward by the profile's
    share (``forward_share``) or 1 : 2."""
    share = DEFAULT_FORWARD_SHARE if forward_share is None else forward_share
    step = {"data": 0.0, "forward": seconds * share, "backward": seconds * (1 - share)}
    step["update"] = 0.0
    return ComputePlan(f"{seconds:g} s", [step], list(grad_ready or []), scale, profile_id)


#: Emulation is flagged unfaithful when the run's processes, measured, keep this share of
#: the host's cores busy, or the whole machine is this busy (the kernel's work for the
#: emulated network included): their communication's own CPU work then waits for a core.
SATURATED_SHARE = 0.9
#: The waits must replay the profile within this time-weighted error (median over ranks);
#: beyond it, the cores were too busy to wake the ranks on time.
WAIT_ERROR_GOAL = 0.01


def emulation_report(
    rank_summaries: list[dict[str, Any]],
    cpu_cores: float | None,
    cores: int,
    machine_busy: float | None = None,
) -> dict[str, Any]:
    """One run's emulation figures from its workers' ``compute`` summaries: how far the
    waits were off (``wait_error``: the time-weighted error, median over ranks, and the
    worst rank's), how late gradients were released against their deadlines (relative to
    the step's backward time), and the measured CPU of all its processes during the
    measured steps (``cpu_saturated``: at least ``SATURATED_SHARE`` of the cores), and the
    whole machine's busy share then (``machine_busy``, softirq included;
    ``machine_saturated`` from ``SATURATED_SHARE`` up). ``faithful``: nothing saturated
    and waits off by no more than ``WAIT_ERROR_GOAL``."""
    first = rank_summaries[0] if rank_summaries else {}
    report: dict[str, Any] = {
        "source": first.get("source"),
        "profile_id": first.get("profile_id"),
        "batch_scale": first.get("batch_scale"),
    }
    for key, name in (("waits", "wait_error"), ("backward_releases", "release_late")):
        logs = [s[key] for s in rank_summaries if s.get(key, {}).get("waits")]
        if logs:
            report[name] = median(log["error_weighted"] for log in logs)
            report[f"{name}_max"] = max(log["error_weighted"] for log in logs)
            report[f"{name}_late_max_s"] = max(log["late_max_s"] for log in logs)
    if cpu_cores is not None:
        report["cpu_cores"] = round(cpu_cores, 3)
        report["cpu_saturated"] = cpu_cores >= SATURATED_SHARE * cores
    report.update(machine_figures(machine_busy))
    report["faithful"] = is_faithful(report)
    return report


def machine_figures(machine_busy: float | None) -> dict[str, Any]:
    """``machine_busy`` and ``machine_saturated`` of an emulation report (none unknown)."""
    if machine_busy is None:
        return {}
    return {
        "machine_busy": round(machine_busy, 3),
        "machine_saturated": machine_busy >= SATURATED_SHARE,
    }


def unfaithful_reasons(report: dict[str, Any]) -> list[str]:
    """Why an emulation report says the run did not replay its profile: its cores were
    saturated (by its processes, or the machine as a whole), or its waits were off by more
    than ``WAIT_ERROR_GOAL`` (unknown figures count as met). Empty when it did."""
    reasons = []
    if report.get("cpu_saturated"):
        reasons.append(f"cpu_saturated, {report.get('cpu_cores')} cores")
    if report.get("machine_saturated"):
        busy = float(report.get("machine_busy") or 0.0)
        reasons.append(f"machine saturated, {busy * 100:.0f} % busy (kernel work included)")
    wait_error = report.get("wait_error") or 0.0
    if wait_error > WAIT_ERROR_GOAL:
        reasons.append(f"wait error {wait_error * 100:.1f} % > {WAIT_ERROR_GOAL * 100:.0f} %")
    return reasons


def is_faithful(report: dict[str, Any]) -> bool:
    """Whether an emulation report says the run replayed its profile."""
    return not unfaithful_reasons(report)
