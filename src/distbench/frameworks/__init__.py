"""Other frameworks running the same workload as the PyTorch strategies: the adapter registry.

Start at ``FRAMEWORK``: one entry per framework, with the virtual environment it runs in
(``envs.py``), the worker program started there (``tf_worker.py``, ``mx_worker.py``,
``horovod_worker.py``), and the strategies it offers. ``RunConfig`` consults this registry
instead of the PyTorch ``STRATEGIES`` when ``framework`` is not ``torch``; the harness hands
such runs to ``launch.launch_adapter``; ``compare.py`` is the equivalence checker.
This module imports neither torch nor any framework, so configuration stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from distbench.config import RunConfig
from distbench.errors import UserError
from distbench.names import canonical_strategy
from distbench.strategies.contract import Equivalence

WORKER_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class AdapterStrategy:
    """One strategy an adapter offers: the strategy contract's facts
    (``strategies.contract.StrategyFacts``), as a PyTorch strategy class answers them, so
    the harness treats both alike. Batches are per worker (weak scaling) for every adapter;
    the lifecycle runs in the framework's own worker program.
    """

    name: str
    description: str
    synchronous: bool = True
    single_worker: bool = False
    scaling: str = "weak"
    workers_are: str = "data-parallel workers"
    #: Processes besides the workers (a parameter server, a scheduler, a coordinator).
    helper_processes: int = 0
    #: Whether the workers can record an operator profile (``--profile-ops``).
    operator_profiles: bool = True
    uses_process_group: bool = False  # the framework's workers join their own runtime
    equivalence: Equivalence = field(default_factory=Equivalence)
    prediction_model: str | None = None
    emulated_compute: bool = False
    #: Trains to ``--target-accuracy`` / ``--epochs`` by ``measurement/goal.py``'s rule.
    trains_to_target: bool = True
    settings: tuple[str, ...] = ()  # none of distbench's ps-* or pipeline settings

    def validate(self, cfg: RunConfig) -> None:
        if self.single_worker and cfg.workers != 1:
            raise UserError(
                f"strategy '{self.name}' runs exactly one worker, got --workers {cfg.workers}"
            )
        if cfg.nnodes != 1 or cfg.network or cfg.hosts:
            raise UserError(
                f"framework '{cfg.framework}' runs on this one machine only "
                "(no --nnodes, --network or --hosts)"
            )
        if cfg.device == "cuda" or cfg.save_weights:
            raise UserError(
                f"framework '{cfg.framework}' supports neither --device cuda nor --save-weights yet"
            )
        if cfg.profile_ops and not self.operator_profiles:
            raise UserError(
                f"--profile-ops is not available for --framework "
                f"{cfg.framework} --strategy {self.name}: {self.name} runs its "
                "steps on worker tasks that only the coordinator schedules"
            )

    def server_processes(self, cfg: RunConfig) -> int:
        return self.helper_processes

    def world_size(self, cfg: RunConfig) -> int:
        return cfg.workers + self.helper_processes

    def rank_role(self, cfg: RunConfig, rank: int) -> str:
        return "worker"  # helper processes write no step records

    def survives_worker_loss(self, cfg: RunConfig) -> bool:
        return False

    def local_batch(self, cfg: RunConfig) -> int:
        return cfg.batch_size

    def global_batch(self, cfg: RunConfig) -> int:
        return cfg.batch_size * cfg.workers


@dataclass(frozen=True)
class Adapter:
    """A framework distbench can run besides plain PyTorch."""

    name: str
    env: str  # the virtual environment (see envs.ENV_SPECS)
    worker: str  # the program run inside it, in this package's directory
    strategies: dict[str, AdapterStrategy] = field(default_factory=dict)
    comparable: bool = True  # takes part in `distbench compare`
    description: str = ""

    @property
    def worker_path(self) -> Path:
        return WORKER_DIR / self.worker

    def strategy(self, name: str) -> AdapterStrategy:
        name = canonical_strategy(self.name, name)
        if name not in self.strategies:
            raise UserError(
                f"framework '{self.name}' has no strategy '{name}' "
                f"(known: {', '.join(self.strategies)})"
            )
        return self.strategies[name]


_SEQUENTIAL = AdapterStrategy(
    "sequential",
    "one worker, no distribution: the baseline",
    single_worker=True,
    workers_are="one worker",
    prediction_model="sequential",
)

FRAMEWORK: dict[str, Adapter] = {
    "tensorflow": Adapter(
        "tensorflow",
        "tensorflow",
        "tf_worker.py",
        {
            "sequential": _SEQUENTIAL,
            "allreduce": AdapterStrategy(
                "allreduce",
                "MultiWorkerMirroredStrategy, ring all-reduce, custom training loop",
                prediction_model="ddp",
            ),
            # a chief (the ClusterCoordinator) and one parameter server besides the workers
            "ps-async": AdapterStrategy(
                "ps-async",
                "ParameterServerStrategy + ClusterCoordinator, one parameter server",
                workers_are="data-parallel workers (+1 ps, +1 coordinator)",
                synchronous=False,
                helper_processes=2,
                operator_profiles=False,
                equivalence=Equivalence(kind="statistical"),
                prediction_model="async",
            ),
        },
        description="TensorFlow 2 / Keras 3 (CPU)",
    ),
    "mxnet": Adapter(
        "mxnet",
        "mxnet",
        "mx_worker.py",
        {
            "sequential": _SEQUENTIAL,
            # a scheduler and one server besides the workers
            "ps-sync-join": AdapterStrategy(
                "ps-sync-join",
                "Gluon, kvstore dist_sync (parameter server: gradients summed there)",
                workers_are="data-parallel workers (+1 server, +1 scheduler)",
                helper_processes=2,
                prediction_model="sync-join",
            ),
            "ps-async": AdapterStrategy(
                "ps-async",
                "Gluon, kvstore dist_async (Downpour SGD)",
                workers_are="data-parallel workers (+1 server, +1 scheduler)",
                synchronous=False,
                helper_processes=2,
                equivalence=Equivalence(kind="statistical"),
                prediction_model="async",
            ),
        },
        description="MXNet 1.9 Gluon",
    ),
    "horovod": Adapter(
        "horovod",
        "horovod",
        "horovod_worker.py",
        {
            "sequential": _SEQUENTIAL,
            "allreduce": AdapterStrategy(
                "allreduce",
                "PyTorch + Horovod ring all-reduce over gloo",
                prediction_model="ddp",
            ),
        },
        comparable=False,
        description="PyTorch with Horovod (gloo)",
    ),
}


def get_adapter(name: str) -> Adapter:
    if name not in FRAMEWORK:
        raise UserError(f"unknown framework '{name}' (known: torch, {', '.join(FRAMEWORK)})")
    return FRAMEWORK[name]


def adapter_strategy(framework: str, strategy: str) -> AdapterStrategy:
    """The strategy ``strategy`` of adapter ``framework`` (UserError if either is unknown)."""
    return get_adapter(framework).strategy(strategy)


__all__ = ["FRAMEWORK", "Adapter", "AdapterStrategy", "adapter_strategy", "get_adapter"]
