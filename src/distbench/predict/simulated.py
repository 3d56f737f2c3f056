"""The simulator backend of the prediction core: a ``Case`` and its calibration profile
as a ``SimSpec``, simulated, as a ``Prediction``.

Where to start: :func:`sim_spec` reads the same profile inputs the formulas read (the
compute of ``core.compute_times`` / the emulated plan, ``core.sustained_rate``, the
protocol's ``ps_overhead``, the all-reduce fit, DDP's machinery) — never a timing of the
configuration predicted — and :func:`simulate_case` runs it. Pure: no torch, no store.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from statistics import fmean

from distbench.compute.plan import batch_ratio, parse_compute
from distbench.errors import UserError
from distbench.netem.spec import NetworkSpec, parse_network
from distbench.predict.core import (
    Case,
    Prediction,
    canonical_server,
    compute_times,
    ddp_saturated,
    ring_alpha_beta,
    split_factor,
    sustained_rate,
)
from distbench.predict.formulas import balanced_stage_time, ddp_buckets
from distbench.profiling.profiles import LinkFit, Profile, kernel_send_buffer_max
from distbench.simulator import (
    ComputeDraws,
    Links,
    Pipeline,
    RingAllReduce,
    SimResult,
    SimSpec,
    simulate,
)

#: Steps the simulator measures per configuration (after ``WARMUP`` more).
DEFAULT_STEPS = 100
WARMUP = 2
#: Independent simulations of a run as configured (``simulate_run``): a run of a few
#: steps is one draw of its compute times, so its prediction is the mean of many.
RUN_SEEDS = 10
#: Strategy names whose simulator model is a pipeline schedule.
PIPELINE_MODELS = {
    "pipeline-gpipe": "gpipe",
    "pipeline-1f1b": "1f1b",
    "model-parallel": "model-parallel",
}


@dataclass(frozen=True)
class Simulated:
    """A simulated configuration: its prediction, the run it came from, and what it used."""

    prediction: Prediction
    result: SimResult
    spec: SimSpec
    inputs: str


def sim_strategy(case: Case) -> str | None:
    """The simulator's model of ``case``'s strategy (``None``: it has none)."""
    if case.strategy in PIPELINE_MODELS:
        return PIPELINE_MODELS[case.strategy]
    model = case.prediction_model
    return model if model in ("sequential", "ddp", "sync-join", "sync-split", "async") else None


def compute_draws(case: Case, profile: Profile) -> tuple[ComputeDraws, str]:
    """One worker's compute in ``case``: the profile's measured steps to draw from."""
    if case.compute != "real":
        return _emulated_draws(case, profile)
    times, label = compute_times(profile, case.workers, case.threads)
    factor, split_label = split_factor(case, profile)
    grad = times.t_grad * factor
    share = times.backward / (times.forward + times.backward)
    grads = [s["forward"] + s["backward"] for s in profile.phase_samples]
    samples = tuple(g * grad / fmean(grads) for g in grads) if grads else ()
    draws = ComputeDraws(grad, share, times.data + times.update, samples)
    return draws, f"{label}{split_label}, {len(samples) or 'no'} measured steps drawn"


def _emulated_draws(case: Case, profile: Profile) -> tuple[ComputeDraws, str]:
    """Emulated compute waits out the one-worker profile's steps (scaled to the local
    batch) on idle cores: those very steps are what the simulator draws from."""
    spec = parse_compute(case.compute)
    scale = batch_ratio(profile.batch_size, profile.t_grad_split, case.local_batch)
    share = profile.t_backward / (profile.t_forward + profile.t_backward)
    if spec.mode == "seconds":
        assert spec.seconds is not None
        return ComputeDraws(spec.seconds * scale, share), f"emulated {spec.seconds:g} s"
    samples = profile.phase_samples
    if not samples:
        raise UserError("emulated compute needs a profile with per-step phase times")
    grads = tuple((s["forward"] + s["backward"]) * scale for s in samples)
    overhead = fmean(s["data"] * scale + s["update"] for s in samples)
    return (
        ComputeDraws(fmean(grads), share, overhead, grads),
        f"emulated profile, {len(grads)} measured steps drawn",
    )


def links_for(case: Case, profile: Profile, network: NetworkSpec | None) -> tuple[Links, str]:
    """Every host's link. Behind the network the profile measured: its sustained rate
    (the point-to-point sweep's largest transfer). Behind another spec: the spec's line
    rates. On loopback: one weight transfer's measured rate (``t_comm``). The protocol's
    measured cost per transfer in every case, the shapers' bucket of the network in
    effect (none on loopback; behind fair queues, lent only to transfers that join
    others), and the kernel's cap on a socket's send buffer (the
    profile's, or this machine's for a profile from before it was recorded)."""
    latency = network.delay_s or 0.0 if network is not None else 0.0
    in_effect = network if network is not None else _parsed(profile.network)
    common = {
        "latency": latency,
        "transfer_overhead": profile.ps_overhead or 0.0,
        "burst": shaper_burst(in_effect),
        "send_buffer_max": float(profile.send_buffer_max or kernel_send_buffer_max()),
        "send_held": float(profile.send_held_bytes or 0.0),
        "send_held_weights": float(profile.send_held_weight_bytes or 0.0),
    }
    fair = in_effect is not None and in_effect.queue == "fair"
    if network is not None and (profile.network is None or _differs(profile.network, network)):
        up = (network.up_bit_s or network.rate_bit_s or 0) / 8
        down = (network.down_bit_s or network.rate_bit_s or 0) / 8
        if up <= 0 or down <= 0:
            raise UserError(f"the simulator needs a bandwidth in --network {network.text!r}")
        return Links(up, down, fair_queues=fair, **common), f"{network.describe()} line rate"
    if profile.network is not None:
        rate = sustained_rate(profile)
        label = f"{rate * 8 / 1e6:.0f} Mbit/s sustained (profile)"
    else:
        rate = profile.weight_bytes / profile.t_comm
        label = f"loopback, {rate / 1e6:.0f} MB/s (t_comm)"
    return Links(rate, rate, fair_queues=fair, **common), label


def _parsed(network: str | None) -> NetworkSpec | None:
    return parse_network(network) if network else None


def shaper_burst(network: NetworkSpec | str | None) -> float:
    """The token bucket of each shaped link of ``network`` (bytes; 0 on loopback). Behind
    fair queues it is the parent class's, which transfers in flight together draw on but
    a lone one cannot (``Links.fair_queues``; measured: a 2.9 MB message took as long
    after 250 ms idle as after none at 100 Mbit/s and 1 Gbit/s fair, and 1.2 ms less
    behind the FIFO link's 250 kB bucket at 1 Gbit/s, ``benchmarks/idle_burst.py``)."""
    spec = parse_network(network) if isinstance(network, str) else network
    if spec is None or spec.rate_bit_s is None:
        return 0.0
    return float(spec.burst_for(spec.rate_bit_s))


def _differs(measured: str, network: NetworkSpec) -> bool:
    other = parse_network(measured)
    return (other.up_bit_s, other.down_bit_s) != (network.up_bit_s, network.down_bit_s)


def ring_for(case: Case, profile: Profile, links: Links, measured_links: bool) -> RingAllReduce:
    """DDP's all-reduce: the profile's fitted alpha and beta where the links are the ones
    it measured, else the spec's latency and rate; the all-reduce measured right after a
    step in full where no core is spare (as the formulas); DDP's buckets as backward fills
    them where the profile says when each gradient is ready."""
    loaded = (
        profile.loaded_allreduce(case.workers, case.threads)
        if ddp_saturated(case, profile)
        else None
    )
    alpha, beta = (
        ring_alpha_beta(profile) if measured_links else (links.latency, min(links.up, links.down))
    )
    order = profile.gradient_order
    return RingAllReduce(
        alpha=alpha,
        beta=beta,
        overlap=not ddp_saturated(case, profile),
        machinery=profile.ddp_machinery,
        fixed=loaded,
        buckets=tuple(ddp_buckets(*order)) if order is not None else (),
    )


def sim_spec(
    case: Case,
    profile: Profile,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    network: str | None = None,
    warmup: int = WARMUP,
    unfairness: float = 0.0,
) -> tuple[SimSpec, str]:
    """``case`` as the simulator's input, and a line saying what it was built from.
    ``network`` overrides the case's own spec (``simulate --network``); ``unfairness``
    weights each transfer's share of a link by a draw from ``[1 - u, 1 + u]`` (a what-if
    of ``simulate --link-unfairness``: nothing measures it, so no prediction uses it)."""
    strategy = sim_strategy(case)
    if strategy is None:
        raise UserError(f"the simulator has no model of strategy {case.strategy!r}")
    text = network if network is not None else case.network
    spec_net = parse_network(text) if text else None
    draws, compute_label = compute_draws(case, profile)
    links, link_label = links_for(case, profile, spec_net)
    if unfairness:
        links = replace(links, unfairness=unfairness)
        link_label += f", shares unequal by up to ±{unfairness:g} (what-if)"
    measured_links = spec_net is None or (
        profile.network is not None and not _differs(profile.network, spec_net)
    )
    pipeline = None
    if strategy in ("gpipe", "1f1b", "model-parallel"):
        micro = 1 if strategy == "model-parallel" else case.microbatches
        stage = balanced_stage_time(draws.grad, case.workers, micro)
        pipeline = Pipeline((stage,) * case.workers, micro)
    is_ddp = strategy == "ddp"
    spec = SimSpec(
        strategy=strategy,  # type: ignore[arg-type]  # checked by sim_strategy
        workers=case.workers,
        compute=draws,
        links=links,
        weight_bytes=float(profile.grad_bytes if is_ddp else profile.weight_bytes),
        samples_per_step=case.global_batch if pipeline else case.local_batch,
        servers=canonical_server(case.servers),
        shard_bytes=_shards(case, profile, strategy),
        semaphore=case.semaphore,
        server_update=profile.t_update if strategy in ("sync-join", "sync-split", "async") else 0,
        ring=ring_for(case, profile, links, measured_links) if is_ddp else None,
        pipeline=pipeline,
        steps=steps,
        warmup=warmup,
        seed=seed,
    )
    # what a send hands over: a sharded server's every message, a central semaphore's
    # pull only where the probe measured what the kernel holds (``engine.kernel_holds``)
    server_sends = spec.servers == "sharded" or (case.semaphore and links.send_held > 0)
    if strategy in ("sync-join", "sync-split", "async") and server_sends:
        link_label += f", {_send_buffer_label(profile, links, spec.servers == 'central')}"
    return spec, f"{compute_label}; links {link_label}"


def _send_buffer_label(profile: Profile, links: Links, central: bool) -> str:
    """Where the senders' socket buffers of a parameter server's messages come from (a
    central server's one message is the weights: what the probe held of that size)."""
    source = "profile" if profile.send_buffer_max else "this machine's"
    grant = f"up to 2 x {links.send_buffer_max / 2**20:g} MiB (net.core.wmem_max, {source})"
    if links.send_held <= 0:
        return f"send buffers {grant}"
    held = f"{links.send_held / 1e6:.2f} MB"
    if central and links.send_held_weights > 0:
        held = f"{links.send_held_weights / 1e6:.2f} MB of the weights"
    return f"send buffers {grant}, holding {held} (two-host probe)"


def _shards(case: Case, profile: Profile, strategy: str) -> tuple[float, ...]:
    """A sharded server's units' bytes under the greedy split of the real tensors (equal
    shares where the profile lacks the tensors' sizes)."""
    if strategy not in ("sync-join", "sync-split", "async"):
        return ()
    if canonical_server(case.servers) != "sharded":
        return ()
    return tuple(profile.shard_bytes(case.workers) or ())


def simulate_case(
    case: Case,
    profile: Profile,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    network: str | None = None,
    unfairness: float = 0.0,
) -> Simulated:
    """Simulate ``case`` from ``profile``."""
    spec, inputs = sim_spec(case, profile, steps, seed, network, unfairness=unfairness)
    result = simulate(spec)
    compute = result.split["compute"]
    prediction = Prediction(
        step_time=result.step_time,
        throughput=result.throughput,
        compute=compute,
        comm=max(0.0, result.step_time - compute),
        formula=f"simulator: {describe(spec)}; {inputs}",
    )
    return Simulated(prediction, result, spec, inputs)


def simulate_run(case: Case, profile: Profile, seeds: int = RUN_SEEDS) -> Prediction:
    """``case`` as it is run: its own warm-up and measured steps, every worker starting
    together, the mean over ``seeds`` simulations. What a run of a few steps measures
    includes how its start plays out — workers that start together and share links
    fairly stay in step for a while (a convoy) — which a long simulation averages away."""
    steps, warmup = max(1, case.steps), max(0, case.warmup)
    spec, inputs = sim_spec(case, profile, steps, 0, warmup=warmup)
    runs = [simulate(replace(spec, seed=seed)) for seed in range(seeds)]
    step = fmean(r.step_time for r in runs)
    compute = fmean(r.split["compute"] for r in runs)
    return Prediction(
        step_time=step,
        throughput=fmean(r.throughput for r in runs),
        compute=compute,
        comm=max(0.0, step - compute),
        formula=(
            f"simulator: {describe(spec)}, the run's {warmup} + {steps} steps, "
            f"mean of {seeds} simulations; {inputs}"
        ),
    )


def describe(spec: SimSpec) -> str:
    """The simulated configuration in words, e.g. ``sync-join, central server, semaphore``."""
    parts: list[str] = [spec.strategy]
    if spec.strategy in ("sync-join", "sync-split", "async"):
        parts.append(f"{spec.servers} server" + (", semaphore" if spec.semaphore else ""))
    return ", ".join(parts)


def timings_profile(
    model: str,
    batch_size: int,
    t_grad: float,
    t_comm: float | None,
    weight_bytes: float | None,
    network: str | None,
) -> Profile:
    """A profile made of given numbers (``simulate --t-grad``), for a workload never
    profiled: ``t_grad`` seconds of forward + backward (two thirds backward), weights of
    ``weight_bytes`` (gradients the same), moved in ``t_comm`` on loopback or at the
    ``network`` spec's line rate. Nothing in it was measured, and reports say so."""
    if not t_grad > 0:
        raise UserError(f"--t-grad must be positive, got {t_grad}")
    if weight_bytes is None or not weight_bytes > 0:
        raise UserError("--t-grad needs --weight-bytes (the bytes of the model's weights)")
    if network is None and (t_comm is None or not t_comm > 0):
        raise UserError("--t-grad needs --t-comm (seconds to move the weights once) or --network")
    comm = t_comm if t_comm is not None else 0.0
    rate = weight_bytes / comm if comm > 0 else 1.0
    link = LinkFit("given", 2, 0.0, rate, [int(weight_bytes)], [comm])
    backward = t_grad * 2 / 3
    return Profile(
        model=model,
        dataset="given",
        batch_size=batch_size,
        threads=1,
        workers=1,
        repeats=0,
        created_at="",
        cores=1,
        host="",
        torch_version="",
        input_size=None,
        t_grad=t_grad,
        t_forward=t_grad - backward,
        t_backward=backward,
        t_data=0.0,
        t_update=0.0,
        t_grad_split=[],
        weight_bytes=int(weight_bytes),
        grad_bytes=int(weight_bytes),
        tensors=1,
        t_comm=comm,
        p2p=link,
        allreduce=link,
    )
