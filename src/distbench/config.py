"""Validated run and suite configuration.

A ``RunConfig`` describes exactly one benchmark run (one strategy, one worker count). It is
validated on construction, so a bad value fails before any process starts, and it is stored
whole with the result. ``SuiteConfig`` expands a matrix (models x strategies x workers) into
run configs; it is what ``--suite FILE.toml`` and the CLI's comma lists produce.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distbench.errors import UserError

# torch, or an adapter that runs the same workload in another framework (distbench.frameworks).
FRAMEWORKS = ("torch", "tensorflow", "mxnet", "horovod")
DEVICES = ("auto", "cpu", "cuda")
SERVER_PLACEMENTS = ("central", "sharded")
PARTITIONS = ("uniform", "profiled")


#: The settings that change the time of a step: two runs are comparable (a stored
#: measurement of a configuration, a speedup baseline) only when these agree.
TIMING_KEYS = (
    "model",
    "dataset",
    "strategy",
    "workers",
    "batch_size",
    "servers",
    "ps_semaphore",
    "input_size",
    "num_classes",
    "microbatches",
    "partition",
    "framework",
    "device",
    "nnodes",
    "data_dir",
    "network",
    "hosts",
)


def available_cores() -> int:
    """Cores this process may run on (affinity-aware, so containers report their share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)


@dataclass(frozen=True)
class RunConfig:
    """One benchmark run. ``batch_size`` is per worker unless the strategy says otherwise."""

    model: str
    dataset: str = "synthetic"
    strategy: str = "sequential"
    workers: int = 1
    batch_size: int = 32
    steps: int = 20
    warmup: int = 3
    threads: int | None = None
    data_dir: str | None = None
    input_size: int | None = None
    num_classes: int | None = None
    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    seed: int = 0
    timeout: float = 600.0
    framework: str = "torch"
    device: str = "auto"
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int | None = None
    save_weights: str | None = None
    # Parameter-server strategies (ps-*): where the weights live, and serialized transfers.
    servers: str = "central"
    ps_semaphore: bool = False
    # Pipeline strategies: micro-batches per batch and how blocks are cut into stages.
    microbatches: int = 4
    partition: str = "uniform"
    # Operator profiles: torch.profiler over the last few measured steps of every rank.
    profile_ops: bool = False
    # Emulated hosts: an emulated network (--network SPEC, see netem/spec.py), the processes spread
    # over K emulated hosts (--hosts K), and a node file of host addresses (--nodefile).
    network: str | None = None
    hosts: int | None = None
    nodefile: str | None = None

    def __post_init__(self) -> None:
        self._check_numbers()
        self._check_choices()
        self._check_hosts()

    def _check_numbers(self) -> None:
        _require(self.workers >= 1, f"--workers must be at least 1, got {self.workers}")
        _require(self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}")
        _require(self.steps >= 1, f"--steps must be at least 1, got {self.steps}")
        _require(self.warmup >= 0, f"--warmup must be 0 or more, got {self.warmup}")
        _require(
            self.threads is None or self.threads >= 1,
            f"--threads must be at least 1, got {self.threads}",
        )
        _require(self.timeout > 0, f"--timeout must be positive, got {self.timeout}")
        _require(self.lr > 0, f"--lr must be positive, got {self.lr}")
        _require(
            self.input_size is None or self.input_size >= 1,
            f"--input-size must be at least 1, got {self.input_size}",
        )
        _require(
            self.num_classes is None or self.num_classes >= 2,
            f"--num-classes must be at least 2, got {self.num_classes}",
        )
        _require(self.nnodes >= 1, f"--nnodes must be at least 1, got {self.nnodes}")
        _require(
            0 <= self.node_rank < self.nnodes,
            f"--node-rank must be in 0..{self.nnodes - 1}, got {self.node_rank}",
        )
        _require(
            self.microbatches >= 1, f"--microbatches must be at least 1, got {self.microbatches}"
        )

    def _check_hosts(self) -> None:
        """Emulated hosts and real nodes; that the processes divide over them needs the
        strategy's process count, so ``registry.check_run`` checks that."""
        from distbench.netem.spec import parse_network

        if self.network is not None:
            parse_network(self.network)
        _require(
            self.hosts is None or self.hosts >= 1, f"--hosts must be at least 1, got {self.hosts}"
        )
        _require(
            self.nnodes == 1 or not (self.network or self.hosts),
            "--network/--hosts emulate hosts on this machine and --nnodes > 1 joins a "
            "real cluster: use one or the other",
        )

    def _check_choices(self) -> None:
        """Fixed choices; names that live in registries (model, dataset, strategy) are
        resolved by ``registry.check_run``."""
        _require(
            self.framework in FRAMEWORKS,
            f"unknown framework '{self.framework}' (known: {', '.join(FRAMEWORKS)})",
        )
        _require(
            self.device in DEVICES, f"unknown device '{self.device}' (known: {', '.join(DEVICES)})"
        )
        _require(
            self.servers in SERVER_PLACEMENTS,
            f"unknown --servers '{self.servers}' (known: {', '.join(SERVER_PLACEMENTS)})",
        )
        _require(
            self.partition in PARTITIONS,
            f"unknown --partition '{self.partition}' (known: {', '.join(PARTITIONS)})",
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        _require(not unknown, f"unknown setting(s): {', '.join(unknown)}")
        return cls(**data)

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class SuiteConfig:
    """A matrix of runs: every model x strategy x worker count over shared settings;
    ``registry.expand_suite`` turns it into checked run configs."""

    models: list[str]
    strategies: list[str]
    workers: list[int]
    base: dict[str, Any] = field(default_factory=dict)


def _as_list(value: Any, key: str) -> list[Any]:
    if isinstance(value, list):
        return value
    _require(isinstance(value, str | int), f"suite key '{key}' must be a list or a value")
    return [value]


def load_suite(path: str | Path) -> SuiteConfig:
    """Read a suite TOML file: keys ``models``, ``strategies``, ``workers`` plus run settings."""
    path = Path(path)
    _require(path.is_file(), f"suite file not found: {path}")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"suite file {path} is not valid TOML: {exc}") from exc
    suite = data.get("suite", data)
    for key in ("models", "strategies"):
        _require(key in suite, f"suite file {path} needs a '{key}' list")
    base = {k: v for k, v in suite.items() if k not in ("models", "strategies", "workers")}
    base.pop("model", None)
    base.pop("strategy", None)
    return SuiteConfig(
        models=[str(m) for m in _as_list(suite["models"], "models")],
        strategies=[str(s) for s in _as_list(suite["strategies"], "strategies")],
        workers=[int(w) for w in _as_list(suite.get("workers", [1]), "workers")],
        base=base,
    )
