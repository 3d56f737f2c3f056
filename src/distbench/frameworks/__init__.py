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
from typing import Any

from distbench.errors import UserError

WORKER_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class AdapterStrategy:
    """One strategy an adapter offers, with the facts the harness needs about it.

    Mirrors the class attributes of ``distbench.strategies.base.Strategy`` that the session
    reads (``synchronous``, ``scaling``, ``single_worker``, batch and process counts), so
    the harness treats both alike. Batches are per worker (weak scaling) for every adapter.
    """

    name: str
    description: str
    synchronous: bool = True
    single_worker: bool = False
    scaling: str = "weak"
    #: Processes besides the workers (a parameter server, a scheduler, a coordinator).
    helper_processes: int = 0
    #: Whether the workers can record an operator profile (``--profile-ops``).
    operator_profiles: bool = True

    def validate(self, cfg: Any) -> None:
        if self.single_worker and cfg.workers != 1:
            raise UserError(
                f"strategy '{self.name}' runs exactly one worker, got --workers {cfg.workers}"
            )
        if cfg.nnodes != 1 or getattr(cfg, "network", None) or getattr(cfg, "hosts", None):
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

    def world_size(self, cfg: Any) -> int:
        return int(cfg.workers) + self.helper_processes

    def local_batch(self, cfg: Any) -> int:
        return int(cfg.batch_size)

    def global_batch(self, cfg: Any) -> int:
        return int(cfg.batch_size) * int(cfg.workers)


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
        if name not in self.strategies:
            raise UserError(
                f"framework '{self.name}' has no strategy '{name}' "
                f"(known: {', '.join(self.strategies)})"
            )
        return self.strategies[name]


_SEQUENTIAL = AdapterStrategy(
    "sequential", "one worker, no distribution: the baseline", single_worker=True
)

FRAMEWORK: dict[str, Adapter] = {
    "tensorflow": Adapter(
        "tensorflow",
        "tensorflow",
        "tf_worker.py",
        {
            "sequential": _SEQUENTIAL,
            "sync": AdapterStrategy(
                "sync", "MultiWorkerMirroredStrategy, ring all-reduce, custom training loop"
            ),
            # a chief (the ClusterCoordinator) and one parameter server besides the workers
            "async": AdapterStrategy(
                "async",
                "ParameterServerStrategy + ClusterCoordinator, one parameter server",
                synchronous=False,
                helper_processes=2,
                operator_profiles=False,
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
            "sync": AdapterStrategy(
                "sync", "Gluon, kvstore dist_sync (parameter server)", helper_processes=2
            ),
            "async": AdapterStrategy(
                "async",
                "Gluon, kvstore dist_async (Downpour SGD)",
                synchronous=False,
                helper_processes=2,
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
            "sync": AdapterStrategy("sync", "PyTorch + Horovod ring all-reduce over gloo"),
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
