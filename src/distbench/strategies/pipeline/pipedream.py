"""PipeDream's schedule as published: 1F1B without flushes, with weight stashing.

Start at :class:`PipeDreamStage`. Every stage runs the same stream of micro-batches in the
one-forward-one-backward order (:func:`one_f_one_b`): after a warm-up of ``S - s - 1``
forwards, stage ``s`` alternates one forward and one backward until the stream ends, and
never drains between steps (GPipe and 1F1B-flush do, once per step). Each backward updates
the stage's weights at once (one SGD step per micro-batch, as PipeDream updates per
minibatch), so a micro-batch's forward ran on weights that later micro-batches' backwards
have since changed. **Weight stashing** keeps, for every micro-batch in flight, the weights
its forward used, and computes its backward on those (a copy of the stage's parameters per
micro-batch in flight — the memory PipeDream pays, measured in ``stash_peak_bytes``): the
gradient is the gradient of the function the forward computed. Without it, the backward of
an in-flight micro-batch would mix the weights of two versions.

Communication goes through a :class:`Transport`: ``DistTransport`` is ``torch.distributed``
point-to-point (``isend``/``irecv`` with a tag per micro-batch and direction, so messages
match exactly whatever the order); tests use an in-memory one to run stages as threads.
Sends are asynchronous and waited on at the end of each step; receives block, and the 1F1B
order makes that deadlock-free. ``in_flight`` bounds the micro-batches a stage holds at
once: 1 turns the schedule into plain sequential SGD over the micro-batches, which is how
its equivalence with sequential training is tested.

Every stage records, per micro-batch, the weight version (updates applied at this stage)
its forward saw and the version its update is applied to (``versions``): their difference
is the delay PipeDream accepts, ``S - s - 1`` in steady state. With ``trace`` set, a stage
also keeps each micro-batch's input, the gradient it received and the gradient it applied,
so a test can recompute that gradient from the weights of the recorded version.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn
from torch.func import functional_call


@dataclass(frozen=True)
class Action:
    kind: str  # "F" forward, "B" backward
    microbatch: int


def replica_actions(
    stage: int,
    stages: int,
    total: int,
    replica: int = 0,
    replicas: int = 1,
    in_flight: int | None = None,
) -> list[Action]:
    """The 1F1B order of one replica of a replicated stage: the micro-batches ``k`` with
    ``k mod replicas == replica`` (replicas take the stream's micro-batches in turn), at
    most ``in_flight`` of them between forward and backward (``stage_depths`` says how
    many a pipeline of replicated stages needs; default ``S - s``)."""
    mine = list(range(replica, total, replicas))
    order = one_f_one_b(stage, stages, len(mine), in_flight)
    return [Action(a.kind, mine[a.microbatch]) for a in order]


def stage_depths(shape: Sequence[int]) -> list[int]:
    """Micro-batches each replica of each stage keeps in flight, for stages replicated
    ``shape[s]`` times: PipeDream's ``S - s``, raised where a stage's replicas together
    would hold fewer than the next stage's do. A stage's first backward waits for
    forwards of micro-batches up to its replicas' combined depth; if the stage before
    sends fewer before it blocks on a backward of its own, both wait for ever (one stage,
    then four replicas of ``S - s`` each, then one: ``deadlocks`` finds it)."""
    stages = len(shape)
    depths = [0] * stages
    downstream = 0  # micro-batches the next stage's replicas hold in all
    for stage in reversed(range(stages)):
        depths[stage] = max(stages - stage, -(-downstream // shape[stage]))
        downstream = depths[stage] * shape[stage]
    return depths


def deadlocks(orders: dict[tuple[int, int], list[Action]], stages: int) -> bool:
    """Whether ranks running ``orders`` (per ``(stage, replica)``) get stuck: a forward of
    ``k`` needs the previous stage's forward of ``k``, a backward the next stage's backward
    of ``k``, and sends never block. Runs every rank as far as it can until all finish
    (False) or none can move (True)."""
    done: set[tuple[str, int, int]] = set()
    position = dict.fromkeys(orders, 0)
    while True:
        moved = False
        for (stage, replica), order in orders.items():
            while position[(stage, replica)] < len(order):
                action = order[position[(stage, replica)]]
                needs = stage - 1 if action.kind == "F" else stage + 1
                if 0 <= needs < stages and (action.kind, needs, action.microbatch) not in done:
                    break
                done.add((action.kind, stage, action.microbatch))
                position[(stage, replica)] += 1
                moved = True
        if all(position[key] == len(order) for key, order in orders.items()):
            return False
        if not moved:
            return True


def one_f_one_b(stage: int, stages: int, total: int, in_flight: int | None = None) -> list[Action]:
    """The order stage ``stage`` of ``stages`` runs ``total`` micro-batches in: at most
    ``in_flight`` forwards ahead of its backwards (default ``stages - stage``, PipeDream's
    steady state: just enough to keep every stage busy)."""
    if not 0 <= stage < stages:
        raise ValueError(f"stage {stage} of {stages}")
    depth = stages - stage if in_flight is None else max(1, in_flight)
    warmup = min(depth - 1, total)
    actions = [Action("F", k) for k in range(warmup)]
    for k in range(total):
        if warmup + k < total:
            actions.append(Action("F", warmup + k))
        actions.append(Action("B", k))
    return actions


#: A neighbouring stage: none (an end of the pipeline), one rank, or the rank that holds
#: micro-batch ``k`` (a replicated stage).
Neighbour = int | Callable[[int], int] | None


def peer_for(neighbour: Neighbour, k: int) -> int:
    assert neighbour is not None
    return neighbour if isinstance(neighbour, int) else neighbour(k)


class Transport(Protocol):
    """Point-to-point messages between stages, matched by (peer, tag)."""

    def send(self, tensor: torch.Tensor, peer: int, tag: int) -> None: ...

    def recv(self, like: torch.Tensor, peer: int, tag: int) -> torch.Tensor: ...

    def wait_sends(self, last_microbatch: int | None = None) -> None:
        """Until every send so far of micro-batches up to ``last_microbatch`` (all if
        None) has completed (its buffer may be reused)."""
        ...


class DistTransport:
    """``torch.distributed`` point-to-point: asynchronous sends (kept alive until waited
    on), blocking receives into a buffer of the expected shape."""

    def __init__(self, group: dist.ProcessGroup | None = None) -> None:
        self.group = group
        self.pending: list[tuple[dist.Work, torch.Tensor, int]] = []

    def send(self, tensor: torch.Tensor, peer: int, tag: int) -> None:
        payload = tensor.detach().contiguous()
        work = dist.isend(payload, dst=peer, group=self.group, tag=tag)
        if work is not None:
            self.pending.append((work, payload, tag))

    def recv(self, like: torch.Tensor, peer: int, tag: int) -> torch.Tensor:
        buffer = torch.empty_like(like)
        dist.recv(buffer, src=peer, group=self.group, tag=tag)
        return buffer

    def wait_sends(self, last_microbatch: int | None = None) -> None:
        # a send completes once its receiver takes it: a forward sent ahead into the next
        # step is taken only then, so a step's end waits for its own micro-batches only
        kept = []
        for work, payload, tag in self.pending:
            if last_microbatch is None or microbatch_of(tag) <= last_microbatch:
                work.wait()
            else:
                kept.append((work, payload, tag))
        self.pending = kept


def _tag(microbatch: int, backward: bool, version: bool = False) -> int:
    """Activations, gradients and (vertical sync) weight versions of a micro-batch each
    have a tag of their own."""
    return 3 * microbatch + (2 if version else 1 if backward else 0)


def microbatch_of(tag: int) -> int:
    return tag // 3


def last_of_step(step: int, m: int, replica: int = 0, replicas: int = 1) -> int:
    """The last micro-batch of step ``step`` (``m`` per step) that this replica runs."""
    last = (step + 1) * m - 1
    return last - (last - replica) % replicas


def forwarded_by_step_end(
    stage: int, shape: Sequence[int], total: int, step: int, m: int, replica: int
) -> set[int]:
    """The micro-batches whose forward a replica of ``stage`` (of a pipeline replicated as
    ``shape``) has run when its step ``step`` ends, with the backward of its last
    micro-batch of that step."""
    replicas = shape[stage]
    last = last_of_step(step, m, replica, replicas)
    depth = stage_depths(shape)[stage]
    done = set()
    for action in replica_actions(stage, len(shape), total, replica, replicas, depth):
        if action.kind == "F":
            done.add(action.microbatch)
        elif action.microbatch >= last:
            break
    return done


def in_transit_at_step_end(
    stage: int, shape: Sequence[int], total: int, step: int, m: int, replica: int
) -> list[int]:
    """The micro-batches the previous stage has sent this replica by the end of step
    ``step`` that it has not received by then (a stream stopped there, by a reached target,
    leaves them in transit)."""
    if stage == 0:
        return []
    sent: set[int] = set()
    for r in range(shape[stage - 1]):
        sent |= forwarded_by_step_end(stage - 1, shape, total, step, m, r)
    received = forwarded_by_step_end(stage, shape, total, step, m, replica)
    return sorted(k for k in sent - received if k % shape[stage] == replica)


@dataclass
class InFlight:
    """A micro-batch between its forward and its backward at this stage."""

    version: int
    params: dict[str, torch.Tensor]  # the stashed weights its forward used
    inputs: torch.Tensor
    outputs: torch.Tensor
    loss: torch.Tensor | None = None


@dataclass
class StageTimes:
    """Seconds this stage spent per kind of work since the last ``reset`` (wall clock, and
    the process's CPU time in forward and backward)."""

    forward: float = 0.0
    backward: float = 0.0
    recv: float = 0.0
    update: float = 0.0
    sync: float = 0.0  # a replicated stage's all-reduce of its gradients
    forward_cpu: float = 0.0
    backward_cpu: float = 0.0

    def reset(self) -> None:
        self.forward = self.backward = self.recv = self.update = self.sync = 0.0
        self.forward_cpu = self.backward_cpu = 0.0


@dataclass
class PipeDreamStage:
    """One stage of the pipeline: its module, optimizer and neighbours (global ranks or
    None at the ends). ``input_like`` / ``output_like`` are zero tensors of one micro-batch's
    activation shapes, for receive buffers."""

    module: nn.Module
    optimizer: torch.optim.Optimizer | None
    transport: Transport
    prev: Neighbour
    next: Neighbour
    input_like: torch.Tensor
    output_like: torch.Tensor
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = field(
        default_factory=nn.CrossEntropyLoss
    )
    stash: bool = True
    #: Vertical sync: every stage computes micro-batch ``k`` on the weight version the
    #: first stage used for it (sent along with the activations), kept in ``history``.
    vertical_sync: bool = False
    history: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    #: A replicated stage: averages the replicas' gradients in place before each update.
    average: Callable[[list[torch.Tensor]], None] | None = None
    #: What an update does instead of the optimizer's step (emulated compute waits).
    apply_update: Callable[[], None] | None = None
    version: int = 0
    in_flight: dict[int, InFlight] = field(default_factory=dict)
    #: (micro-batch, version its forward saw, version its update was applied to)
    versions: list[tuple[int, int, int]] = field(default_factory=list)
    #: With a list: per micro-batch its input, received gradient and applied gradients.
    trace: list[dict[str, Any]] | None = None
    losses: list[float] = field(default_factory=list)
    stash_peak_bytes: int = 0
    times: StageTimes = field(default_factory=StageTimes)

    @property
    def first(self) -> bool:
        return self.prev is None

    @property
    def last(self) -> bool:
        return self.next is None

    def run(
        self, actions: Iterator[Action] | list[Action], batch_of: Callable[[int], tuple]
    ) -> None:
        """Run ``actions``; ``batch_of(k)`` gives micro-batch ``k``'s (inputs, targets) on
        the stages that read them (the first and the last)."""
        for action in actions:
            self.do(action, batch_of)

    def do(self, action: Action, batch_of: Callable[[int], tuple]) -> None:
        if action.kind == "F":
            self.forward(action.microbatch, batch_of)
        else:
            self.backward(action.microbatch)

    # ------------------------------------------------------------------ forward

    def _weights(self, version: int | None = None) -> dict[str, torch.Tensor]:
        """The weights a forward computes on: a stashed copy (weight stashing) of the live
        weights or of an older ``version`` (vertical sync), or the live parameters."""
        live: dict[str, torch.Tensor] = dict(self.module.named_parameters())
        source = live
        if version is not None and version != self.version:
            source = self.history[version]  # detached copies: trainable as the live ones
        elif not self.stash:
            return live
        return {
            n: source[n].detach().clone().requires_grad_(p.requires_grad) for n, p in live.items()
        }

    def __post_init__(self) -> None:
        self._remember()  # vertical sync: version 0, which the first micro-batches use

    def _version_for(self, k: int) -> int:
        """Vertical sync: the first stage's version for micro-batch ``k`` (the first stage
        sends its own; the others receive it with the activations). Versions arrive in
        micro-batch order and never decrease, so older weights are dropped then."""
        if self.first:
            return self.version
        like = torch.zeros(1, dtype=torch.int64)
        got = self.transport.recv(like, peer_for(self.prev, k), _tag(k, False, version=True))
        version = int(got.item())
        for old in [v for v in self.history if v < version]:
            del self.history[old]
        return version

    def _remember(self) -> None:
        """Vertical sync: keep this version's weights for micro-batches that will ask for
        it (a stage downstream runs ahead of the first stage's version)."""
        if self.vertical_sync and not self.first:
            self.history[self.version] = {
                n: p.detach().clone() for n, p in self.module.named_parameters()
            }

    def forward(self, k: int, batch_of: Callable[[int], tuple]) -> None:
        x, y = batch_of(k) if (self.first or self.last) else (None, None)
        if self.first:
            inputs = x
        else:
            began = time.perf_counter()
            inputs = self.transport.recv(self.input_like, peer_for(self.prev, k), _tag(k, False))
            self.times.recv += time.perf_counter() - began
            inputs.requires_grad_(True)
        version = self._version_for(k) if self.vertical_sync else self.version
        began, cpu = time.perf_counter(), time.process_time()
        params = self._weights(version if self.vertical_sync else None)
        outputs = functional_call(self.module, params, (inputs,))
        loss = self.loss_fn(outputs, y) if self.last else None
        self.times.forward += time.perf_counter() - began
        self.times.forward_cpu += time.process_time() - cpu
        self.in_flight[k] = InFlight(version, params, inputs, outputs, loss)
        self._note_stash()
        if not self.last:
            peer = peer_for(self.next, k)
            if self.vertical_sync:
                stamp = torch.tensor([version], dtype=torch.int64)
                self.transport.send(stamp, peer, _tag(k, False, version=True))
            self.transport.send(outputs, peer, _tag(k, False))

    def discard_forward(self, k: int) -> None:
        """Receive micro-batch ``k``'s activations (and, with vertical sync, its version)
        and drop them: the end of a stream stopped while they were in transit."""
        if self.vertical_sync:
            stamp = torch.zeros(1, dtype=torch.int64)
            self.transport.recv(stamp, peer_for(self.prev, k), _tag(k, False, version=True))
        self.transport.recv(self.input_like, peer_for(self.prev, k), _tag(k, False))

    def _note_stash(self) -> None:
        """Peak bytes of weight copies held: the stashes of micro-batches in flight (the
        live parameters themselves are not copies) and, with vertical sync, the versions
        kept for later micro-batches."""
        live = {id(p) for p in self.module.parameters()}
        copies = [
            t for f in self.in_flight.values() for t in f.params.values() if id(t) not in live
        ]
        copies += [t for weights in self.history.values() for t in weights.values()]
        held = sum(t.numel() * t.element_size() for t in copies)
        self.stash_peak_bytes = max(self.stash_peak_bytes, held)

    # ------------------------------------------------------------------ backward

    def backward(self, k: int) -> None:
        flight = self.in_flight.pop(k)
        cpu = time.process_time()
        if self.last:
            assert flight.loss is not None
            began = time.perf_counter()
            flight.loss.backward()
            self.losses.append(float(flight.loss.detach()))
            grad = None
        else:
            waited = time.perf_counter()
            grad = self.transport.recv(self.output_like, peer_for(self.next, k), _tag(k, True))
            began, cpu = time.perf_counter(), time.process_time()
            self.times.recv += began - waited
            torch.autograd.backward(flight.outputs, grad)
        self.times.backward += time.perf_counter() - began
        self.times.backward_cpu += time.process_time() - cpu
        if not self.first:
            assert flight.inputs.grad is not None
            self.transport.send(flight.inputs.grad, peer_for(self.prev, k), _tag(k, True))
        self.versions.append((k, flight.version, self.version))
        if self.trace is not None:
            self.trace.append(self._traced(k, flight, grad))
        self._update(flight)

    def _traced(self, k: int, flight: InFlight, grad: torch.Tensor | None) -> dict[str, Any]:
        weights: dict[str, torch.Tensor] = (
            flight.params if self.stash else dict(self.module.named_parameters())
        )
        return {
            "microbatch": k,
            "version": flight.version,
            "inputs": flight.inputs.detach().clone(),
            "grad_out": None if grad is None else grad.clone(),
            "applied": {n: t.grad.clone() for n, t in weights.items() if t.grad is not None},
        }

    def _update(self, flight: InFlight) -> None:
        """One SGD step with this micro-batch's gradient (computed on its stashed weights),
        averaged first over the replicas of a replicated stage."""
        began, synced = time.perf_counter(), 0.0
        if self.optimizer is not None:
            if self.stash:
                for name, p in self.module.named_parameters():
                    p.grad = flight.params[name].grad
            if self.average is not None:
                started = time.perf_counter()
                self.average([p.grad for p in self.module.parameters() if p.grad is not None])
                synced = time.perf_counter() - started
            if self.apply_update is not None:
                self.apply_update()
            else:
                self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.version += 1
        self._remember()
        self.times.sync += synced
        self.times.update += time.perf_counter() - began - synced
