"""The parameter-server thesis' experiments (seed 004, chapter 6), reproduced.

The thesis trained VGG16E, GoogLeNet, SqueezeNet and ResNet-34 on Caltech-256 (224x224,
256 classes) with TensorFlow 1.1 on GTX 970s behind 1 Gbit/s, on 1-8 workers (VGG16E
1-4), synchronously with joined or split batches and asynchronously, with a central and a
distributed (sharded) server, and drew the measured speedup against N beside its
formulas' estimate (figures 6.1-6.11). Here every worker is an emulated host behind a
1 Gbit/s link whose compute is a wait of the thesis' own measured gradient time (table
6.1, ``--compute T``); the models have the thesis' weight sizes, and the weights really
travel. ``reproduce_thesis`` runs the matrix and returns, per point, the measured
speedup (over the emulated sequential run of the same model) beside the thesis'
estimate from table 6.1. docs/thesis.md compares the findings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from distbench.config import RunConfig
from distbench.errors import UserError
from distbench.predict.estimate import estimate_table
from distbench.store.result import RunResult

#: The thesis' three modes and the strategies that implement them.
STRATEGY_OF_MODE = {"sync-join": "ps-sync-join", "sync-split": "ps-sync-split", "async": "ps-async"}
MODES = tuple(STRATEGY_OF_MODE)
SERVERS = ("central", "sharded")
#: What every run shares: Caltech-256's input and classes, 1 Gbit/s per host.
THESIS_SETTINGS: dict[str, Any] = {
    "dataset": "synthetic",
    "input_size": 224,
    "num_classes": 256,
    "batch_size": 32,
    "network": "bandwidth=1gbit",
    "timeout": 3600.0,
}
#: The thesis trains D = 128 batches; its estimates are for that D.
THESIS_BATCHES = 128


@dataclass(frozen=True)
class ThesisNetwork:
    """A network of the thesis: table 6.1's measured means, and how far it was run."""

    model: str
    t_grad: float
    t_comm: float
    max_workers: int
    modes: tuple[str, ...] = MODES


#: Table 6.1 (seconds); VGG16E ran on 1-4 workers and never with split batches.
THESIS_NETWORKS: dict[str, ThesisNetwork] = {
    n.model: n
    for n in (
        ThesisNetwork("vgg16e", 0.719, 5.153, 4, ("sync-join", "async")),
        ThesisNetwork("googlenet", 0.763, 0.210, 8),
        ThesisNetwork("squeezenet", 0.758, 0.033, 8),
        ThesisNetwork("resnet34", 0.821, 0.811, 8),
    )
}


@dataclass(frozen=True)
class ThesisPoint:
    """One point of a thesis figure: measured speedup beside the thesis' estimate."""

    model: str
    mode: str
    server: str
    workers: int
    thesis_estimate: float
    measured: float | None
    measured_low: float | None
    measured_high: float | None
    status: str
    run_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _network(model: str) -> ThesisNetwork:
    if model not in THESIS_NETWORKS:
        raise UserError(f"unknown thesis network '{model}' (known: {', '.join(THESIS_NETWORKS)})")
    return THESIS_NETWORKS[model]


def _check_choices(values: Sequence[str], known: Sequence[str], what: str) -> None:
    for value in values:
        if value not in known:
            raise UserError(f"unknown {what} '{value}' (known: {', '.join(known)})")


def thesis_configs(
    models: Sequence[str],
    workers: Sequence[int],
    modes: Sequence[str] = MODES,
    servers: Sequence[str] = SERVERS,
    steps: int = 6,
    warmup: int = 1,
) -> list[RunConfig]:
    """The matrix: per model its emulated sequential baseline, then every mode x server x
    N the thesis ran (VGG16E to 4 workers, no split batches)."""
    _check_choices(modes, MODES, "mode")
    _check_choices(servers, SERVERS, "server")
    for n in workers:
        if n < 1:
            raise UserError(f"--workers must be at least 1, got {n}")
    configs: list[RunConfig] = []
    for model in models:
        net = _network(model)
        shared = {**THESIS_SETTINGS, "model": model, "compute": f"{net.t_grad:g}"}
        shared |= {"steps": steps, "warmup": warmup}
        configs.append(RunConfig(**shared, strategy="sequential"))
        for mode in (m for m in modes if m in net.modes):
            for server in servers:
                for n in (n for n in workers if n <= net.max_workers):
                    configs.append(
                        RunConfig(
                            **shared, strategy=STRATEGY_OF_MODE[mode], workers=n, servers=server
                        )
                    )
    return configs


def thesis_estimate(model: str, mode: str, server: str, workers: int) -> float:
    """The thesis' speedup estimate from table 6.1 (its eq. 4.11 / 4.12 / 4.20 / 4.21 and
    4.23, D = 128; split batches: t_grad / N)."""
    net = _network(model)
    row = estimate_table(
        mode,  # type: ignore[arg-type]
        server,
        net.t_grad,
        net.t_comm,
        [workers],
        THESIS_BATCHES,
    )[0]
    return float(row.speedup_estimate)


def mode_of(strategy: str) -> str | None:
    return next((m for m, s in STRATEGY_OF_MODE.items() if s == strategy), None)


def thesis_points(rows: Sequence[RunResult]) -> list[ThesisPoint]:
    """The figure points of stored rows (with speedups): every parameter-server row of a
    thesis network."""
    points = []
    for row in rows:
        mode = mode_of(row.strategy)
        if mode is None or row.model not in THESIS_NETWORKS:
            continue
        ci: Sequence[float | None] = row.speedup_ci or (None, None)
        points.append(
            ThesisPoint(
                model=row.model,
                mode=mode,
                server=str(row.config.get("servers", "central")),
                workers=row.workers,
                thesis_estimate=thesis_estimate(
                    row.model, mode, str(row.config.get("servers", "central")), row.workers
                ),
                measured=row.speedup,
                measured_low=ci[0],
                measured_high=ci[1],
                status=row.status,
                run_id=row.run_id,
            )
        )
    return points


def reproduce_thesis(
    db: str,
    configs: Sequence[RunConfig],
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
) -> list[ThesisPoint]:
    """Run ``configs`` (``thesis_configs``) and return their points."""
    from distbench.harness.session import run_benchmarks

    rows = run_benchmarks(list(configs), db, on_event)
    return thesis_points(rows)


def reused_points(db: str, configs: Sequence[RunConfig]) -> list[ThesisPoint]:
    """The points of the newest stored runs of ``configs`` (nothing is run)."""
    from distbench.store import open_store
    from distbench.workflows.validate import find_measured

    store = open_store(db)
    try:
        rows = [find_measured(store, cfg) for cfg in configs]
    finally:
        store.close()
    return thesis_points([r for r in rows if r is not None])
