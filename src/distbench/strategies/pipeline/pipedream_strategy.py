"""``pipeline-pipedream``: PipeDream's asynchronous 1F1B with weight stashing as a strategy.

The stages, the plan (``--partition uniform|profiled``, PipeDream's planner without
replicas), the results and the per-stage figures are the pipeline strategies' own
(``strategy.py``); what differs is the schedule, which is distbench's (``pipedream.py``)
over ``torch.distributed`` point-to-point rather than ``torch.distributed.pipelining``'s,
since those flush every step. The run is one stream of ``(warmup + steps) x M``
micro-batches; a rank's step ends with the backward of the step's last micro-batch, so its
step time holds the forwards of the next step's first micro-batches that 1F1B runs before
it (none is ever waited for: the pipeline never drains until the stream ends).

Phases of a step: ``forward``, ``backward`` and ``update`` are the stage's own compute
(one update per micro-batch), ``comm`` and ``wait`` are the time blocked receiving
activations or gradients and finishing sends, split by the link model as for the other
pipelines. Per stage it also stores ``stash_peak_bytes`` (the weights held for micro-batches
in flight) and ``delay_updates`` (how many updates a micro-batch's weights were behind at
its update: ``S - s - 1`` in steady state).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import nn

from distbench.measurement.timer import PhaseTimer
from distbench.models import describe_blocks
from distbench.strategies.common import input_shape_of, record_step, synchronizer
from distbench.strategies.contract import Equivalence
from distbench.strategies.pipeline.pipedream import (
    Action,
    DistTransport,
    Neighbour,
    PipeDreamStage,
    in_transit_at_step_end,
    last_of_step,
    replica_actions,
    stage_depths,
)
from distbench.strategies.pipeline.stages import (
    StageProbe,
    gradient_mean,
    replica_group,
    stage_module,
)
from distbench.strategies.pipeline.strategy import Batches, PipelineStrategy


class MicroBatches:
    """Micro-batch ``k`` of the stream: chunk ``k mod M`` of global batch ``k // M``, read
    in order from the rank's batches and kept only while a micro-batch of it is in flight."""

    def __init__(self, batches: Batches | None, m: int, device: torch.device) -> None:
        self.batches, self.m, self.device = batches, m, device
        self.chunks: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self.read = 0

    def __call__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        step = k // self.m
        while self.read <= step:
            assert self.batches is not None
            x, y = next(self.batches)
            xs, ys = x.to(self.device).chunk(self.m), y.to(self.device).chunk(self.m)
            self.chunks[self.read] = list(zip(xs, ys, strict=True))
            self.read += 1
        for old in [s for s in self.chunks if s < step - 1]:
            del self.chunks[old]
        return self.chunks[step][k % self.m]


class PipelinePipeDream(PipelineStrategy):
    name: ClassVar[str] = "pipeline-pipedream"
    description: ClassVar[str] = (
        "pipeline parallel, PipeDream: 1F1B without flushes, an update per micro-batch, "
        "weight stashing; --microbatches, --partition"
    )
    schedule_name: ClassVar[str] = "pipedream"
    replicates: ClassVar[bool] = True
    flushes: ClassVar[bool] = False
    updates_per_microbatch: ClassVar[bool] = True
    settings: ClassVar[tuple[str, ...]] = ("microbatches", "partition", "vertical_sync")
    # Updates per micro-batch on stashed weights: not the sequential run's weights.
    equivalence: ClassVar[Equivalence] = Equivalence(kind="statistical")

    # ------------------------------------------------------------------ setup

    def _build_stage(self, model: nn.Module) -> None:
        ctx = self.ctx
        span = self.plan.stages[self.stage_index]
        found = replica_group(self.plan, self.stage_index)
        self.average = gradient_mean(*found) if found else None
        self.module = stage_module(model, span.start, span.stop)
        self.emulation = self._emulate(model, span.start, span.stop)
        self.boundary_bytes = self._boundary_bytes(model, span.start, span.stop)
        micro = ctx.cfg.batch_size // self.m
        shapes = [input_shape_of(ctx.cfg)] + [
            b.output_shape for b in describe_blocks(model, input_shape_of(ctx.cfg))
        ]
        self.input_like = torch.zeros((micro, *shapes[span.start]), device=ctx.device)
        self.output_like = torch.zeros((micro, *shapes[span.stop]), device=ctx.device)
        # the flushing pipelines' probe, never installed: its activation figures stay empty
        self.probe = StageProbe(self.module, synchronizer(ctx.device))

    @property
    def shape(self) -> list[int]:
        """Replicas of every stage."""
        return [stage.replicas for stage in self.plan.stages]

    def _neighbour(self, stage: int) -> Neighbour:
        """The rank of stage ``stage`` that holds micro-batch ``k`` (replicas take turns)."""
        if not 0 <= stage < len(self.plan.stages):
            return None
        replicas = self.plan.stages[stage].replicas
        if replicas == 1:
            return self.plan.rank_of(stage, 0)
        return lambda k: self.plan.rank_of(stage, k % replicas)

    def _train(self, batches: Batches | None) -> None:
        ctx, cfg = self.ctx, self.ctx.cfg
        stages, s = len(self.plan.stages), self.stage_index
        replicas = self.plan.stages[s].replicas
        self.runtime = PipeDreamStage(
            self.module,
            self.optimizer,
            DistTransport(),
            self._neighbour(s - 1),
            self._neighbour(s + 1),
            self.input_like,
            self.output_like,
            # a stage that runs each backward right after its forward (the last) never
            # updates between the two: nothing to stash
            stash=stages - s - 1 > 0,
            vertical_sync=cfg.vertical_sync,
            average=self.average,
            apply_update=self.emulation.update if self.emulation is not None else None,
        )
        # With a target, rank 0 evaluates the stages' weights gathered at the end of a step,
        # when every stage has applied the step's M updates (no flush is needed: nothing is
        # in transit then) and every rank stops after the same step.
        evaluated = self.whole if self.whole is not None else self.module
        self.goal = self.convergence(evaluated, cfg.batch_size)
        self.goal.gather = self._gather_stages_into_whole
        limit = self.goal.step_limit if self.goal.active else cfg.warmup + cfg.steps
        depth = stage_depths(self.shape)[s]
        actions = iter(replica_actions(s, stages, limit * self.m, self.replica, replicas, depth))
        micro = MicroBatches(batches, self.m, ctx.device)
        timer = PhaseTimer(synchronizer(ctx.device))
        self.step_phases: list[dict[str, float]] = []
        for step in self.goal.steps():
            losses = self._run_step(timer, actions, micro, step)
            # a replica of the last stage trains its share of the step's micro-batches
            samples = cfg.batch_size // replicas if self.last else 0
            loss = sum(losses) / len(losses) if losses else None
            extra = {"loss": loss} if loss is not None else {}
            seconds = record_step(ctx.recorder, cfg, step, timer, samples, **extra)
            if step >= cfg.warmup:
                self.step_phases.append(self._phases_of(timer, seconds))
            self.goal.after_step(step, seconds, loss)
        self._end_stream(step, limit * self.m)

    def _end_stream(self, step: int, total: int) -> None:
        """After the stream's last step (or the one that reached the target): take what
        the previous stage sent ahead, and wait for every send."""
        for k in in_transit_at_step_end(
            self.stage_index, self.shape, total, step, self.m, self.replica
        ):
            self.runtime.discard_forward(k)
        self.runtime.transport.wait_sends()

    def _run_step(
        self, timer: PhaseTimer, actions: Iterator[Action], micro: MicroBatches, step: int
    ) -> list[float]:
        """Run actions until this step's last micro-batch has gone backward here."""
        runtime = self.runtime
        runtime.times.reset()
        runtime.losses.clear()
        timer.start_step()
        began = time.perf_counter()
        # this rank's last micro-batch of the step (a replica takes every r-th)
        replicas = self.plan.stages[self.stage_index].replicas
        last = last_of_step(step, self.m, self.replica, replicas)
        for action in actions:
            runtime.do(action, micro)
            if action.kind == "B" and action.microbatch >= last:
                break
        runtime.transport.wait_sends((step + 1) * self.m - 1)
        elapsed = time.perf_counter() - began
        timer.mark("forward")  # everything, redistributed below
        times = runtime.times
        timer.move("forward", "backward", times.backward)
        timer.move("forward", "update", times.update)
        timer.move("forward", "comm", times.sync)  # a replicated stage's all-reduce
        blocked = max(0.0, elapsed - times.forward - times.backward - times.update - times.sync)
        timer.move("forward", "wait", blocked)
        timer.move("wait", "comm", min(blocked, self._modelled_comm_s()))
        return list(runtime.losses)

    def _phases_of(self, timer: PhaseTimer, seconds: float) -> dict[str, float]:
        _, phases = timer.end_step()
        return {
            **phases,
            "step": seconds,
            "forward_cpu": self.runtime.times.forward_cpu,
            "backward_cpu": self.runtime.times.backward_cpu,
        }

    # ------------------------------------------------------------------ results

    def _stage_figures(self) -> dict[str, Any]:
        figures = super()._stage_figures()
        delays = [update - seen for _, seen, update in self.runtime.versions]
        figures.update(
            stash_peak_bytes=self.runtime.stash_peak_bytes,
            delay_updates=max(delays, default=0),
            inflight_peak_microbatches=stage_depths(self.shape)[self.stage_index],
        )
        return figures

    def summary_extra(self) -> dict[str, Any]:
        extra = super().summary_extra()
        if extra:
            extra.update(
                updates_per_step=self.m,
                stash_peak_bytes=[f["stash_peak_bytes"] for f in self.all_figures],
            )
        return extra
