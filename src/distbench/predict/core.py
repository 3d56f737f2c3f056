"""The prediction core: one configuration's time per step from a calibration profile.

Where to start: :func:`case_of` reduces a run configuration to the facts the model needs
(``Case``: no timings), :func:`predict_case` predicts its step from a ``Profile``. Which
model a strategy gets is the strategy contract's ``prediction_model`` (sequential, ddp,
sync-join, sync-split, async); the parameter-server compositions of the thesis' formulas
(:func:`ps_sync_iteration`, :func:`ps_async_training`) are shared with ``estimate``, so both
commands compute a parameter server the same way.

**Inputs.** Only the calibration profile: gradient times under the matching CPU contention
(``StepTimes`` for ``processes`` x ``threads``), ``t_comm`` plus the measured protocol cost
per parameter-server transfer, the fitted all-reduce ``alpha``/``beta``, DDP's per-step
machinery and, with no spare core, the all-reduce measured right after a step. Never a
timing of the configuration being predicted. Pure: no torch, no store, nothing printed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, get_args

from distbench.compute.plan import batch_ratio, parse_compute
from distbench.errors import UserError
from distbench.predict import formulas as f
from distbench.profiling.profiles import Profile, StepTimes
from distbench.registry import processes as process_count
from distbench.registry import resolved_threads, strategy_facts

if TYPE_CHECKING:
    from distbench.config import RunConfig

#: Where parameter-server weights live: one central server process, or sharded over the
#: workers. The thesis calls the sharded case a "distributed" server; that word is
#: accepted everywhere a server type is read (``canonical_server``).
Server = Literal["central", "sharded"]
SERVERS: tuple[str, ...] = get_args(Server)
SERVER_ALIASES = {"distributed": "sharded"}

#: The prediction models ``predict_case`` has (a strategy's ``prediction_model``).
PREDICTED_MODELS = ("sequential", "ddp", "sync-join", "sync-split", "async")


def canonical_server(name: str) -> Server:
    """``central`` or ``sharded`` (``distributed``, the thesis' word, means ``sharded``)."""
    resolved = SERVER_ALIASES.get(name, name)
    if resolved not in SERVERS:
        raise UserError(
            f"unknown server {name!r}; choose from central, sharded (or its alias distributed)"
        )
    return "sharded" if resolved == "sharded" else "central"


def predicts(cfg: RunConfig) -> bool:
    """Whether ``predict_case`` has a model for ``cfg``'s strategy."""
    return strategy_facts(cfg.framework, cfg.strategy).prediction_model in PREDICTED_MODELS


@dataclass(frozen=True)
class Band:
    """A predicted time with the thesis' best and worst cases where it has them."""

    best: float | None
    worst: float | None
    estimate: float


def ps_sync_iteration(t_grad: float, t_comm: float, n: int, server: Server) -> Band:
    """One synchronous parameter-server iteration: eq. 4.12 (sharded: no band) or eq.
    4.4 / 4.7 / 4.11 (central: best, worst, their mean)."""
    if server == "sharded":
        return Band(None, None, f.sync_distributed(t_grad, t_comm, n))
    return Band(
        f.sync_central_best(t_grad, t_comm, n),
        f.sync_central_worst(t_grad, t_comm, n),
        f.sync_central_estimate(t_grad, t_comm, n),
    )


def ps_async_training(t_grad: float, t_comm: float, n: int, d: int, server: Server) -> Band:
    """Asynchronous training of ``d`` batches: eq. 4.21 (sharded) or eq. 4.15 / 4.16 /
    4.20 (central)."""
    if server == "sharded":
        return Band(None, None, f.async_distributed(t_grad, t_comm, n, d))
    return Band(
        f.async_central_best(t_grad, t_comm, n, d),
        f.async_central_worst(t_grad, t_comm, n, d),
        f.async_central_estimate(t_grad, t_comm, n, d),
    )


@dataclass(frozen=True)
class Case:
    """The facts of one configuration that the model needs (no timings)."""

    model: str
    dataset: str
    strategy: str
    workers: int
    batch_size: int
    local_batch: int
    global_batch: int
    threads: int
    servers: str
    steps: int
    synchronous: bool
    prediction_model: str | None = None  # the strategy contract's PredictionModel
    compute: str = "real"  # --compute: real, profile or seconds (emulated compute)
    #: Every process is its own emulated host behind its own shaped link (--network
    #: without --hosts): the parameter server's transfers share the server's link.
    host_links: bool = False
    semaphore: bool = False  # --ps-semaphore: one pull and one push admitted at a time
    microbatches: int = 4  # pipelines
    network: str | None = None  # the --network spec the runs are behind
    warmup: int = 0  # warm-up steps before the measured ones (the simulator replays them)


@dataclass(frozen=True)
class Prediction:
    """Predicted time per step (one worker step; one iteration when synchronous), the
    throughput it implies (samples/s of all workers), and how it was composed."""

    step_time: float
    throughput: float
    compute: float
    comm: float
    formula: str


def case_of(cfg: RunConfig) -> Case:
    strategy = strategy_facts(cfg.framework, cfg.strategy)
    return Case(
        model=cfg.model,
        dataset=cfg.dataset,
        strategy=cfg.strategy,
        workers=cfg.workers,
        batch_size=cfg.batch_size,
        local_batch=strategy.local_batch(cfg),
        global_batch=strategy.global_batch(cfg),
        threads=resolved_threads(cfg),
        servers=cfg.servers,
        steps=cfg.steps,
        synchronous=strategy.synchronous,
        prediction_model=strategy.prediction_model,
        compute=cfg.compute,
        host_links=cfg.network is not None and cfg.hosts in (None, process_count(cfg)),
        semaphore=cfg.ps_semaphore,
        microbatches=cfg.microbatches,
        network=cfg.network,
        warmup=cfg.warmup,
    )


def compute_times(profile: Profile, processes: int, threads: int) -> tuple[StepTimes, str]:
    """The contention measurement for ``processes`` x ``threads``; when the profile lacks it,
    the one-worker measurement scaled by threads and by CPU oversubscription (labelled)."""
    exact = profile.step_times(processes, threads)
    if exact is not None:
        return exact, f"{processes}x{threads} threads measured"
    base = profile.contended[0]
    scale = base.threads / threads * max(1.0, processes * threads / profile.cores)

    def s(v: float) -> float:
        return v * scale

    scaled = replace(
        base,
        processes=processes,
        threads=threads,
        data=s(base.data),
        forward=s(base.forward),
        backward=s(base.backward),
        update=s(base.update),
        t_grad=s(base.t_grad),
        t_grad_max=s(base.t_grad_max),
        t_step=s(base.t_step),
        t_step_max=s(base.t_step_max),
    )
    return scaled, f"{processes}x{threads} threads extrapolated"


def _emulated_compute(case: Case, profile: Profile) -> tuple[float, float, float, str]:
    """``_worker_compute`` for emulated compute: no CPU contention (the workers wait, they
    do not compute), only the one-worker profile. ``--compute profile``: a synchronous step
    of N workers waits for the slowest of N draws of the measured steps (``expected_max``);
    ``--compute T``: T itself. Both scaled to the local batch (``batch_ratio``)."""
    spec = parse_compute(case.compute)
    scale = batch_ratio(profile.batch_size, profile.t_grad_split, case.local_batch)
    grad_share = profile.t_backward / (profile.t_forward + profile.t_backward)
    if spec.mode == "seconds":
        assert spec.seconds is not None
        grad = spec.seconds * scale
        return grad, grad * grad_share, 0.0, f"emulated {spec.seconds:g} s x {scale:.2f}"
    samples = profile.phase_samples
    if not samples:
        raise UserError("emulated compute needs a profile with per-step phase times")
    draws = case.workers if case.synchronous and case.workers > 1 else 1
    grads = [s["forward"] + s["backward"] for s in samples]
    grad = f.expected_max(grads, draws) * scale
    backward = sum(s["backward"] for s in samples) / sum(grads)
    overhead = sum(s["data"] * scale + s["update"] for s in samples) / len(samples)
    label = f"emulated profile, slowest of {draws} draws" if draws > 1 else "emulated profile"
    return grad, grad * backward, overhead, label


def _worker_compute(case: Case, profile: Profile) -> tuple[float, float, float, str]:
    """(forward+backward, its backward part, data+update) of one worker step in ``case``.

    A synchronous step with several workers waits for the slowest, so it uses the median
    of each repetition's slowest process."""
    if case.compute != "real":
        return _emulated_compute(case, profile)
    times, label = compute_times(profile, case.workers, case.threads)
    grad = times.t_grad_max if case.synchronous and case.workers > 1 else times.t_grad
    factor, split_label = split_factor(case, profile)
    share = times.backward / (times.forward + times.backward)
    return grad * factor, grad * factor * share, times.data + times.update, label + split_label


def split_factor(case: Case, profile: Profile) -> tuple[float, str]:
    """sync-split trains 1/N of the batch per worker: the measured ratio of its gradient
    time to the full batch's, or 1/N where the profile lacks it (labelled); 1 otherwise."""
    if case.prediction_model != "sync-split":
        return 1.0, ""
    split = profile.t_grad_split
    if len(split) >= case.workers:
        return split[case.workers - 1] / split[0], f", 1/{case.workers} batch ratio"
    return 1.0 / case.workers, f", t_grad/{case.workers} fallback"


def ddp_saturated(case: Case, profile: Profile) -> bool:
    """Whether DDP's ranks fill every core on loopback, so moving bytes is CPU work that
    nothing hides (emulated compute leaves the cores to communication)."""
    return (
        profile.network is None
        and case.workers * case.threads >= profile.cores
        and case.compute == "real"
    )


def predict_case(case: Case, profile: Profile) -> Prediction | None:
    """Predicted step of ``case`` from ``profile``; ``None`` for strategies without a model."""
    if case.prediction_model not in PREDICTED_MODELS:
        return None
    grad, backward, overhead, label = _worker_compute(case, profile)
    n = case.workers
    if case.prediction_model == "sequential":
        step, comm, formula = grad + overhead, 0.0, "t_grad + data + update"
    elif case.prediction_model == "ddp":
        step, comm, formula = _ddp_step(case, profile, grad, backward, overhead)
    elif case.prediction_model == "async":
        step, comm, formula = _ps_async_step(case, profile, grad + overhead)
    else:
        step, comm, formula = _ps_sync_step(case, profile, grad + overhead)
    samples = case.global_batch if case.synchronous else n * case.local_batch
    return Prediction(
        step_time=step,
        throughput=samples / step,
        compute=grad + overhead,
        comm=comm,
        formula=f"{formula}; compute {label}",
    )


def _ddp_step(
    case: Case, profile: Profile, grad: float, backward: float, overhead: float
) -> tuple[float, float, str]:
    """DDP's step: compute, the all-reduce and DDP's per-step machinery
    (``profile.ddp_machinery``: the measured ``ddp_overhead``, never below 0).

    The all-reduce is the ring formula, hidden behind backward by the bucket overlap, when
    it has room: behind a shaped link the wire sets the pace and the CPU is free, and with a
    spare core gloo's threads run beside the backward pass. Where the profile has when each
    gradient is ready and its bytes, each of DDP's buckets is reduced once backward has
    filled it (``formulas.ddp_buckets``); else gradients fill them uniformly in backward.
    When the workers' threads fill every core on loopback moving bytes is CPU work that
    nothing hides, and it is slower than between idle ranks: the profile's all-reduce
    measured right after a step is added in full (the ring formula, unhidden, where the
    profile lacks it)."""
    n, machinery = case.workers, profile.ddp_machinery
    if n == 1:
        return grad + overhead + machinery, 0.0, "ddp, one rank: compute + DDP machinery"
    saturated = ddp_saturated(case, profile)
    loaded = profile.loaded_allreduce(n, case.threads) if saturated else None
    if loaded is not None:
        return (
            grad + loaded + overhead + machinery,
            loaded,
            "ddp: all-reduce after a step (measured, no spare core) + DDP machinery",
        )
    alpha, beta = ring_alpha_beta(profile)
    t_ar = f.ring_allreduce_time(n, profile.grad_bytes, alpha, beta)
    order = profile.gradient_order
    if not saturated and order is not None:
        buckets = f.ddp_buckets(*order)
        exposed = f.ddp_exposed_allreduce(buckets, grad - backward, backward, n, alpha, beta)
        return (
            grad + exposed + overhead + machinery,
            sum(f.ring_allreduce_time(n, b, alpha, beta) for _, b in buckets),
            f"ddp: ring all-reduce (alpha, beta) of {len(buckets)} buckets as backward readies "
            "their gradients + DDP machinery",
        )
    overlap = 0.0 if saturated else f.ddp_default_overlap(profile.grad_bytes)
    step = f.ddp_step_time(grad, t_ar, backward, overlap) + overhead + machinery
    why = "no spare core" if saturated else "bucket"
    return (
        step,
        t_ar,
        (f"ddp: ring all-reduce (alpha, beta), {why} overlap {overlap:.2f} + DDP machinery"),
    )


def sustained_rate(profile: Profile) -> float:
    """Bytes/s a link sustains: the largest transfer of the profile's point-to-point sweep
    over its time. (A shaped link lets a short transfer through at line rate from its
    bucket, which N transfers at once share; the small-size fit would overstate the rate.)"""
    sizes, seconds = profile.p2p.sizes, profile.p2p.seconds
    largest = max(range(len(sizes)), key=lambda i: sizes[i])
    return sizes[largest] / seconds[largest]


def ring_alpha_beta(profile: Profile) -> tuple[float, float]:
    """The ring all-reduce's per-message latency and link bandwidth: the all-reduce sweep's
    fit, except behind an emulated network, where the bandwidth is the sweep's largest
    all-reduce's (its bytes per link over its time less the messages' latency). A shaped
    link lets the sweep's small sizes through above its rate from the bucket, and the
    fitted slope takes that up, where a training step's buckets of megabytes run at the
    sustained rate (``benchmarks/ring_rates.py`` prints both)."""
    fit = profile.allreduce
    if profile.network is None:
        return fit.alpha, fit.beta
    largest = max(range(len(fit.sizes)), key=lambda i: fit.sizes[i])
    steps = 2 * (fit.world - 1)
    moving = fit.seconds[largest] - steps * fit.alpha
    if moving <= 0:
        return fit.alpha, fit.beta
    return fit.alpha, steps / fit.world * fit.sizes[largest] / moving


def shared_link_time(profile: Profile, nbytes: float) -> float:
    """Seconds ``nbytes`` take through one link at its sustained rate."""
    return nbytes / sustained_rate(profile)


def ps_transfer_time(profile: Profile) -> float:
    """``t_comm`` for the parameter-server formulas: the raw transfer of the weights plus
    the protocol's measured cost per transfer (``ps_transfer``; 0 for older profiles)."""
    return profile.t_comm + (profile.ps_overhead or 0.0)


def busy_link_transfer_time(profile: Profile) -> float:
    """``t_comm`` of a link that is kept busy: the weights at the link's sustained rate
    plus the protocol's cost per transfer. (The measured ``t_comm`` is one transfer over
    an idle link, which a shaper lets start from its full bucket.)"""
    return shared_link_time(profile, profile.weight_bytes) + (profile.ps_overhead or 0.0)


def sharded_links_step(profile: Profile, t_grad: float, shards: list[float]) -> float:
    """A sharded server's step behind a link per host, from the greedy split of the real
    tensors (``formulas.sync_sharded_links``): the largest shard sets the pace."""
    return f.sync_sharded_links(t_grad, shards, sustained_rate(profile), profile.ps_overhead or 0)


def _ps_sync_step(case: Case, profile: Profile, t_grad: float) -> tuple[float, float, str]:
    server = canonical_server(case.servers)
    if case.host_links and server == "central":
        shared = shared_link_time(profile, case.workers * profile.weight_bytes)
        step = f.sync_central_links(t_grad, shared, profile.ps_overhead or 0.0)
        return step, step - t_grad, "ps sync, central server's link: t_grad + 2 N bytes / rate"
    shards = profile.shard_bytes(case.workers) if server == "sharded" else None
    if case.host_links and shards is not None:
        step = sharded_links_step(profile, t_grad, shards)
        return step, step - t_grad, "ps sync, sharded: the busiest link's shards, each way"
    t_comm = busy_link_transfer_time(profile) if case.host_links else ps_transfer_time(profile)
    step = ps_sync_iteration(t_grad, t_comm, case.workers, server).estimate
    if server == "sharded":
        return step, step - t_grad, "ps sync, sharded server (eq. 4.12)"
    return step, step - t_grad, "ps sync, central server, mean of best and worst (eq. 4.11)"


def _ps_async_step(case: Case, profile: Profile, t_grad: float) -> tuple[float, float, str]:
    """Whole-training formulas for D = N·steps batches, divided by the D/N steps a worker
    takes: the time of one worker step."""
    n, server = case.workers, canonical_server(case.servers)
    if case.host_links and server == "central":
        link = shared_link_time(profile, profile.weight_bytes)
        step = f.async_central_links(t_grad, link, profile.ps_overhead or 0.0, n)
        return (
            step,
            step - t_grad,
            "ps async, central server's link: N workers queueing at it (mean value analysis)",
        )
    shards = profile.shard_bytes(n) if case.host_links else None
    if shards is not None:  # each worker's link carries its own and its shard's transfers
        overhead = profile.ps_overhead or 0.0
        step = f.async_sharded_links(t_grad, shards, sustained_rate(profile), overhead)
        return step, step - t_grad, "ps async, sharded: the busiest link's push and replies"
    if case.host_links:  # equal shares where the profile lacks the tensors' sizes
        step = f.sync_distributed(t_grad, busy_link_transfer_time(profile), n)
        return step, step - t_grad, "ps async, sharded: t_grad + 2(N-1)/N t_comm"
    d = n * case.steps
    total = ps_async_training(t_grad, ps_transfer_time(profile), n, d, server).estimate
    label = (
        "sharded server (eq. 4.21)"
        if server == "sharded"
        else "central server, mean of best and worst (eq. 4.20)"
    )
    step = total / (d / n)
    return step, step - t_grad, f"ps async, {label}"
