"""What the simulator is told: ``SimSpec``, validated, with no profile and no torch in it.

``distbench.predict.simulated`` builds one from a calibration profile (or from ``--t-grad``
and a network spec); tests build them by hand. Every time is seconds, every size bytes,
every rate bytes per second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, get_args

from distbench.errors import UserError

#: The strategies the simulator models (a strategy contract's prediction model, plus the
#: pipeline schedules).
SimStrategy = Literal[
    "sequential", "ddp", "sync-join", "sync-split", "async", "gpipe", "1f1b", "model-parallel"
]
SIM_STRATEGIES: tuple[str, ...] = get_args(SimStrategy)
PS_STRATEGIES = ("sync-join", "sync-split", "async")
PIPELINE_STRATEGIES = ("gpipe", "1f1b", "model-parallel")


@dataclass(frozen=True)
class ComputeDraws:
    """One worker's compute per step: forward + backward (``grad``), its backward part, and
    the rest of a step (data + update), each step drawn from ``samples`` — the measured
    steps of the one-worker profile, so N workers' slowest step is the slowest of N draws —
    or the same every step when ``samples`` is empty."""

    grad: float
    backward_share: float
    overhead: float = 0.0
    samples: tuple[float, ...] = ()  # forward + backward of each measured step, scaled

    def __post_init__(self) -> None:
        # zero is allowed: an emulated split batch can be scaled to no compute at all
        _non_negative("compute time", self.grad)
        _fraction("backward share", self.backward_share)
        _non_negative("data + update time", self.overhead)
        for value in self.samples:
            _non_negative("a sampled compute time", value)

    @property
    def jitter(self) -> bool:
        return len(set(self.samples)) > 1


@dataclass(frozen=True)
class Replay:
    """A measured asynchronous run played back instead of drawn: every worker's forward +
    backward of each step (``compute[w][k]``, seconds) and when it began its first step
    (``starts[w]``, seconds after the first worker). The simulator then differs from the
    run only in its model of the links and the server (``benchmarks/async_replay.py``)."""

    compute: tuple[tuple[float, ...], ...]
    starts: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.starts) != len(self.compute):
            raise UserError(f"{len(self.starts)} start times for {len(self.compute)} workers")
        for value in self.starts:
            _non_negative("a replayed start", value)
        for steps in self.compute:
            for value in steps:
                _non_negative("a replayed compute time", value)


@dataclass(frozen=True)
class Links:
    """Every host's own full-duplex link (``up``: host to network, ``down``: network to
    host), the central server's link (default: a host's), the one-way ``latency`` of a
    message and the protocol's fixed cost per transfer (``transfer_overhead``: headers, the
    serving thread; not on the wire, so it does not share the link)."""

    up: float
    down: float
    server_up: float | None = None
    server_down: float | None = None
    latency: float = 0.0
    transfer_overhead: float = 0.0
    #: Bytes a shaped link lets through at once after it has been idle (its shaper's token
    #: bucket, refilled at the link's rate while idle); 0: no bucket (loopback).
    burst: float = 0.0
    #: Fair-queued links: a lone transfer cannot use the bucket; transfers that join a
    #: busy link pass what it holds (``links.FairLink``).
    fair_queues: bool = False
    #: How unequally transfers that overlap share a link: each transfer's part of the rate
    #: is weighted by a draw from [1 - u, 1 + u] (0: exactly equal shares, the fluid model).
    unfairness: float = 0.0
    #: The kernel's cap on a connection's send buffer (Linux: ``net.core.wmem_max``); the
    #: kernel grants up to twice it, and a send is done for its sender once the kernel
    #: holds the rest. 0: a send is done when its last byte is delivered.
    send_buffer_max: float = 0.0
    #: What the kernel held of a large message when its send returned, measured between
    #: two hosts (the profile's ``send_held_bytes``); it bounds the grant above. 0: not
    #: measured (the grant alone).
    send_held: float = 0.0
    #: The same, of a message of the weights' size (a central server's pull), measured
    #: where the weights are smaller than the large message. 0: not measured (the large
    #: message's figure stands).
    send_held_weights: float = 0.0

    def __post_init__(self) -> None:
        for name in ("up", "down"):
            _positive(f"link rate ({name})", getattr(self, name))
        for name in ("server_up", "server_down"):
            value = getattr(self, name)
            if value is not None:
                _positive(f"server link rate ({name})", value)
        _non_negative("latency", self.latency)
        _non_negative("transfer overhead", self.transfer_overhead)
        _non_negative("burst", self.burst)
        _non_negative("send buffer", self.send_buffer_max)
        _non_negative("bytes held at a send's return", self.send_held)
        _non_negative("bytes of the weights held at a send's return", self.send_held_weights)
        if not math.isfinite(self.unfairness) or not 0.0 <= self.unfairness < 1.0:
            raise UserError(f"link unfairness must lie in [0, 1), got {self.unfairness}")

    @property
    def server_out(self) -> float:
        return self.server_up if self.server_up is not None else self.up

    @property
    def server_in(self) -> float:
        return self.server_down if self.server_down is not None else self.down


@dataclass(frozen=True)
class RingAllReduce:
    """DDP's all-reduce: ``alpha`` seconds per message, ``beta`` bytes/s per link, gradients
    reduced in buckets of ``bucket_bytes`` as backward produces them (``overlap``: whether
    a bucket may be reduced while backward runs; no spare core on loopback says no), and
    DDP's own cost per step (``machinery``). ``fixed``: an all-reduce measured after a step,
    used in full instead of the ring (no spare core on loopback). ``buckets``: DDP's
    buckets as (fraction of backward elapsed when the bucket is full, bytes), in the order
    they are reduced (``formulas.ddp_buckets``); empty: buckets of ``bucket_bytes`` filled
    uniformly in backward."""

    alpha: float
    beta: float
    bucket_bytes: float = 25 * 2**20
    overlap: bool = True
    machinery: float = 0.0
    fixed: float | None = None
    buckets: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        _non_negative("all-reduce alpha", self.alpha)
        _positive("all-reduce beta", self.beta)
        _positive("bucket bytes", self.bucket_bytes)
        _non_negative("DDP machinery", self.machinery)
        if self.fixed is not None:
            _non_negative("measured all-reduce", self.fixed)
        for fraction, nbytes in self.buckets:
            _fraction("a bucket's ready fraction", fraction)
            _non_negative("a bucket's bytes", nbytes)


@dataclass(frozen=True)
class Pipeline:
    """A pipeline's stages: forward + backward seconds per microbatch of each stage, the
    forward share of it, and the activation bytes a stage sends the next per microbatch
    (the gradient of the same size comes back)."""

    stage_times: tuple[float, ...]
    microbatches: int
    forward_share: float = 1.0 / 3.0
    activation_bytes: float = 0.0

    def __post_init__(self) -> None:
        if not self.stage_times:
            raise UserError("a pipeline needs at least one stage time")
        for value in self.stage_times:
            _positive("a stage time", value)
        _count("microbatches", self.microbatches)
        _fraction("forward share", self.forward_share)
        _non_negative("activation bytes", self.activation_bytes)


@dataclass(frozen=True)
class SimSpec:
    """One configuration to simulate: ``steps`` measured steps after ``warmup``."""

    strategy: SimStrategy
    workers: int
    compute: ComputeDraws
    links: Links
    #: The bytes of one transfer: the weights a parameter server sends and receives, the
    #: gradients DDP all-reduces.
    weight_bytes: float
    #: Samples one worker trains per step (sync-split: its share; a pipeline: the batch).
    samples_per_step: int
    servers: Literal["central", "sharded"] = "central"
    semaphore: bool = False
    server_update: float = 0.0  # the server's own work for one gradient
    ring: RingAllReduce | None = None
    pipeline: Pipeline | None = None
    shard_bytes: tuple[float, ...] = field(default=())  # sharded: bytes each unit holds
    steps: int = 100
    warmup: int = 2
    seed: int = 0
    replay: Replay | None = None  # async only: measured compute and starts, not draws

    def __post_init__(self) -> None:
        if self.strategy not in SIM_STRATEGIES:
            raise UserError(
                f"the simulator has no model of {self.strategy!r}; "
                f"choose from {', '.join(SIM_STRATEGIES)}"
            )
        _count("workers", self.workers)
        _count("steps", self.steps)
        if self.warmup < 0:
            raise UserError(f"warm-up steps must be >= 0, got {self.warmup}")
        _non_negative("weight bytes", self.weight_bytes)
        _non_negative("server update time", self.server_update)
        _count("samples per step", self.samples_per_step)
        if self.strategy == "ddp" and self.ring is None:
            raise UserError("simulating ddp needs the all-reduce's alpha and beta")
        if self.strategy in PIPELINE_STRATEGIES and self.pipeline is None:
            raise UserError(f"simulating {self.strategy} needs stage times")
        if self.shard_bytes and len(self.shard_bytes) != self.workers:
            raise UserError(f"{len(self.shard_bytes)} shard sizes for {self.workers} units")
        if self.replay is not None:
            self._check_replay(self.replay)

    def _check_replay(self, replay: Replay) -> None:
        if self.strategy != "async":
            raise UserError(f"only an asynchronous run can be replayed, not {self.strategy!r}")
        if len(replay.compute) != self.workers:
            raise UserError(f"a replay of {len(replay.compute)} workers for {self.workers}")
        if min(len(steps) for steps in replay.compute) < self.warmup + self.steps:
            raise UserError(f"a replay shorter than {self.warmup} + {self.steps} steps")

    @property
    def total_steps(self) -> int:
        return self.warmup + self.steps

    def shards(self) -> tuple[float, ...]:
        """Bytes of the weights each sharded unit holds (equal shares unless given)."""
        if self.shard_bytes:
            return self.shard_bytes
        return (self.weight_bytes / self.workers,) * self.workers


def _positive(name: str, value: float) -> None:
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"{name} must be positive, got {value}")


def _non_negative(name: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise UserError(f"{name} must be zero or positive, got {value}")


def _fraction(name: str, value: float) -> None:
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise UserError(f"{name} must lie in [0, 1], got {value}")


def _count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{name} must be an integer >= 1, got {value}")
