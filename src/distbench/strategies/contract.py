"""The strategy contract: everything the rest of distbench may know about a strategy.

A strategy is described by two things, both in one file per strategy:

- its **facts** (``StrategyFacts``): answered without running anything, from the config
  alone. The launcher, the aggregation, the store, ``list``, the predictors and the
  equivalence checks read them. A PyTorch strategy class (``base.Strategy``) answers them as
  class attributes and class methods; a framework adapter's strategy
  (``frameworks.AdapterStrategy``) as a frozen dataclass. Both satisfy this protocol, so
  ``registry.strategy_facts`` returns either and no caller probes with ``getattr``.
- its **lifecycle** (``base.Strategy``): built inside every rank, ``run`` trains and records
  each step, ``evaluate`` (optional) measures held-out accuracy, ``final_weights`` and
  ``summary_extra`` finish, ``peers_lost`` says whether it went on without a peer.

This module is pure (no torch), so configuration and prediction code can depend on it.
See docs/extending.md for which members are optional and what each is for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from distbench.config import RunConfig

#: "weak": --batch-size is per worker and the global batch grows with N;
#: "strong": --batch-size is the global batch, split over the workers.
Scaling = Literal["weak", "strong"]

#: A rank's role: workers compute and are timed; servers (a central parameter server) serve
#: and are left out of step times.
Role = Literal["worker", "server"]

#: What the prediction core models the strategy as (``predict.core``; the names of
#: ``estimate --type``): one worker, DDP's ring all-reduce, the thesis' synchronous
#: parameter server with N batches (join) or one batch split N ways (split), asynchronous,
#: a pipeline. None: not predicted.
PredictionModel = Literal["sequential", "ddp", "sync-join", "sync-split", "async", "pipeline"]


@dataclass(frozen=True)
class Equivalence:
    """How closely a strategy's trained weights match sequential training on the same
    global batches. ``exact``: within ``atol + rtol·|reference|`` (float32 sums in another
    order); ``statistical``: asynchronous updates on stale weights, compared by loss only."""

    kind: Literal["exact", "statistical"] = "exact"
    rtol: float = 1e-4
    atol: float = 1e-5


class StrategyFacts(Protocol):
    """What a strategy is, answerable from the config alone (see the module docstring)."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def synchronous(self) -> bool:
        """True: workers step together, one step per iteration (aggregation takes the mean
        over workers of each step, which telescopes to the iteration period)."""
        ...

    @property
    def single_worker(self) -> bool:
        """True: runs with exactly one worker (suites give it N = 1 only)."""
        ...

    @property
    def scaling(self) -> str:
        """``Scaling``: what --batch-size means."""
        ...

    @property
    def workers_are(self) -> str:
        """What ``--workers`` counts for this strategy, in words (data-parallel workers,
        pipeline stages, ...), as ``list strategies`` and the results table say it."""
        ...

    @property
    def equivalence(self) -> Equivalence: ...

    @property
    def prediction_model(self) -> str | None:
        """``PredictionModel`` the predictors use for this strategy, or None."""
        ...

    @property
    def settings(self) -> tuple[str, ...]:
        """The strategy-specific ``RunConfig`` settings it reads (``servers``, ...); any other
        strategy-specific setting given to it is refused rather than ignored."""
        ...

    @property
    def emulated_compute(self) -> bool:
        """Whether forward/backward/update can be replaced by waits replaying a profile."""
        ...

    @property
    def trains_to_target(self) -> bool:
        """Whether it can train until a held-out accuracy (``--target-accuracy``)."""
        ...

    def validate(self, cfg: RunConfig) -> None:
        """Raise ``UserError`` for settings this strategy cannot run."""
        ...

    def world_size(self, cfg: RunConfig) -> int:
        """Processes in all: workers plus any server or helper processes."""
        ...

    def server_processes(self, cfg: RunConfig) -> int:
        """How many of ``world_size`` are servers or helpers rather than workers."""
        ...

    def rank_role(self, cfg: RunConfig, rank: int) -> str:
        """``Role`` of global rank ``rank``."""
        ...

    def survives_worker_loss(self, cfg: RunConfig) -> bool:
        """True: the run goes on when a worker dies (the launcher supervises each rank)."""
        ...

    def local_batch(self, cfg: RunConfig) -> int: ...

    def global_batch(self, cfg: RunConfig) -> int: ...
