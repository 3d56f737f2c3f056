"""Pipeline-parallel training on ``torch.distributed.pipelining``: rank ``r`` runs stage ``r``.

Start at ``PipelineStrategy.run``: every rank builds the full model from the seed (so its
blocks have exactly the weights sequential training starts from), agrees on a ``Plan``
(rank 0 measures the link and, for ``--partition profiled``, profiles the blocks, then
broadcasts the plan), keeps its own blocks as a ``PipelineStage`` and steps a GPipe or
1F1B schedule. ``--batch-size`` is the global batch; the schedule splits it into
``--microbatches`` equal micro-batches and, with ``scale_grads``, divides the summed
micro-batch gradients by their number, so the update equals the full-batch mean's.

How a step is measured on each stage (phases of ``measurement/timer.PHASES``, adding up to the
step time): ``data`` (the first stage loads inputs, the last loads labels), then the
schedule's ``step``, whose time is split by ``StageProbe`` into ``forward`` and
``backward`` (the wrapped per-chunk compute, the loss counted as forward) and the rest,
*blocked* time spent waiting in send/recv. Blocked time cannot be split by clocks on one
rank alone, so ``comm`` is the transfer time the alpha-beta link model (measured by a
ping-pong before training) gives for the bytes this stage moved, capped at the blocked
time, and ``wait`` (idle: the pipeline bubble) is the remainder. ``update`` is the
optimizer step. The measured bubble fraction is ``wait / step_time``.

Training to a target accuracy (``convergence.py``): at each evaluation every stage sends
its weights to rank 0 (``gather_object``), which loads them into the whole model it kept
and evaluates it; the gathering counts as evaluation time, never as a step's.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from statistics import fmean
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from distbench.compute.emulated import EmulatedCompute, StageEmulation
from distbench.config import RunConfig
from distbench.errors import UserError
from distbench.measurement.timer import PhaseTimer
from distbench.models import build_model, describe_blocks, model_blocks
from distbench.strategies.base import Strategy
from distbench.strategies.common import (
    build_module,
    input_shape_of,
    make_batches,
    make_optimizer,
    record_step,
    state_as_numpy,
    synchronizer,
)
from distbench.strategies.contract import Equivalence
from distbench.strategies.pipeline.emulation import emulated_costs, emulated_stage
from distbench.strategies.pipeline.partition import (
    DEFAULT_LINK,
    BlockCost,
    Link,
    Plan,
    format_plan,
    pipeline_copies,
    plan_stages,
    predicted_step_s,
    replicated_fits,
    theoretical_bubble,
)
from distbench.strategies.pipeline.profile_blocks import (
    measure_link,
    measure_ring_step,
    profile_blocks,
)
from distbench.strategies.pipeline.stages import (
    StageProbe,
    gradient_mean,
    replica_group,
    stage_module,
)

if TYPE_CHECKING:
    from torch.distributed.pipelining.schedules import PipelineScheduleSingle

Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]
MEASURED_PHASES = ("data", "forward", "backward", "comm", "wait", "update")
CPU_FIGURES = ("forward_cpu", "backward_cpu")  # process CPU seconds in forward / backward


def count_blocks(cfg: RunConfig) -> int:
    """Blocks of ``cfg.model``, built on the meta device (no memory, no compute)."""
    with torch.device("meta"):
        model = build_model(cfg.model, cfg.num_classes or 10, cfg.input_size)
    return len(model_blocks(model))


class PipelineStrategy(Strategy):
    """Shared machinery; subclasses choose the schedule and the micro-batch count."""

    scaling: ClassVar[str] = "strong"
    workers_are: ClassVar[str] = "pipeline stages (stages x replicas with --partition profiled)"
    prediction_model: ClassVar[str | None] = "pipeline"
    # Same global batch as sequential, micro-batch gradients summed in another order.
    equivalence: ClassVar[Equivalence] = Equivalence(rtol=1e-5, atol=1e-6)
    schedule_name: ClassVar[str] = "gpipe"
    settings: ClassVar[tuple[str, ...]] = ("microbatches", "partition")
    trains_to_target: ClassVar[bool] = True  # rank 0 evaluates the gathered stages
    #: Forward, backward and update can be waits replaying a profile (``--compute``).
    emulated_compute: ClassVar[bool] = True
    #: A profiled plan may give stages replicas: copies of the whole pipeline for the
    #: flushing schedules (each copy runs ``torch.distributed.pipelining``'s schedule in a
    #: process group of its own), any number per stage for PipeDream.
    replicates: ClassVar[bool] = True
    #: The pipeline drains every step (GPipe, 1F1B-flush), which the predictions count.
    flushes: ClassVar[bool] = True
    #: Weights stashed and updated per micro-batch (PipeDream): the planner prices it.
    updates_per_microbatch: ClassVar[bool] = False

    # ------------------------------------------------------------------ description

    @classmethod
    def microbatches_of(cls, cfg: RunConfig) -> int:
        return cfg.microbatches

    @classmethod
    def local_batch(cls, cfg: RunConfig) -> int:
        """What a stage computes at a time: one micro-batch (every stage sees all samples)."""
        return cfg.batch_size // cls.microbatches_of(cfg)

    @classmethod
    def validate(cls, cfg: RunConfig) -> None:
        m = cls.microbatches_of(cfg)
        if cfg.batch_size % m:
            raise UserError(
                f"{cls.name}: --batch-size {cfg.batch_size} must be divisible by --microbatches {m}"
            )
        blocks = count_blocks(cfg)
        if cfg.partition == "profiled" and (cfg.workers > blocks or cls.flushes):
            cls._validate_replicas(cfg, blocks, m)
        elif cfg.workers > blocks:
            raise UserError(
                f"{cls.name}: {cfg.workers} stages (--workers) but model "
                f"'{cfg.model}' has only {blocks} block(s); see "
                f"`distbench list models --blocks {cfg.model}` (with --partition profiled "
                "spare workers become replicas)"
            )

    @classmethod
    def _validate_replicas(cls, cfg: RunConfig, blocks: int, m: int) -> None:
        """More workers than blocks: the profiled planner must be able to replicate."""
        one_f_one_b = cls.flushes and cls.schedule_name == "1f1b"
        if cls.flushes:
            fits = bool(pipeline_copies(blocks, cfg.workers, m, one_f_one_b))
            shape = "copies of a pipeline of at most one stage per block, the copies dividing"
        else:
            fits = replicated_fits(blocks, cfg.workers, m)
            shape = "stages of at most one per block, each stage's replicas dividing"
        if not fits:
            per_copy = ", each copy with at least as many micro-batches as stages (1F1B)"
            raise UserError(
                f"{cls.name}: {cfg.workers} workers on model '{cfg.model}' ({blocks} blocks) "
                f"cannot be planned as {shape} --microbatches {m}"
                + (per_copy if one_f_one_b else "")
            )

    def schedule_class(self) -> type[PipelineScheduleSingle]:
        # Imported here, not at module level: torch.distributed.pipelining takes seconds to
        # import, and every distbench process imports the strategy registry.
        from torch.distributed.pipelining import ScheduleGPipe

        return ScheduleGPipe

    # ------------------------------------------------------------------ setup

    def run(self) -> None:
        ctx, cfg = self.ctx, self.ctx.cfg
        self.m = self.microbatches_of(cfg)
        model, num_classes = build_module(cfg, ctx.device)
        self.plan = self._agree_on_plan(model)
        self.stage_index, self.replica = self.plan.place(ctx.rank)
        self.first = self.stage_index == 0
        self.last = self.stage_index == len(self.plan.stages) - 1
        self._build_stage(model)
        # Rank 0 keeps the whole model to evaluate the gathered stages (a target accuracy);
        # otherwise the other stages' blocks go.
        self.whole = model if ctx.rank == 0 and cfg.trains_to_goal else None
        del model
        params = list(self.module.parameters())  # a stage of pooling/flatten may have none
        self.optimizer = make_optimizer(cfg, params) if params else None
        # every copy of the first and last stages reads the batches
        batches = (
            make_batches(cfg, cfg.batch_size, 0, 1, num_classes)
            if self.first or self.last
            else None
        )
        self._train(batches)
        self._gather_results()

    def _build_stage(self, model: nn.Module) -> None:
        """This rank's blocks as a timed ``PipelineStage`` under the strategy's schedule.

        With copies of the pipeline (a replicated plan), each copy is a process group of
        its stages, a stage's copies average their gradients after the schedule's step by
        an all-reduce over a group of them (``gradient_mean``, as PipeDream's replicas do;
        DDP inside the schedule fails its bucket rebuild on emulated stages), and each copy
        takes its share of the batch's micro-batches."""
        from torch.distributed.pipelining import PipelineStage  # slow import: see above

        ctx = self.ctx
        span = self.plan.stages[self.stage_index]
        self.copies = span.replicas
        self.module = stage_module(model, span.start, span.stop)
        self.emulation = self._emulate(model, span.start, span.stop)
        self.boundary_bytes = self._boundary_bytes(model, span.start, span.stop)
        self.probe = StageProbe(self.module, synchronizer(ctx.device))
        pipeline = self._copy_group()
        found = replica_group(self.plan, self.stage_index)  # this stage's copies
        self.stage_copies = found[0] if found else None
        self.average = gradient_mean(*found) if found else None
        stage = PipelineStage(
            self.module, self.stage_index, len(self.plan.stages), ctx.device, group=pipeline
        )
        self.probe.install(stage)
        self.schedule = self.schedule_class()(
            stage, self.m // self.copies, loss_fn=self.probe.timed_loss(nn.CrossEntropyLoss())
        )

    def _copy_group(self) -> dist.ProcessGroup | None:
        """This rank's copy of the pipeline as a process group (None: one copy). Every
        rank creates every copy's group, in the same order, as ``new_group`` requires."""
        if self.copies == 1:
            return None
        stages = range(len(self.plan.stages))
        pipeline = None
        for copy in range(self.copies):
            group = dist.new_group([self.plan.rank_of(s, copy) for s in stages])
            if copy == self.replica:
                pipeline = group
        return pipeline

    def _emulate(self, model: nn.Module, start: int, stop: int) -> StageEmulation | None:
        """With ``--compute``: this stage's forward, backward and update become waits, its
        share of the replayed plan by the block profile (``emulated_stage``)."""
        compute = self.ctx.compute
        if not isinstance(compute, EmulatedCompute):
            return None
        emulation = emulated_stage(compute, list(self.plan.profile), start, stop)
        infos = describe_blocks(model, input_shape_of(self.ctx.cfg))
        emulation.install(self.module, tuple(infos[stop - 1].output_shape))
        return emulation

    def _agree_on_plan(self, model: nn.Module) -> Plan:
        """Rank 0 decides, everyone receives the same object (plans must match exactly)."""
        ctx = self.ctx
        link = (
            measure_link(ctx.rank, 1 - ctx.rank, ctx.device)
            if ctx.rank < 2 <= ctx.world_size
            else None
        )
        if self.replicates and ctx.cfg.partition == "profiled" and ctx.world_size > 1:
            # replicas pay an all-reduce, whose reduction the ping-pong does not see
            pair = dist.new_group([0, 1])  # every rank takes part in creating it
            if link is not None:
                link = measure_ring_step(link, pair, ctx.device)
        box: list[Any] = [self._plan_on_rank0(model, link) if ctx.rank == 0 else None]
        if ctx.world_size > 1:
            dist.broadcast_object_list(box, src=0)
        plan: Plan = box[0]
        if ctx.rank == 0:
            sys.stderr.write(format_plan(plan, self.m, self.flushes) + "\n")
        return plan

    def _plan_on_rank0(self, model: nn.Module, link: Link | None) -> Plan:
        cfg = self.ctx.cfg
        names = [name for name, _ in model_blocks(model)]
        link = link or DEFAULT_LINK
        compute = self.ctx.compute
        replayed = compute.plan if isinstance(compute, EmulatedCompute) else None
        if cfg.partition == "uniform" and replayed is None:
            return plan_stages("uniform", names, self.ctx.world_size, link=link)
        # emulated stages replay the block profile's shares, so every plan needs it
        costs = self._block_costs(model)
        if replayed is not None:
            costs = emulated_costs(costs, replayed)
        return plan_stages(
            cfg.partition,
            names,
            self.ctx.world_size,
            costs,
            link,
            replicate=self.replicates,
            microbatches=self.m,
            per_microbatch=self.updates_per_microbatch,
            copies_only=self.flushes,
            one_f_one_b=self.schedule_name == "1f1b",
        )

    def _block_costs(self, model: nn.Module) -> list[BlockCost]:
        """Every block's measured cost on one micro-batch (rank 0, before training)."""
        cfg = self.ctx.cfg
        generator = torch.Generator().manual_seed(cfg.seed)
        sample = torch.randn(
            (cfg.batch_size // self.m, *input_shape_of(cfg)), generator=generator
        ).to(self.ctx.device)
        return profile_blocks(model, sample, synchronizer(self.ctx.device))

    def _boundary_bytes(self, model: nn.Module, start: int, stop: int) -> tuple[int, int]:
        """Bytes per micro-batch this stage receives (input) and sends (output)."""
        infos = describe_blocks(model, input_shape_of(self.ctx.cfg))
        micro = self.ctx.cfg.batch_size // self.m
        incoming = infos[start - 1].activation_bytes * micro if start > 0 else 0
        outgoing = infos[stop - 1].activation_bytes * micro if stop < len(infos) else 0
        return incoming, outgoing

    # ------------------------------------------------------------------ training

    def _train(self, batches: Batches | None) -> None:
        cfg = self.ctx.cfg
        timer = PhaseTimer(synchronizer(self.ctx.device))
        self.step_phases: list[dict[str, float]] = []
        evaluated = self.whole if self.whole is not None else self.module
        self.goal = self.convergence(evaluated, cfg.batch_size)
        self.goal.gather = self._gather_stages_into_whole
        for step in self.goal.steps():
            loss = self._step(timer, batches)
            # counted once, where the loss is: each copy of the last stage its share
            samples = cfg.batch_size // self.copies if self.last else 0
            extra = {"loss": loss} if loss is not None else {}
            seconds = record_step(self.ctx.recorder, cfg, step, timer, samples, **extra)
            if step >= cfg.warmup:
                step_time, phases = timer.end_step()
                self.step_phases.append(
                    {
                        **phases,
                        "step": step_time,
                        "forward_cpu": self.probe.forward_cpu_s,
                        "backward_cpu": self.probe.backward_cpu_s,
                    }
                )
            self.probe.end_first_step()
            self.goal.after_step(step, seconds, loss)

    def _gather_stages_into_whole(self) -> None:
        """Every stage's weights into rank 0's whole model, to evaluate it."""
        state = {k: t.detach().cpu() for k, t in self.module.state_dict().items()}
        parts: list[Any] | None = [None] * self.ctx.world_size if self.first else None
        if self.ctx.world_size > 1:
            dist.gather_object(state, parts, dst=0)
        if self.whole is not None and parts is not None:
            merged = {k: t for part in parts if part for k, t in part.items()}
            self.whole.load_state_dict(merged or state)

    def _step(self, timer: PhaseTimer, batches: Batches | None) -> float | None:
        timer.start_step()
        x, y = self._copy_share(next(batches)) if batches is not None else (None, None)
        device = self.ctx.device
        began = timer.mark("data")
        self.probe.reset()
        losses: list[torch.Tensor] = []
        args = (x.to(device),) if self.first and x is not None else ()
        kwargs: dict[str, Any] = (
            {"target": y.to(device), "losses": losses} if self.last and y is not None else {}
        )
        self.schedule.step(*args, return_outputs=False, **kwargs)
        ended = timer.mark("forward")  # the whole schedule step, redistributed below
        self._split_schedule_time(timer, ended - began)
        if self.average is not None:  # copies of the pipeline: their gradients' mean
            self.average([p.grad for p in self.module.parameters() if p.grad is not None])
            timer.mark("comm")
        if self.optimizer is not None:
            if self.emulation is not None:
                self.emulation.update()
            else:
                self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        timer.mark("update")
        if not losses:
            return None
        loss = torch.stack([v.detach() for v in losses]).mean()
        if self.stage_copies is not None:  # the global batch's loss, over every copy's share
            dist.all_reduce(loss, group=self.stage_copies)
            loss /= self.copies
        return float(loss)

    def _copy_share(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """This copy's micro-batches of the global batch: every ``copies``-th, from its
        own index (the schedule splits them again)."""
        if self.copies == 1:
            return batch
        return tuple(torch.cat(t.chunk(self.m)[self.replica :: self.copies]) for t in batch)

    def _split_schedule_time(self, timer: PhaseTimer, total: float) -> None:
        blocked = max(0.0, total - self.probe.forward_s - self.probe.backward_s)
        timer.move("forward", "backward", self.probe.backward_s)
        timer.move("forward", "wait", blocked)
        timer.move("wait", "comm", min(blocked, self._modelled_comm_s()))

    def _modelled_comm_s(self) -> float:
        """Transfers of one step at this stage: per micro-batch, the activation in and its
        gradient out, the activation out and its gradient in (alpha-beta link model)."""
        link = self.plan.link or DEFAULT_LINK
        seconds = 0.0
        for nbytes in self.boundary_bytes:
            if nbytes:
                seconds += 2 * self.m * link.transfer_s(nbytes)
        return seconds

    # ------------------------------------------------------------------ results

    def _stage_figures(self) -> dict[str, Any]:
        means = {
            p: fmean(s.get(p, 0.0) for s in self.step_phases)
            for p in (*MEASURED_PHASES, *CPU_FIGURES)
        }
        step = fmean(s["step"] for s in self.step_phases)
        stage, replica = self.plan.place(self.ctx.rank)
        span = self.plan.stages[stage]
        return {
            "stage": stage,
            "replica": replica,
            "rank": self.ctx.rank,
            "blocks": list(span.blocks),
            "step_s": step,
            **{f"{p}_s": v for p, v in means.items()},
            "blocked_s": means["comm"] + means["wait"],
            "bubble": means["wait"] / step if step > 0 else None,
            "predicted_s_per_microbatch": span.time_s,
            "param_bytes": sum(p.numel() * p.element_size() for p in self.module.parameters()),
            "boundary_bytes_in": self.boundary_bytes[0],
            "boundary_bytes_out": self.boundary_bytes[1],
            "inflight_peak_microbatches": self.probe.inflight_peak,
            "activation_bytes_per_microbatch": self.probe.microbatch_activation_bytes,
            "activation_peak_bytes": self.probe.activation_peak_bytes,
        }

    def _gather_results(self) -> None:
        """Per-stage figures (and, for --save-weights, stage weights) to rank 0."""
        ctx = self.ctx
        figures = self._stage_figures()
        weights = state_as_numpy(self.module) if ctx.cfg.save_weights else None
        self.all_figures: list[dict[str, Any]] = [figures]
        self.all_weights: list[dict[str, np.ndarray] | None] = [weights]
        if ctx.world_size == 1:
            return
        collected: list[Any] | None = [None] * ctx.world_size if ctx.rank == 0 else None
        dist.gather_object((figures, weights), collected, dst=0)
        if collected is not None:
            self.all_figures = [item[0] for item in collected]
            self.all_weights = [item[1] for item in collected]

    def final_weights(self) -> dict[str, np.ndarray] | None:
        """The full model's weights on rank 0, under the unsplit model's names."""
        if self.ctx.rank != 0:
            return None
        merged: dict[str, np.ndarray] = {}
        for part in self.all_weights:
            merged.update(part or {})
        return merged

    def summary_extra(self) -> dict[str, Any]:
        if self.ctx.rank != 0:
            return {}
        convergence = self.goal.summary()
        stages = len(self.plan.stages)
        steps = sum(f["step_s"] for f in self.all_figures)
        waits = sum(f["wait_s"] for f in self.all_figures)
        predicted = predicted_step_s(self.plan, self.m, self.flushes)
        return {
            "schedule": self.schedule_name,
            "stages": stages,
            "microbatches": self.m,
            "microbatch_size": self.ctx.cfg.batch_size // self.m,
            "partition": self.plan.method,
            "plan": self.plan.to_dict(),
            "plan_text": format_plan(self.plan, self.m, self.flushes),
            "predicted_step_s": predicted,
            "bubble_theoretical": theoretical_bubble(stages, self.m) if self.flushes else 0.0,
            "bubble_measured": waits / steps if steps > 0 else None,
            "per_stage": self.all_figures,
            "slowest_stage_compute_s": max(
                f["forward_s"] + f["backward_s"] for f in self.all_figures
            ),
            "slowest_stage_compute_cpu_s": max(
                f["forward_cpu_s"] + f["backward_cpu_s"] for f in self.all_figures
            ),
            **convergence,
        }


class PipelineGPipe(PipelineStrategy):
    name: ClassVar[str] = "pipeline-gpipe"
    description: ClassVar[str] = (
        "pipeline parallel, GPipe schedule (all forwards, then all "
        "backwards); --microbatches, --partition"
    )
    schedule_name: ClassVar[str] = "gpipe"


class Pipeline1F1B(PipelineStrategy):
    name: ClassVar[str] = "pipeline-1f1b"
    description: ClassVar[str] = (
        "pipeline parallel, 1F1B schedule (PipeDream-flush: one "
        "forward, one backward); --microbatches, --partition"
    )
    schedule_name: ClassVar[str] = "1f1b"

    @classmethod
    def validate(cls, cfg: RunConfig) -> None:
        super().validate(cfg)
        # a profiled plan may run copies of a shorter pipeline (checked above)
        if cfg.partition == "uniform" and cfg.microbatches < cfg.workers:
            raise UserError(
                f"pipeline-1f1b: --microbatches {cfg.microbatches} must be at "
                f"least the number of stages (--workers {cfg.workers} with --partition uniform)"
            )

    def schedule_class(self) -> type[PipelineScheduleSingle]:
        from torch.distributed.pipelining import Schedule1F1B

        return Schedule1F1B
