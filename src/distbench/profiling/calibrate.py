"""Calibration: measure on this host what the speedup model needs, as a ``Profile``.

Where to start: :func:`profile_model` runs every measurement and returns a
``profiles.Profile``; ``distbench profile`` stores it. The measurements:

- **gradient times** (:func:`measure_steps`): ``k`` spawned processes of ``threads`` threads
  each train the real workload (``strategies.common.build_workload``: same model, data and
  optimizer as a run) at the same time, a barrier before every repetition, each step timed
  by phase (data, forward, backward, update). ``k = 1`` at the profile's thread count gives
  ``t_grad`` and, with smaller batches, the ``1/k`` splits; ``k > 1`` gives the time under
  the CPU contention of ``k`` workers sharing the host, which decides the speedup on a small
  machine.
- **links** (:func:`measure_links`): two gloo ranks (``FileStore`` rendezvous) time a
  ping-pong of one flat buffer of the weight size (``t_comm`` = half the round trip), a
  point-to-point size sweep and an all-reduce size sweep; :func:`fit_latency_bandwidth`
  fits ``t = a + bytes·b`` to each sweep.
- **parameter-server transfer** (``ps_transfer``): the protocol's cost per weight transfer
  beyond the raw bytes.
- **DDP's costs** (:func:`measure_ddp_costs`, ``ddp_costs``): its per-step machinery with
  one rank, and the all-reduce right after a step at each DDP level of ``workers``.
- **for emulated compute**: every timed one-worker step's phases (``phase_samples``) and
  when each parameter's gradient is ready in backward (``grad_ready``).

Every spawned group runs under a wall-clock timeout and is killed when it overruns, so a
calibration never hangs. Medians everywhere; repeats are the caller's choice.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing as mp
import os
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

import torch

from distbench.config import RunConfig
from distbench.errors import RunFailed, UserError
from distbench.harness.noise import OutsideLoadMeter
from distbench.measurement.timer import PhaseTimer
from distbench.profiling.ddp_costs import StepCount, measure_ddp_overhead, measure_loaded_allreduce
from distbench.profiling.grad_ready import measure_grad_ready
from distbench.profiling.primitives import (
    MIB,
    LinkPlan,
    link_fit,
    link_measurements,
    probe_bytes,
    report,
    run_group,
    run_in_group,
    sweep_sizes,
)
from distbench.profiling.profiles import (
    LinkFit,
    LoadedAllReduce,
    Profile,
    StepTimes,
    contention_pairs,
    kernel_send_buffer_max,
)
from distbench.profiling.ps_transfer import measure_ps_transfer
from distbench.strategies.common import (
    build_workload,
    default_step,
    parameter_bytes,
    server_tensor_bytes,
    state_sizes,
)

DEFAULT_SWEEP_MAX = 64 * MIB
STEP_PHASES = ("data", "forward", "backward", "update")

#: Progress hook: (what is being measured, measurements done, measurements in all).
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ProfileRequest:
    """What to calibrate and how hard; ``workers`` bounds the splits and contention levels."""

    cfg: RunConfig
    workers: int = 2
    repeats: int = 10
    warmup: int = 2
    threads: int | None = None
    sweep_max_bytes: int | None = None  # None: see sweep_limit
    timeout: float = 600.0
    splits: bool = True  # measure the 1/k batches (only sync-split predictions need them)
    min_seconds: float = 2.0  # time at least this long per gradient measurement ...
    max_repeats: int = 200  # ... but no more steps than this

    def split_counts(self) -> list[int]:
        return list(range(2, self.workers + 1)) if self.splits else []

    def base_threads(self) -> int:
        return self.threads or os.cpu_count() or 1


# --- gradient times ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StepPlan:
    """How long a contention group trains: ``warmup`` untimed steps, then at least
    ``repeats`` timed ones, more (up to ``max_repeats``) until ``min_seconds`` have passed,
    so that fast models are timed over enough steps for a short disturbance not to decide
    the median."""

    warmup: int
    repeats: int
    min_seconds: float
    max_repeats: int
    timeout: float

    def done(self, timed: int, elapsed: float) -> bool:
        return timed >= self.max_repeats or (timed >= self.repeats and elapsed >= self.min_seconds)


def timed_steps(
    index: int,
    plan: StepPlan,
    barrier: Any,
    stop: Any,
    step: Callable[[], dict[str, float]],
    after_barrier: Callable[[], None] | None = None,
) -> list[dict[str, float]]:
    """The lockstep loop of one process of a contention group: the phases of each timed step.

    Process 0 decides when to stop (``stop``) after its own step; every process reads the
    decision between two barriers, so that no process can read a decision taken during the
    step that follows it. (With one barrier, a process descheduled right after it — on a
    busy machine, for longer than process 0's step — read the stop meant for the next
    round, left, and left the others waiting at the next barrier until the deadline.)
    ``after_barrier`` lets a test stand in for that descheduling."""
    phases: list[dict[str, float]] = []
    started = 0.0
    for rep in itertools.count():
        barrier.wait(plan.timeout)
        if after_barrier is not None:
            after_barrier()
        stopping = stop.is_set()
        barrier.wait(plan.timeout)  # everyone has read the decision before it can change
        if stopping:
            break
        if rep == plan.warmup:
            started = time.perf_counter()
        timed = step()
        if rep >= plan.warmup:
            phases.append(timed)
            if index == 0 and plan.done(len(phases), time.perf_counter() - started):
                stop.set()
    return phases


def _steps_child(
    index: int,
    processes: int,
    cfg_dict: dict[str, Any],
    batch: int,
    threads: int,
    plan: StepPlan,
    barrier: Any,
    stop: Any,
    out: Any,
) -> None:
    """One process of a contention group: time training steps by phase, in lockstep with
    the others (``timed_steps``), so every process times the same number of steps."""

    def measure() -> list[dict[str, float]]:
        torch.set_num_threads(threads)
        cfg = RunConfig.from_dict(cfg_dict)
        device = torch.device("cpu")
        work = build_workload(cfg, device, batch, index, processes)
        timer = PhaseTimer()

        def one_step() -> dict[str, float]:
            default_step(work, device, timer)
            return timer.end_step()[1]

        return timed_steps(index, plan, barrier, stop, one_step)

    report(out, index, measure)


def summarize_steps(
    per_process: list[list[dict[str, float]]], threads: int, batch: int
) -> StepTimes:
    """Medians over processes and repetitions; ``*_max`` from each repetition's slowest."""
    flat = [p for proc in per_process for p in proc]
    grads = [p["forward"] + p["backward"] for p in flat]
    steps = [sum(p.get(name, 0.0) for name in STEP_PHASES) for p in flat]
    by_rep = list(zip(*per_process, strict=False))
    grad_max = [max(p["forward"] + p["backward"] for p in rep) for rep in by_rep]
    step_max = [max(sum(p.get(n, 0.0) for n in STEP_PHASES) for p in rep) for rep in by_rep]
    return StepTimes(
        processes=len(per_process),
        threads=threads,
        batch_size=batch,
        data=median(p.get("data", 0.0) for p in flat),
        forward=median(p["forward"] for p in flat),
        backward=median(p["backward"] for p in flat),
        update=median(p.get("update", 0.0) for p in flat),
        t_grad=median(grads),
        t_grad_max=median(grad_max),
        t_step=median(steps),
        t_step_max=median(step_max),
        repeats=len(by_rep),
    )


def measure_steps(
    req: ProfileRequest, processes: int, threads: int, batch: int | None = None
) -> StepTimes:
    """``processes`` processes of ``threads`` threads train ``batch`` samples at once."""
    return measure_step_samples(req, processes, threads, batch)[0]


def measure_step_samples(
    req: ProfileRequest, processes: int, threads: int, batch: int | None = None
) -> tuple[StepTimes, list[list[dict[str, float]]]]:
    """``measure_steps`` with every timed step's phases, per process."""
    batch = batch or req.cfg.batch_size
    ctx = mp.get_context("spawn")
    barrier, stop = ctx.Barrier(processes), ctx.Event()
    plan = StepPlan(
        req.warmup, req.repeats, req.min_seconds, max(req.repeats, req.max_repeats), req.timeout
    )
    args = [
        (i, processes, req.cfg.to_dict(), batch, threads, plan, barrier, stop)
        for i in range(processes)
    ]
    what = f"gradient time ({processes} x {threads} threads, batch {batch})"
    per_process = run_group(_steps_child, args, req.timeout, what)
    return summarize_steps(per_process, threads, batch), per_process


# --- links ------------------------------------------------------------------------------------


def _links_child(rank: int, store_path: str, plan: LinkPlan, out: Any) -> None:
    """One of the two ranks of the link measurement on this host's loopback."""
    work = lambda: link_measurements(rank, plan)  # noqa: E731 - runs in the child
    run_in_group(out, rank, rank, 2, plan.timeout, 1, store_path, work)


def _links_on_loopback(plan: LinkPlan) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="distbench-links-") as tmp:
        store_path = str(Path(tmp) / "store")
        results = run_group(
            _links_child,
            [(0, store_path, plan), (1, store_path, plan)],
            plan.timeout,
            "link measurement",
        )
    return dict(results[0])


def _links_on_hosts(plan: LinkPlan, network: str) -> dict[str, list[float]]:
    """The same measurement between two emulated hosts behind ``network``'s shaped links
    (``distbench.profiling.linkhost`` on each; needs root, like ``run --network``)."""
    import json
    import sys

    from distbench.netem import emulated_network, parse_network
    from distbench.netem.multihost import run_on_hosts
    from distbench.netem.namespaces import check_spec_supported
    from distbench.profiling.linkhost import RESULT_MARK

    spec = parse_network(network)
    check_spec_supported(spec)
    plan_json = json.dumps(asdict(plan))
    with emulated_network(spec, 2) as net:
        results = run_on_hosts(
            net,
            lambda host: [
                sys.executable,
                "-m",
                "distbench.profiling.linkhost",
                "--rank",
                str(host.index),
                "--plan",
                plan_json,
            ],
            {**os.environ, "OMP_NUM_THREADS": "1"},
            plan.timeout,
        )
    for code, output in results:
        if code != 0:
            tail = output.strip().splitlines()[-1:] or ["no output"]
            raise RunFailed(
                f"link measurement under --network {network} failed (exit code "
                f"{code}): {tail[0][:300]}"
            )
    for line in results[0][1].splitlines():
        if line.startswith(RESULT_MARK):
            return dict(json.loads(line.removeprefix(RESULT_MARK)))
    raise RunFailed(f"link measurement under --network {network} printed no result")


def sweep_limit(sweep_max_bytes: int | None, network: str | None) -> int:
    """The largest sweep message: as asked, else 64 MiB on loopback and about two seconds
    of traffic (1-64 MiB) behind a shaped link, where 64 MiB would take minutes."""
    if sweep_max_bytes is not None:
        return sweep_max_bytes
    if network is None:
        return DEFAULT_SWEEP_MAX
    from distbench.netem import parse_network

    return probe_bytes(parse_network(network))


def measure_links(
    weight_bytes: int,
    grad_bytes: int,
    sweep_max_bytes: int,
    repeats: int,
    timeout: float,
    network: str | None = None,
) -> tuple[float, LinkFit, LinkFit, float, float]:
    """``t_comm`` of ``weight_bytes``, the fitted point-to-point and all-reduce links, and
    the bytes the kernel held when a send returned (``primitives.send_held``) of a large
    message and of one of ``weight_bytes``, over loopback or, with ``network``, between two
    emulated hosts behind it.

    ``t_comm`` is the point-to-point fit at ``weight_bytes``, not the sweep's own point of
    that size: one point is a median of a few round trips, and on a shared host one such
    median was 8x its neighbours (lenet5: 1.72 ms at 247 kB between 0.15 ms at 64 KiB and
    0.22 ms at 256 KiB); the fit leans on every size."""
    plan = LinkPlan(weight_bytes, grad_bytes, sweep_sizes(sweep_max_bytes), repeats, timeout)
    results = _links_on_hosts(plan, network) if network else _links_on_loopback(plan)
    p2p = link_fit("p2p", 2, plan.p2p_sizes(), results["p2p"])
    t_comm = p2p.alpha + weight_bytes / p2p.beta
    allreduce = link_fit("allreduce", 2, plan.allreduce_sizes(), results["allreduce"])
    held = results["send_held"]
    return t_comm, p2p, allreduce, float(held[0]), float(held[-1])


# --- the whole profile ------------------------------------------------------------------------


def _plan(req: ProfileRequest) -> list[tuple[str, int, int, int]]:
    """(label, processes, threads, batch) for every gradient measurement, base first."""
    cores, base, batch = os.cpu_count() or 1, req.base_threads(), req.cfg.batch_size
    plan = [("t_grad", 1, base, batch)]
    plan += [(f"t_grad 1/{k} batch", 1, base, max(1, batch // k)) for k in req.split_counts()]
    plan += [
        (f"{k} x {t} threads", k, t, batch)
        for k, t in contention_pairs(req.workers, cores)
        if (k, t) != (1, base)
    ]
    return plan


def profile_model(req: ProfileRequest, progress: Progress | None = None) -> Profile:
    """Run every calibration measurement of ``req`` (see the module docstring)."""
    if req.workers < 1 or req.repeats < 1 or req.warmup < 0:
        raise UserError("--workers and --repeats must be at least 1, --warmup at least 0")
    notify = progress or (lambda what, done, total: None)
    outside = OutsideLoadMeter()
    plan = _plan(req)
    total = len(plan) + 4
    measured: list[StepTimes] = []
    samples: list[dict[str, float]] = []
    for done, (label, processes, threads, batch) in enumerate(plan):
        notify(label, done, total)
        times, per_process = measure_step_samples(req, processes, threads, batch)
        measured.append(times)
        if done == 0:  # the one-worker steps, which emulated compute replays
            samples = [{k: float(v) for k, v in step.items()} for step in per_process[0]]
    weight_bytes, grad_bytes, tensors = state_sizes(req.cfg)
    where = f" behind --network {req.cfg.network}" if req.cfg.network else ""
    notify(f"links{where} (ping-pong, p2p and all-reduce sweeps)", len(plan), total)
    t_comm, p2p, allreduce, held, held_of_weights = measure_links(
        weight_bytes,
        grad_bytes,
        sweep_limit(req.sweep_max_bytes, req.cfg.network),
        req.repeats,
        req.timeout,
        req.cfg.network,
    )
    notify("parameter-server transfer (pull + push without compute)", len(plan) + 1, total)
    one_thread = next((m for m in measured if (m.processes, m.threads) == (1, 1)), measured[0])
    ps_overhead = measure_ps_transfer(req.cfg, req.repeats, req.timeout, one_thread.t_grad)
    notify("DDP machinery and the all-reduce after a step", len(plan) + 2, total)
    ddp_overhead, loaded = measure_ddp_costs(req, measured, grad_bytes)
    notify("gradient order in backward (for emulated compute)", len(plan) + 3, total)
    grad_ready = measure_grad_ready(
        req.cfg, req.base_threads(), req.warmup, req.repeats, req.timeout
    )
    notify("done", total, total)
    profile = _assemble(
        req, measured, (weight_bytes, grad_bytes, tensors), (t_comm, p2p, allreduce, held)
    )
    return replace(
        profile,
        ps_overhead=ps_overhead,
        ddp_overhead=ddp_overhead,
        allreduce_loaded=loaded,
        phase_samples=samples,
        grad_ready=grad_ready,
        param_bytes=parameter_bytes(req.cfg),
        server_tensor_bytes=server_tensor_bytes(req.cfg),
        outside_load_cores=round(outside.stop().cores, 3),
        send_held_weight_bytes=held_of_weights,
    )


def ddp_levels(workers: int, cores: int) -> list[tuple[int, int]]:
    """(ranks, threads each) of the DDP runs of 2..``workers`` workers on this host."""
    return [(k, max(1, cores // k)) for k in range(2, workers + 1)]


def measure_ddp_costs(
    req: ProfileRequest, measured: list[StepTimes], grad_bytes: int
) -> tuple[float, list[LoadedAllReduce]]:
    """``ddp_costs``: the one-rank machinery at the base thread count, then the all-reduce
    after a step for every DDP level of ``req.workers``, each timed about as long as a
    gradient measurement (``req.min_seconds``). Behind ``--network`` the all-reduce is not
    measured: it would run on loopback, and there the wire, not the CPU, sets its pace."""

    def count(step: float) -> StepCount:
        return StepCount.lasting(req.min_seconds, step, req.warmup, req.repeats, req.max_repeats)

    base = measured[0]
    overhead = measure_ddp_overhead(req.cfg, base.threads, count(2 * base.t_step), req.timeout)
    loaded = []
    levels = ddp_levels(req.workers, os.cpu_count() or 1) if req.cfg.network is None else []
    for k, t in levels:
        level = next((m for m in measured if (m.processes, m.threads) == (k, t)), base)
        loaded.append(
            measure_loaded_allreduce(
                req.cfg, k, t, grad_bytes, count(level.t_step_max), req.timeout
            )
        )
    return overhead, loaded


def _assemble(
    req: ProfileRequest,
    measured: list[StepTimes],
    sizes: tuple[int, int, int],
    links: tuple[float, LinkFit, LinkFit, float],
) -> Profile:
    base, n_splits = measured[0], len(req.split_counts())
    splits = [base.t_grad, *(m.t_grad for m in measured[1 : 1 + n_splits])]
    contended = [base, *measured[1 + n_splits :]]
    weight_bytes, grad_bytes, tensors = sizes
    t_comm, p2p, allreduce, held = links
    if not all(math.isfinite(v) and v > 0 for v in (base.t_grad, t_comm)):
        raise RunFailed("calibration measured a non-positive time")
    return Profile(
        model=req.cfg.model,
        dataset=req.cfg.dataset,
        batch_size=req.cfg.batch_size,
        threads=req.base_threads(),
        workers=req.workers,
        repeats=req.repeats,
        created_at=datetime.now(UTC).isoformat(),
        cores=os.cpu_count() or 1,
        host=socket.gethostname(),
        torch_version=torch.__version__,
        input_size=req.cfg.input_size,
        t_grad=base.t_grad,
        t_forward=base.forward,
        t_backward=base.backward,
        t_data=base.data,
        t_update=base.update,
        t_grad_split=splits,
        weight_bytes=weight_bytes,
        grad_bytes=grad_bytes,
        tensors=tensors,
        t_comm=t_comm,
        p2p=p2p,
        allreduce=allreduce,
        contended=contended,
        network=req.cfg.network,
        send_buffer_max=kernel_send_buffer_max(),
        send_held_bytes=held,
    )


def refresh_contention(
    profile: Profile, req: ProfileRequest, processes: int, threads: int
) -> Profile:
    """``profile`` with its ``processes`` x ``threads`` measurement taken again now.

    On a host shared with other work the speed of the machine drifts within minutes;
    ``distbench validate`` calls this just before each run so that the calibration the
    prediction uses and the run it is compared with see the same background load."""
    fresh = measure_steps(req, processes, threads, req.cfg.batch_size)
    same = [(c.processes, c.threads) == (processes, threads) for c in profile.contended]
    contended = [fresh if hit else c for c, hit in zip(profile.contended, same, strict=True)]
    if not any(same):
        contended.append(fresh)  # the base measurement stays first
    changes: dict[str, Any] = {"contended": contended, "created_at": datetime.now(UTC).isoformat()}
    if (processes, threads) == (1, profile.threads):
        changes.update(
            t_grad=fresh.t_grad,
            t_forward=fresh.forward,
            t_backward=fresh.backward,
            t_data=fresh.data,
            t_update=fresh.update,
            t_grad_split=[fresh.t_grad, *profile.t_grad_split[1:]],
        )
    return replace(profile, **changes)
