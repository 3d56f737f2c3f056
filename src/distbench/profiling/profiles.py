"""Calibration profiles as data, and how they are stored in and found in the results store.

Where to start: :class:`Profile` is what ``distbench profile`` measures (see
``calibrate.py``); :func:`save_profile` / :func:`find_profile` put it in and get it out of
the SQLite store (table ``profiles``, schema 3); :func:`load_profile` is the contract of
``distbench estimate --model M``: the newest profile of ``M`` as a dict with ``t_grad``,
``t_comm``, ``t_grad_split``, ``grad_bytes`` and ``t_backward`` (plus everything else).

No torch here: predictions (``distbench.predict.core``) read profiles without paying
for a torch import.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from distbench.errors import UserError
from distbench.harness.noise import BUSY_CORES
from distbench.store import open_store


@dataclass(frozen=True)
class StepTimes:
    """Medians of one training step's phases while ``processes`` processes of ``threads``
    threads each train at the same time on this host (the CPU contention of N workers).

    ``t_grad`` is forward + backward, the median over every process and repetition (what one
    worker sees); ``t_grad_max`` is the median over repetitions of the slowest process (what
    a synchronous step waits for). ``t_step``/``t_step_max`` add data loading and update."""

    processes: int
    threads: int
    batch_size: int
    data: float
    forward: float
    backward: float
    update: float
    t_grad: float
    t_grad_max: float
    t_step: float
    t_step_max: float
    repeats: int


@dataclass(frozen=True)
class LinkFit:
    """``t = alpha + bytes / beta`` fitted to a size sweep (``sizes`` bytes, ``seconds``).

    For the all-reduce sweep ``alpha`` and ``beta`` are the ring model's per-step latency and
    link bandwidth (``t = 2(N-1)·alpha + 2(N-1)/N · bytes/beta`` at ``world`` ranks)."""

    kind: str
    world: int
    alpha: float
    beta: float
    sizes: list[int]
    seconds: list[float]


@dataclass(frozen=True)
class LoadedAllReduce:
    """An all-reduce of the gradient bytes right after a training step, ``processes`` ranks
    of ``threads`` threads on this host (``profiling.ddp_costs``): the median over
    ``repeats`` steps of the time from the last rank's end of backward to the last rank's
    end of the all-reduce."""

    processes: int
    threads: int
    seconds: float
    repeats: int


@dataclass(frozen=True)
class Profile:
    """One model's calibration on one host: everything the speedup model may use.

    ``t_grad_split[k-1]`` is the gradient time of a ``batch_size // k`` batch (k = 1..workers,
    so ``t_grad_split[0] == t_grad``). ``weight_bytes`` is what a parameter server moves per
    transfer (parameters and floating-point buffers, one flat buffer); ``grad_bytes`` what
    DDP all-reduces (parameters only). ``t_comm`` is one transfer of ``weight_bytes`` between
    two ranks (gloo send/recv, half a ping-pong)."""

    model: str
    dataset: str
    batch_size: int
    threads: int
    workers: int
    repeats: int
    created_at: str
    cores: int
    host: str
    torch_version: str
    input_size: int | None
    t_grad: float
    t_forward: float
    t_backward: float
    t_data: float
    t_update: float
    t_grad_split: list[float]
    weight_bytes: int
    grad_bytes: int
    tensors: int
    t_comm: float
    p2p: LinkFit
    allreduce: LinkFit
    contended: list[StepTimes] = field(default_factory=list)
    # The --network spec the links were measured behind (None: this host's loopback). The
    # gradient times do not depend on it; t_comm, p2p and allreduce do.
    network: str | None = None
    # The parameter-server protocol's cost per weight transfer beyond the raw bytes (headers,
    # the serving thread, bookkeeping), measured on loopback (``ps_transfer``). None in
    # profiles from before it was measured.
    ps_overhead: float | None = None
    # DDP's own cost per step beyond a plain step (one rank: hooks, bucket copies, the comm
    # hook) and the all-reduce right after a step at each contention level
    # (``ddp_costs``). None / empty in profiles from before they were measured.
    ddp_overhead: float | None = None
    allreduce_loaded: list[LoadedAllReduce] = field(default_factory=list)
    # ``profile --rounds R``: every round's t_grad and t_comm (seconds); the profile is the
    # round with the median t_grad. Empty for a one-round profile.
    rounds: list[dict[str, float]] = field(default_factory=list)
    # Emulated compute (``distbench.compute``): every timed step of the one-worker
    # measurement (``data``, ``forward``, ``backward``, ``update`` seconds), and for every
    # parameter (``model.parameters()`` order) the median fraction of backward elapsed when
    # its gradient was ready. Empty in profiles from before emulation existed.
    phase_samples: list[dict[str, float]] = field(default_factory=list)
    grad_ready: list[float] = field(default_factory=list)
    # The bytes of each of those gradients (same order): with ``grad_ready``, when DDP's
    # buckets fill in backward. Empty in older profiles (``validate`` and ``simulate`` fill
    # it from the model's definition; without it buckets fill uniformly in backward).
    param_bytes: list[int] = field(default_factory=list)
    # The bytes of every tensor a parameter server holds (parameters, then floating-point
    # buffers: ``sharding.transferred_tensors``), in the order a sharded server assigns
    # them to its units. Empty in older profiles (filled as ``param_bytes`` is).
    server_tensor_bytes: list[int] = field(default_factory=list)
    # Cores that processes outside the calibration used while it ran (``harness.noise``);
    # above ``BUSY_CORES`` its times are a busy machine's. None in older profiles.
    outside_load_cores: float | None = None
    # The host kernel's cap on a socket's send buffer (Linux ``net.core.wmem_max``, bytes):
    # how much of a parameter server's message gloo's sender may hand over at once. None
    # in older profiles (predictions then read this machine's).
    send_buffer_max: int | None = None
    # The bytes the kernel still held when a large send between the two hosts of the link
    # probe returned (``primitives.send_held``): how much of a message a sender hands over
    # at once, behind the network measured (it depends on the rate). None in older profiles
    # (predictions then take ``send_buffer_max``'s grant alone).
    send_held_bytes: float | None = None
    # The same, of a message of the model's weights (a central server's pull), where the
    # weights are smaller: what a send holds depends on the message (1.29 MB of 3 MB against
    # 1.8-2.2 MB of 8 MB in ``benchmarks/send_lead.py``'s runs at 1 Gbit/s). None in older
    # profiles (``send_held_bytes`` stands).
    send_held_weight_bytes: float | None = None

    @property
    def gradient_order(self) -> tuple[list[float], list[int]] | None:
        """(``grad_ready``, ``param_bytes``) where the profile has both for every
        parameter, else ``None``."""
        if self.grad_ready and len(self.param_bytes) == len(self.grad_ready):
            return self.grad_ready, self.param_bytes
        return None

    def shard_bytes(self, units: int) -> list[float] | None:
        """Bytes each of ``units`` sharded units holds under the greedy split of the real
        tensors; ``None`` where the profile lacks the tensors' sizes."""
        if not self.server_tensor_bytes:
            return None
        from distbench.predict.formulas import shard_loads

        return [float(b) for b in shard_loads(self.server_tensor_bytes, units)]

    @property
    def ddp_machinery(self) -> float:
        """DDP's own cost per step as the predictions use it: ``ddp_overhead``, where a
        median difference below zero (a large model, whose steps' noise exceeds the
        hooks' cost) counts as no cost; 0 in profiles from before it was measured."""
        return max(0.0, self.ddp_overhead or 0.0)

    @property
    def beside_other_load(self) -> bool:
        return self.outside_load_cores is not None and self.outside_load_cores > BUSY_CORES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in known}
        values["p2p"] = LinkFit(**data["p2p"])
        values["allreduce"] = LinkFit(**data["allreduce"])
        values["contended"] = [StepTimes(**c) for c in data.get("contended", [])]
        values["allreduce_loaded"] = [
            LoadedAllReduce(**a) for a in data.get("allreduce_loaded", [])
        ]
        return cls(**values)

    def step_times(self, processes: int, threads: int) -> StepTimes | None:
        """The contention measurement for exactly this many processes and threads."""
        for entry in self.contended:
            if entry.processes == processes and entry.threads == threads:
                return entry
        return None

    def loaded_allreduce(self, processes: int, threads: int) -> float | None:
        """The all-reduce after a step measured for exactly this many ranks and threads."""
        for entry in self.allreduce_loaded:
            if entry.processes == processes and entry.threads == threads:
                return entry.seconds
        return None


#: Linux's default ``net.core.wmem_max``, for a host whose value cannot be read.
DEFAULT_SEND_BUFFER_MAX = 212_992


def kernel_send_buffer_max() -> int:
    """This host's cap on a socket's send buffer (``net.core.wmem_max``; every emulated
    host is a namespace of this machine and shares it)."""
    try:
        return int(Path("/proc/sys/net/core/wmem_max").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return DEFAULT_SEND_BUFFER_MAX


def median_profile(rounds: list[Profile]) -> Profile:
    """Of several rounds of one calibration, the one with the median ``t_grad`` (the lower
    middle one), carrying every round's ``t_grad`` and ``t_comm``."""
    ordered = sorted(rounds, key=lambda p: p.t_grad)
    chosen = ordered[(len(ordered) - 1) // 2]
    figures = [{"t_grad": p.t_grad, "t_comm": p.t_comm} for p in rounds]
    return replace(chosen, rounds=figures if len(rounds) > 1 else [])


def contention_pairs(workers: int, cores: int) -> list[tuple[int, int]]:
    """(processes computing, threads each) that runs of 1..``workers`` workers produce here.

    ``k`` workers get ``max(1, cores // k)`` threads; with a central parameter server
    (one more process) ``max(1, cores // (k + 1))``. The server mostly waits, so ``k``
    processes compute."""
    pairs = {(k, max(1, cores // k)) for k in range(1, workers + 1)}
    pairs |= {(k, max(1, cores // (k + 1))) for k in range(1, workers + 1)}
    return sorted(pairs)


#: ``find_profile_row``'s default: profiles measured behind any network or none.
ANY_NETWORK: Any = object()


def _existing_db(db: str | Path) -> Path:
    path = Path(db)
    if not path.is_file():
        raise UserError(f"no results database at {path}: run `distbench profile` first")
    return path


def save_profile(db: str | Path, profile: Profile) -> int:
    """Store ``profile``; returns its id."""
    store = open_store(db)
    try:
        return store.save_profile(profile.to_dict())
    finally:
        store.close()


def find_profile_row(
    db: str | Path,
    model: str,
    dataset: str | None = None,
    batch_size: int | None = None,
    threads: int | None = None,
    network: Any = ANY_NETWORK,
) -> tuple[Profile, int] | None:
    """The newest stored profile matching every given key with its id, or ``None``.
    ``network``: only profiles whose links were measured behind that spec (``None``:
    loopback); by default any."""
    if not Path(db).is_file():
        return None
    store = open_store(db)
    try:
        found = store.load_profiles(model, dataset, batch_size, threads)
    finally:
        store.close()
    if network is not ANY_NETWORK:
        found = [row for row in found if row.get("network") == network]
    return (Profile.from_dict(found[0]), int(found[0]["profile_id"])) if found else None


def find_profile(
    db: str | Path,
    model: str,
    dataset: str | None = None,
    batch_size: int | None = None,
    threads: int | None = None,
) -> Profile | None:
    """The newest stored profile matching every given key, or ``None``."""
    found = find_profile_row(db, model, dataset, batch_size, threads)
    return found[0] if found else None


def load_profile(
    db: str | Path, model: str, dataset: str | None = None, batch_size: int | None = None
) -> dict[str, Any]:
    """The newest profile of ``model`` as a dict (``distbench estimate --model`` reads it).

    A missing database or profile is a ``UserError`` saying how to take one."""
    profile = find_profile(_existing_db(db), model, dataset, batch_size)
    if profile is None:
        raise UserError(
            f"no stored profile of model '{model}' in {db}: run "
            f"`distbench profile --model {model} --db {db}` first"
        )
    return profile.to_dict()
