"""Validated run and suite configuration.

A ``RunConfig`` describes exactly one benchmark run (one strategy, one worker count). It is
validated on construction, so a bad value fails before any process starts, and it is stored
whole with the result. ``SuiteConfig`` expands a matrix (models x strategies x workers) into
run configs; it is what ``--suite FILE.toml`` and the CLI's comma lists produce.

Every field is declared once, with ``setting(...)``: its section (``SECTIONS``), the text
its flag shows, its range, and whether it changes the time of a step (``TIMING_KEYS``) or
describes the workload a calibration profile is taken of (``WORKLOAD_KEYS``). Fixed choices
are ``Literal`` types. The CLI generates its flags from these declarations
(``cli/settings.py``), so a setting is never typed twice. The fields stay flat on the
dataclass (``cfg.batch_size``): every strategy reads them so, and the stored ``config`` of
every result is this flat dictionary. Names that live in registries (model, dataset,
strategy) are resolved in the pre-flight step, ``registry.check_run``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from distbench.errors import UserError

# torch, or an adapter that runs the same workload in another framework (distbench.frameworks).
Framework = Literal["torch", "tensorflow", "mxnet", "horovod"]
Device = Literal["auto", "cpu", "cuda"]
ServerPlacement = Literal["central", "sharded"]
Partition = Literal["uniform", "profiled"]
FRAMEWORKS: tuple[str, ...] = get_args(Framework)
DEVICES: tuple[str, ...] = get_args(Device)
SERVER_PLACEMENTS: tuple[str, ...] = get_args(ServerPlacement)
PARTITIONS: tuple[str, ...] = get_args(Partition)

#: The sections a run's settings fall into, in the order the CLI shows them.
SECTIONS = ("workload", "training", "strategy", "measurement", "processes", "network", "output")


def setting(
    default: Any,
    section: str,
    doc: str,
    *,
    metavar: str | None = None,
    choices: tuple[str, ...] | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
    positive: bool = False,
    timing: bool = False,
    workload: bool = False,
    flag: bool = True,
    shown_default: str | None = None,
    percent: bool = False,
) -> Any:
    """A ``RunConfig`` field with what the rest of distbench needs to know about it.

    ``at_least`` / ``positive``: the range checked on construction; ``timing``: changes the
    time of a step; ``workload``: part of what a calibration profile measures; ``flag``:
    the CLI offers ``--name`` for it (the suite axes model, strategy, workers have list
    flags of their own); ``shown_default``: the default as the help text says it;
    ``percent``: a percentage in (0, 100), written ``3%`` or ``3``."""
    return field(
        default=default,
        metadata={
            "section": section,
            "doc": doc,
            "metavar": metavar,
            "choices": choices,
            "at_least": at_least,
            "at_most": at_most,
            "positive": positive,
            "timing": timing,
            "workload": workload,
            "flag": flag,
            "shown_default": shown_default,
            "percent": percent,
        },
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

    # -- workload: what is trained ---------------------------------------------------------
    model: str = setting(
        None,
        "workload",
        "zoo model name, or path/file.py:Class",
        timing=True,
        workload=True,
        flag=False,
    )
    dataset: str = setting(
        "synthetic",
        "workload",
        "synthetic (default), digits, mnist, cifar10, cifar100, imagefolder",
        timing=True,
        workload=True,
        shown_default="",
    )
    data_dir: str | None = setting(
        None,
        "workload",
        "dataset directory (mnist, cifar, imagefolder)",
        metavar="DIR",
        timing=True,
        workload=True,
        shown_default="",
    )
    input_size: int | None = setting(
        None,
        "workload",
        "input height = width",
        metavar="PX",
        at_least=1,
        timing=True,
        workload=True,
        shown_default="model default",
    )
    num_classes: int | None = setting(
        None,
        "workload",
        "classes",
        at_least=2,
        timing=True,
        workload=True,
        shown_default="dataset default",
    )
    # -- training: how it is trained -------------------------------------------------------
    batch_size: int = setting(
        32,
        "training",
        "batch per worker (the global batch for ps-sync-split and pipelines)",
        metavar="B",
        at_least=1,
        timing=True,
        workload=True,
    )
    steps: int = setting(20, "training", "measured steps", metavar="K", at_least=1)
    warmup: int = setting(3, "training", "warm-up steps, excluded", metavar="W", at_least=0)
    lr: float = setting(0.01, "training", "SGD learning rate", positive=True)
    momentum: float = setting(0.0, "training", "SGD momentum")
    weight_decay: float = setting(0.0, "training", "SGD weight decay")
    seed: int = setting(0, "training", "seed for weights and data order")
    # Training to a target: the run ends when held-out accuracy reaches it (convergence.py).
    target_accuracy: float | None = setting(
        None,
        "training",
        "train until held-out accuracy reaches A, a fraction in (0, 1] (every PyTorch "
        "strategy); --steps is then ignored",
        metavar="A",
        at_most=1.0,
        positive=True,
        shown_default="off",
    )
    epochs: float | None = setting(
        None,
        "training",
        "train E epochs of the training split, evaluating every --eval-every steps and at "
        "the end (--steps is then ignored); with --target-accuracy, the most it may train "
        "(instead of --max-steps)",
        metavar="E",
        positive=True,
        shown_default="off",
    )
    eval_every: int = setting(
        10,
        "training",
        "with --target-accuracy or --epochs: evaluate every K steps",
        metavar="K",
        at_least=1,
    )
    max_steps: int = setting(
        1000,
        "training",
        "with --target-accuracy: give up after this many steps (warm-up included)",
        metavar="M",
        at_least=1,
    )
    # -- strategy: how the work is distributed ---------------------------------------------
    strategy: str = setting(
        "sequential",
        "strategy",
        "strategy name: see `distbench list strategies`",
        timing=True,
        flag=False,
    )
    workers: int = setting(1, "strategy", "worker processes", at_least=1, timing=True, flag=False)
    framework: str = setting(
        "torch",
        "strategy",
        "torch, or an adapter run in its own environment (`distbench env install NAME`); "
        "adapters offer --strategy sequential, allreduce (tensorflow, horovod), ps-sync-join "
        "(mxnet), ps-async (tensorflow, mxnet): see `distbench list strategies`",
        choices=FRAMEWORKS,
        timing=True,
    )
    # Parameter-server strategies (ps-*): where the weights live, and serialized transfers.
    servers: str = setting(
        "central",
        "strategy",
        "ps-*: one server process (central) or a weight shard on every worker (sharded)",
        choices=SERVER_PLACEMENTS,
        timing=True,
    )
    ps_semaphore: bool = setting(
        False, "strategy", "ps-*: a server admits one pull and one push at a time", timing=True
    )
    vertical_sync: bool = setting(
        False,
        "strategy",
        "pipeline-pipedream: every stage computes a micro-batch on the weight version the "
        "first stage used for it (PipeDream's vertical sync)",
        timing=True,
    )
    # Pipeline strategies: micro-batches per batch and how blocks are cut into stages.
    microbatches: int = setting(
        4,
        "strategy",
        "pipeline-*: micro-batches per batch",
        metavar="M",
        at_least=1,
        timing=True,
    )
    partition: str = setting(
        "uniform",
        "strategy",
        "pipeline-*, model-parallel: equal block counts (uniform) or stages and replicas "
        "chosen from a per-block profile (profiled; --workers is then stages x replicas)",
        choices=PARTITIONS,
        timing=True,
    )
    # -- measurement: how often a configuration is measured (docs/measurement.md) ----------
    rounds: int = setting(
        1,
        "measurement",
        "rounds: each a fresh process group with its own warm-up, interleaved with the "
        "other configurations' rounds; the result's median and interval are over rounds",
        metavar="R",
        at_least=1,
    )
    precision: float | None = setting(
        None,
        "measurement",
        "repeat rounds (at least --rounds, at least 6) until the 95 %% interval's "
        "half-width is within P %% of the median, or --budget is spent; e.g. 3%%",
        metavar="P%",
        percent=True,
        shown_default="",
    )
    budget: float = setting(
        900.0,
        "measurement",
        "with --precision: seconds the whole invocation may spend on extra rounds",
        metavar="SEC",
        positive=True,
    )
    # -- processes: where and how the processes run ----------------------------------------
    threads: int | None = setting(
        None,
        "processes",
        "threads per process",
        metavar="T",
        at_least=1,
        shown_default="max(1, cores // processes)",
    )
    timeout: float = setting(
        600.0,
        "processes",
        "wall-clock limit per run; all ranks are stopped",
        metavar="SEC",
        positive=True,
    )
    rendezvous_timeout: float = setting(
        300.0,
        "processes",
        "multi-node runs: how long a node waits for the others to join before it gives up",
        metavar="SEC",
        positive=True,
    )
    device: str = setting("auto", "processes", "device", choices=DEVICES, timing=True)
    compute: str = setting(
        "real",
        "processes",
        "real; profile: every step's data, forward, backward and update are waits replaying "
        "the stored one-worker profile (communication stays real); or T: T seconds of "
        "gradient time per batch (docs/emulation.md)",
        metavar="MODE",
        timing=True,
    )
    compute_profile: int | None = setting(
        None,
        "processes",
        "with --compute: the id of the profile to replay (`distbench profile` prints it)",
        metavar="ID",
        at_least=1,
        timing=True,
        shown_default="the newest profile of the workload",
    )
    nnodes: int = setting(1, "processes", "nodes in a multi-node run", at_least=1, timing=True)
    node_rank: int = setting(0, "processes", "this node's rank, 0..nnodes-1")
    master_addr: str = setting("127.0.0.1", "processes", "address of node 0", metavar="HOST")
    master_port: int | None = setting(
        None,
        "processes",
        "port on node 0",
        metavar="PORT",
        at_least=1,
        at_most=65535,
        shown_default="a free one on one node, 29500 across nodes",
    )
    # -- network: emulated hosts (docs/network.md) -----------------------------------------
    network: str | None = setting(
        None,
        "network",
        "put every host in its own network namespace behind a shaped link: "
        "bandwidth=RATE[,up=RATE][,down=RATE][,burst=SIZE][,mtu=BYTES][,delay=T], tc units, "
        "e.g. bandwidth=100mbit or bandwidth=1gbit",
        metavar="SPEC",
        timing=True,
        workload=True,
        shown_default="",
    )
    hosts: int | None = setting(
        None,
        "network",
        "run the processes as K emulated hosts, one torchrun launcher each",
        metavar="K",
        at_least=1,
        timing=True,
        shown_default="with --network: one per process",
    )
    nodefile: str | None = setting(
        None,
        "network",
        "one address per line: the emulated hosts' addresses (with --network/--hosts), else "
        "a real cluster's nodes (sets --nnodes, --master-addr; --node-rank from this "
        "machine's address)",
        metavar="FILE",
        shown_default="",
    )
    # -- output: what is written besides the result ----------------------------------------
    save_weights: str | None = setting(
        None,
        "output",
        "write rank 0's final weights as NumPy arrays by parameter name",
        metavar="FILE.npz",
        shown_default="",
    )
    profile_ops: bool = setting(
        False,
        "output",
        "torch.profiler over the last 3 measured steps of every rank: top operators per "
        "phase, a Chrome trace per rank (see docs/report.md)",
    )

    def __post_init__(self) -> None:
        _require(isinstance(self.model, str) and bool(self.model), "a model is required")
        if isinstance(self.precision, str):  # a suite file's "3%"
            object.__setattr__(self, "precision", parse_percent(self.precision))
        self._normalize_compute()
        self._normalize_strategy()
        self._check_ranges()
        self._check_choices()
        self._check_hosts()

    def _normalize_strategy(self) -> None:
        """An old or other name of a strategy (``names.STRATEGY_ALIASES``: an adapter's
        ``sync``) is stored as the one it stands for."""
        from distbench.names import canonical_strategy

        object.__setattr__(self, "strategy", canonical_strategy(self.framework, self.strategy))

    def _normalize_compute(self) -> None:
        """``--compute`` stored as ``real``, ``profile`` or the seconds (a suite may give a
        number); a profile id only means something with emulated compute."""
        from distbench.compute.plan import normalized_compute

        object.__setattr__(self, "compute", normalized_compute(self.compute))
        _require(
            self.compute_profile is None or self.compute != "real",
            "--compute-profile needs --compute profile or --compute SECONDS",
        )

    def _check_ranges(self) -> None:
        """Each field's declared range, plus the one that depends on another field."""
        for spec in dataclasses.fields(self):
            value, meta = getattr(self, spec.name), spec.metadata
            flag = "--" + spec.name.replace("_", "-")
            if value is None or isinstance(value, bool):
                continue
            if meta.get("at_least") is not None:
                least = meta["at_least"]
                _require(value >= least, f"{flag} must be at least {least:g}, got {value}")
            if meta.get("at_most") is not None:
                most = meta["at_most"]
                _require(value <= most, f"{flag} must be at most {most:g}, got {value}")
            if meta.get("positive"):
                _require(value > 0, f"{flag} must be positive, got {value}")
            if meta.get("percent"):
                _require(0 < value < 100, f"{flag} must be a percentage in (0, 100), got {value}")
        _require(
            not self.trains_to_goal or self.max_steps > self.warmup,
            f"--max-steps ({self.max_steps}) must exceed --warmup ({self.warmup})",
        )
        _require(
            0 <= self.node_rank < self.nnodes,
            f"--node-rank must be in 0..{self.nnodes - 1}, got {self.node_rank}",
        )

    def _check_choices(self) -> None:
        """Fixed choices (``Literal`` types); names that live in registries (model, dataset,
        strategy) are resolved by ``registry.check_run``."""
        for spec in dataclasses.fields(self):
            choices = spec.metadata.get("choices")
            value = getattr(self, spec.name)
            if choices and value not in choices:
                name = spec.name if spec.name in ("framework", "device") else f"--{spec.name}"
                raise UserError(f"unknown {name} '{value}' (known: {', '.join(choices)})")

    def _check_hosts(self) -> None:
        """Emulated hosts and real nodes; that the processes divide over them needs the
        strategy's process count, so ``registry.check_run`` checks that."""
        from distbench.netem.spec import parse_network

        if self.network is not None:
            parse_network(self.network)
        _require(
            self.nnodes == 1 or not (self.network or self.hosts),
            "--network/--hosts emulate hosts on this machine and --nnodes > 1 joins a "
            "real cluster: use one or the other",
        )

    @property
    def trains_to_goal(self) -> bool:
        """The run trains to a target or for epochs, evaluating on the way
        (``strategies/convergence.py``), instead of timing ``warmup + steps`` steps."""
        return self.target_accuracy is not None or self.epochs is not None

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

    def section(self, name: str) -> dict[str, Any]:
        """The settings of one section (``SECTIONS``), by field name."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.metadata.get("section") == name
        }


def setting_field(name: str) -> dataclasses.Field[Any]:
    """The declaration of the ``RunConfig`` field ``name``."""
    return next(f for f in dataclasses.fields(RunConfig) if f.name == name)


def settings_where(key: str) -> tuple[str, ...]:
    """Names of the ``RunConfig`` fields whose declaration sets ``key`` (``timing``, ...)."""
    return tuple(f.name for f in dataclasses.fields(RunConfig) if f.metadata.get(key))


#: The settings that change the time of a step: two runs are comparable (a stored
#: measurement of a configuration, a speedup baseline) only when these agree.
TIMING_KEYS = settings_where("timing")
#: The settings that make up the workload a calibration profile measures.
WORKLOAD_KEYS = settings_where("workload")
#: The timing settings a speedup's one-worker baseline must share with the run: all but
#: what the speedup compares (the strategy, its options, the worker count, the placement)
#: and the batch (matched per worker or globally, by the strategy's scaling).
BASELINE_KEYS = tuple(
    key
    for key in TIMING_KEYS
    if key
    not in (
        "strategy",
        "workers",
        "servers",
        "ps_semaphore",
        "microbatches",
        "partition",
        "nnodes",
        "hosts",
        "batch_size",
    )
)

#: Rounds are part of every precise measurement: a percentage needs at least this many
#: rounds before its interval reaches 95 % coverage (order statistics of the median).
MIN_PRECISION_ROUNDS = 6


def parse_percent(text: str) -> float:
    """``"3%"`` or ``"3"`` -> 3.0 (a flag or suite value; the range is checked by RunConfig)."""
    try:
        return float(str(text).strip().removesuffix("%"))
    except ValueError:
        raise UserError(f"expected a percentage such as 3%, got '{text}'") from None


@dataclass(frozen=True)
class SuiteConfig:
    """A matrix of runs: every model x strategy x worker count (x seed) over shared
    settings; ``registry.expand_suite`` turns it into checked run configs. ``seeds``: one
    run per seed (convergence is noisy: figures over seeds); empty, the settings' seed."""

    models: list[str]
    strategies: list[str]
    workers: list[int]
    base: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)


def _as_list(value: Any, key: str) -> list[Any]:
    if isinstance(value, list):
        return value
    _require(isinstance(value, str | int), f"suite key '{key}' must be a list or a value")
    return [value]


def _suite_model(model: str, suite_path: Path) -> str:
    """A user model ``file.py:Class`` with a relative path is relative to the suite file."""
    file, sep, cls = model.rpartition(":")
    if not sep or not file.endswith(".py") or Path(file).is_absolute():
        return model
    return f"{(suite_path.parent / file).resolve()}:{cls}"


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
    axes = ("models", "strategies", "workers", "seeds")
    base = {k: v for k, v in suite.items() if k not in axes}
    base.pop("model", None)
    base.pop("strategy", None)
    return SuiteConfig(
        models=[_suite_model(str(m), path) for m in _as_list(suite["models"], "models")],
        strategies=[str(s) for s in _as_list(suite["strategies"], "strategies")],
        workers=[int(w) for w in _as_list(suite.get("workers", [1]), "workers")],
        base=base,
        seeds=[int(s) for s in _as_list(suite.get("seeds", []), "seeds")],
    )
