"""Which profile an emulated run replays, and the plan written into its run directory.

Called by the run session before anything starts: ``resolve_compute`` fixes the profile id
in the config (so the stored result says which profile it replayed, and a speedup's
baseline must have replayed the same one); ``compute_plan`` builds what every rank reads.
A profile matches a run when model, dataset, batch and input size agree; its network does
not matter (the gradient times do not depend on it).
"""

from __future__ import annotations

from pathlib import Path

from distbench.compute.plan import (
    ComputePlan,
    batch_ratio,
    parse_compute,
    plan_from_profile,
    plan_from_seconds,
)
from distbench.config import RunConfig
from distbench.errors import UserError
from distbench.profiling.profiles import Profile
from distbench.store import open_store


def _matches(profile: Profile, cfg: RunConfig) -> bool:
    return (
        profile.model == cfg.model
        and profile.dataset == cfg.dataset
        and profile.batch_size == cfg.batch_size
        and profile.input_size == cfg.input_size
    )


def _workload(cfg: RunConfig) -> str:
    size = f", --input-size {cfg.input_size}" if cfg.input_size else ""
    return f"--model {cfg.model} --dataset {cfg.dataset} --batch-size {cfg.batch_size}{size}"


def stored_profiles(db: str | Path, cfg: RunConfig) -> list[tuple[Profile, int]]:
    """The stored profiles of ``cfg``'s workload, newest first."""
    if not Path(db).is_file():
        return []
    store = open_store(db)
    try:
        rows = store.load_profiles(cfg.model, cfg.dataset, cfg.batch_size)
    finally:
        store.close()
    found = [(Profile.from_dict(row), int(row["profile_id"])) for row in rows]
    return [(p, pid) for p, pid in found if _matches(p, cfg)]


def replayed_profile(db: str | Path, cfg: RunConfig) -> tuple[Profile, int] | None:
    """The profile ``cfg`` replays: ``--compute-profile ID``, else the newest of its
    workload that has per-step phase times. UserError for a wrong or unusable id, and for
    ``--compute profile`` with no profile at all."""
    candidates = stored_profiles(db, cfg)
    if cfg.compute_profile is not None:
        chosen = [(p, pid) for p, pid in candidates if pid == cfg.compute_profile]
        if not chosen:
            raise UserError(
                f"--compute-profile {cfg.compute_profile}: no profile with that id of "
                f"{_workload(cfg)} in {db}"
            )
        return chosen[0]
    usable = [(p, pid) for p, pid in candidates if p.phase_samples]
    if usable:
        return usable[0]
    if parse_compute(cfg.compute).mode == "profile":
        older = " (the stored ones predate emulated compute)" if candidates else ""
        raise UserError(
            f"--compute profile needs a stored profile of {_workload(cfg)} in {db}{older}: "
            f"run `distbench profile {_workload(cfg)} --db {db}` first"
        )
    return None


def resolve_compute(cfg: RunConfig, db: str | Path) -> RunConfig:
    """``cfg`` with ``compute_profile`` set to the profile an emulated run uses (for
    ``--compute SECONDS`` the forward share and gradient order, when one exists)."""
    if not parse_compute(cfg.compute).emulated:
        return cfg
    found = replayed_profile(db, cfg)
    return cfg.replace(compute_profile=found[1] if found else None)


def compute_plan(cfg: RunConfig, db: str | Path, local_batch: int) -> ComputePlan | None:
    """What every rank of ``cfg`` replays (None for real compute); ``cfg`` is resolved."""
    spec = parse_compute(cfg.compute)
    if not spec.emulated:
        return None
    found = replayed_profile(db, cfg) if cfg.compute_profile is not None else None
    if spec.mode == "profile":
        if found is None:
            raise UserError("--compute profile: the run's profile was not resolved")
        profile, pid = found
        scale = batch_ratio(profile.batch_size, profile.t_grad_split, local_batch)
        return plan_from_profile(pid, profile.phase_samples, profile.grad_ready, scale)
    assert spec.seconds is not None
    if found is None:
        return plan_from_seconds(spec.seconds, local_batch / cfg.batch_size)
    profile, pid = found
    grad = profile.t_forward + profile.t_backward
    return plan_from_seconds(
        spec.seconds,
        batch_ratio(profile.batch_size, profile.t_grad_split, local_batch),
        forward_share=profile.t_forward / grad if grad > 0 else None,
        grad_ready=profile.grad_ready,
        profile_id=pid,
    )
