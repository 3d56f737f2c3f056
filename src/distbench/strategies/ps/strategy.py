"""The parameter-server strategy skeleton shared by sync-join, sync-split and async.

Start at :meth:`ParameterServer.run`. Ranks and roles:

- ``--servers central``: ranks ``0..N-1`` are workers, rank ``N`` (the last) is the server
  (role ``server`` in the records); it holds all weights and the optimizer state.
- ``--servers sharded``: ranks ``0..N-1`` are all workers *and* server units; each unit holds
  the tensors ``sharding.assign_greedy`` gave it and serves the other workers from threads.

A worker step is ``pull -> data -> forward -> backward -> push`` under one ``PhaseTimer``
(see ``client.py`` for what ``wait`` and ``update`` contain). After the last step every
worker sends FINAL and receives the final weights once all workers are done (or lost, in
async mode); the lowest-ranked surviving worker then reports them (``--save-weights``) and,
for datasets with a held-out split, their accuracy.

Training to a target accuracy (``convergence.py``): worker 0 evaluates the weights it
pulled for the step, so a point stands at their version (the updates they contain). In
sync modes the workers learn the decision by a broadcast over a group of the workers
(they wait for each other at every iteration anyway); in async mode through the server
units (``transport.py``), so that no worker ever waits for another.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from distbench.config import RunConfig
from distbench.errors import UserError
from distbench.measurement.timer import PhaseTimer
from distbench.strategies.base import Strategy, WorkerContext
from distbench.strategies.common import (
    build_module,
    make_batches,
    record_step,
    state_as_numpy,
    synchronizer,
)
from distbench.strategies.convergence import Convergence, broadcast_decision
from distbench.strategies.evaluation import has_held_out, held_out_accuracy
from distbench.strategies.ps.client import Client, Replica
from distbench.strategies.ps.server import AppliedUpdate, ShardServer, start_serving
from distbench.strategies.ps.sharding import Entry, Layout, build_layout


def server_units(cfg: RunConfig) -> list[int]:
    """Ranks that hold weights: the last rank (central) or every worker (sharded)."""
    return [cfg.workers] if cfg.servers == "central" else list(range(cfg.workers))


def initial_slice(model: nn.Module, entries: list[Entry]) -> torch.Tensor:
    """The starting values of one unit's tensors, flattened in layout order."""
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    parts = [tensors[e.name].detach().reshape(-1).to("cpu", torch.float32) for e in entries]
    return torch.cat(parts) if parts else torch.zeros(0)


class ParameterServer(Strategy):
    """Base of the ``ps-*`` strategies; subclasses set ``synchronous`` and the batch rule."""

    name: ClassVar[str] = "ps"
    description: ClassVar[str] = "parameter server"
    settings: ClassVar[tuple[str, ...]] = ("servers", "ps_semaphore")
    emulated_compute: ClassVar[bool] = True
    trains_to_target: ClassVar[bool] = True
    workers_are: ClassVar[str] = "data-parallel workers (+1 server if central)"

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        self.layout: Layout | None = None
        self.server: ShardServer | None = None
        self.model: nn.Module | None = None
        self.reports = False
        self.accuracy: float | None = None
        self.goal: Convergence | None = None
        self._record_lock = threading.Lock()

    @classmethod
    def validate(cls, cfg: RunConfig) -> None:
        if cfg.nnodes > 1 and cls.world_size(cfg) % cfg.nnodes:
            raise UserError(
                f"strategy '{cls.name}' with --servers central runs "
                f"{cls.world_size(cfg)} processes (workers + 1 server), which do "
                f"not divide evenly over --nnodes {cfg.nnodes}"
            )

    @classmethod
    def server_processes(cls, cfg: RunConfig) -> int:
        """A central server is a process of its own; sharded servers live in the workers."""
        return 1 if cfg.servers == "central" else 0

    @classmethod
    def rank_role(cls, cfg: RunConfig, rank: int) -> str:
        return "server" if cfg.servers == "central" and rank >= cfg.workers else "worker"

    def wanted_version(self, step: int) -> int:
        """The weights version step ``step`` must train on: its iteration when synchronous."""
        return step if self.synchronous else 0

    # -- run -----------------------------------------------------------------------------
    def run(self) -> None:
        ctx, cfg = self.ctx, self.ctx.cfg
        is_worker = ctx.rank < cfg.workers
        device = ctx.device if is_worker else torch.device("cpu")
        model, num_classes = build_module(cfg, device)
        if is_worker:
            ctx.compute.install(model)
        self.layout = build_layout(model, server_units(cfg))
        workers_group = self._workers_group()
        threads: list[threading.Thread] = []
        if ctx.rank in server_units(cfg) and self.layout.region(ctx.rank).size > 0:
            self.server = self._make_server(model)
            threads = start_serving(self.server, [w for w in range(cfg.workers) if w != ctx.rank])
        if is_worker:
            self._train(model, device, num_classes, workers_group)
        for thread in threads:
            thread.join()
        if self.server is not None:
            if self.server.failure is not None:
                raise self.server.failure
            self.peers_lost = max(self.peers_lost, len(self.server.stats.lost))

    def _workers_group(self) -> dist.ProcessGroup | None:
        """The workers' own group, for a synchronous run to a target to agree on stopping.
        Every rank must take part in creating it, before any serving starts."""
        cfg = self.ctx.cfg
        if not cfg.trains_to_goal or not self.synchronous:
            return None
        return dist.new_group(list(range(cfg.workers)))

    def _goal(self, model: nn.Module, group: dist.ProcessGroup | None) -> Convergence:
        cfg = self.ctx.cfg
        samples = self.global_batch(cfg) if self.synchronous else self.local_batch(cfg)
        goal = self.convergence(model, samples)
        goal.asynchronous = not self.synchronous
        goal.updaters = 1 if self.synchronous else cfg.workers
        if self.synchronous:
            goal.agree = lambda reached: broadcast_decision(reached, cfg.workers, group)
        else:
            goal.agree = lambda reached: reached  # the units pass it on (see client.final)
        return goal

    def _make_server(self, model: nn.Module) -> ShardServer:
        assert self.layout is not None
        cfg, rank = self.ctx.cfg, self.ctx.rank
        entries = self.layout.entries_of(rank)
        on_update = self._record_update if self.rank_role(cfg, rank) == "server" else None
        return ShardServer(
            cfg,
            self.layout.region(rank),
            entries,
            initial_slice(model, entries),
            list(range(cfg.workers)),
            self.synchronous,
            on_update,
        )

    def _record_update(self, update: AppliedUpdate) -> None:
        """The central server's records: one 'step' per applied update, phase ``update``."""
        cfg = self.ctx.cfg
        samples = self.global_batch(cfg) if self.synchronous else self.local_batch(cfg)
        with self._record_lock:
            self.ctx.recorder.step(
                update.index,
                update.step < cfg.warmup,
                update.start_wall,
                update.seconds,
                samples,
                {"update": update.seconds},
                worker=update.worker,
                staleness=update.staleness,
            )

    def _batches(self, num_classes: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        cfg = self.ctx.cfg
        return make_batches(cfg, self.local_batch(cfg), self.ctx.rank, cfg.workers, num_classes)

    def _train(
        self,
        model: nn.Module,
        device: torch.device,
        num_classes: int,
        workers_group: dist.ProcessGroup | None,
    ) -> None:
        assert self.layout is not None
        ctx, cfg = self.ctx, self.ctx.cfg
        replica = Replica(model, self.layout, device)
        client = Client(ctx.rank, replica, self.server, cfg.ps_semaphore)
        batches = self._batches(num_classes)
        loss_fn = nn.CrossEntropyLoss()
        timer = PhaseTimer(synchronizer(device))
        self.goal = goal = self._goal(model, workers_group)
        for step in goal.steps():
            timer.start_step()
            pulled = client.pull(timer, step, self.wanted_version(step))
            if pulled.stop:
                goal.stop()
            x, y = ctx.compute.next_batch(batches, device)
            timer.mark("data")
            loss = loss_fn(model(x), y)
            timer.mark("forward")
            replica.zero_grads()
            ctx.compute.backward(loss)
            timer.mark("backward")
            queued = client.push(timer, step)
            loss_value = float(loss.detach())
            seconds = record_step(
                ctx.recorder,
                cfg,
                step,
                timer,
                self.local_batch(cfg),
                loss=loss_value,
                queue=pulled.queue_s + queued,
            )
            goal.after_step(step, seconds, loss_value, version=client.version())
        self._finish(client, model, device)

    def _finish(self, client: Client, model: nn.Module, device: torch.device) -> None:
        assert self.goal is not None
        final = client.final(target_reached=self.goal.reached_at is not None)
        self.peers_lost = final.lost
        self.model = model
        self.reports = final.reporter == self.ctx.rank
        # An emulated model computes nothing worth evaluating (and would wait per batch).
        if self.reports and has_held_out(self.ctx.cfg) and not self.ctx.compute.emulated:
            self.accuracy = held_out_accuracy(self.ctx.cfg, model, device)

    # -- results -------------------------------------------------------------------------
    def final_weights(self) -> dict[str, np.ndarray] | None:
        return state_as_numpy(self.model) if self.reports and self.model is not None else None

    def summary_extra(self) -> dict[str, Any]:
        cfg = self.ctx.cfg
        extra: dict[str, Any] = {"servers": cfg.servers, "semaphore": cfg.ps_semaphore}
        if self.layout is not None and (self.ctx.rank == 0 or self.server is not None):
            described = self.layout.describe()
            if cfg.servers == "central":
                described.pop("assignment")
            extra.update(described)
        if self.server is not None:
            extra["server"] = self.server.summary()
            if self.server.stats.lost:
                extra["lost_workers"] = extra["server"]["lost_workers"]
        if self.reports:
            extra["reported_by_rank"] = self.ctx.rank
        if self.accuracy is not None:
            extra["accuracy"] = self.accuracy
        if self.goal is not None:
            extra.update(self.goal.summary())
        return extra
