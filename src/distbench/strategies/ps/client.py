"""The worker side of the parameter server: the model as flat buffers, pull and push.

Start at :class:`Client`. :class:`Replica` rebinds the model's parameters, float buffers and
gradients as views into two flat float32 buffers laid out by unit (see ``sharding.Layout``),
so a pull receives straight into the weights and a push sends the gradients without a copy.
The worker must therefore never call ``zero_grad(set_to_none=True)``; ``Replica.zero_grads``
zeroes the flat gradient buffer instead, and autograd accumulates into the views in place.

Phases charged by :meth:`Client.pull` and :meth:`Client.push` (see ``docs/ps.md``):

- ``wait``: from sending the requests until every unit has answered: waiting for the other
  workers and the update in sync modes, for the worker's own previous update in async mode,
  and for the semaphore queue. The part the units report as update time moves to ``update``.
- ``pull``: receiving the weights once admitted; ``push``: sending the gradients once
  admitted (an update applied in this process for its own shard moves to ``update``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from distbench.measurement.timer import PhaseTimer
from distbench.strategies.ps.server import ShardServer
from distbench.strategies.ps.sharding import Layout, Region
from distbench.strategies.ps.transport import (
    OP_FINAL,
    OP_PULL,
    OP_PUSH,
    TAG_PULL,
    TAG_PUSH,
    TAG_REPLY,
    TAG_REQUEST,
    Pending,
    empty_header,
    header,
    irecv,
    isend,
    wait_all,
)


class Replica:
    """A worker's model whose transferred tensors live in flat buffers (``state``, ``grads``).

    On a GPU the flat buffers are on the device and ``wire_*`` are CPU copies for gloo."""

    def __init__(self, model: nn.Module, layout: Layout, device: torch.device) -> None:
        self.model = model
        self.layout = layout
        self.state = torch.empty(layout.total, device=device)
        self.grads = torch.zeros(layout.total, device=device)
        self.staged = device.type != "cpu"
        self.wire_state = torch.empty(layout.total) if self.staged else self.state
        self.wire_grads = torch.zeros(layout.total) if self.staged else self.grads
        self.buffer_slices = [(e.offset, e.numel) for e in layout.entries if not e.is_param]
        self._bind()

    def _bind(self) -> None:
        params = dict(self.model.named_parameters())
        buffers = dict(self.model.named_buffers())
        for e in self.layout.entries:
            tensor = params[e.name] if e.is_param else buffers[e.name]
            view = self.state[e.offset : e.offset + e.numel].view(e.shape)
            view.copy_(tensor.detach())
            tensor.data = view
            if e.is_param:
                tensor.grad = self.grads[e.offset : e.offset + e.numel].view(e.shape)

    def zero_grads(self) -> None:
        self.grads.zero_()

    def stage_push(self) -> None:
        """Float buffers (e.g. BatchNorm statistics) travel with the gradients."""
        for offset, numel in self.buffer_slices:
            self.grads[offset : offset + numel].copy_(self.state[offset : offset + numel])
        if self.staged:
            self.wire_grads.copy_(self.grads)

    def commit_pull(self, region: Region) -> None:
        if self.staged:
            self.state[region.start : region.stop].copy_(
                self.wire_state[region.start : region.stop], non_blocking=True
            )


@dataclass
class PullResult:
    queue_s: float
    reporter: int
    lost: int
    stop: bool = False  # a unit says the run met its target accuracy


class Client:
    """Pulls weights from and pushes gradients to every unit; tracks each unit's version."""

    def __init__(
        self, rank: int, replica: Replica, local: ShardServer | None, semaphore: bool
    ) -> None:
        self.rank = rank
        self.replica = replica
        self.local = local
        self.semaphore = semaphore
        regions = replica.layout.regions
        self.remote = [r for r in regions if r.unit != rank and r.size > 0]
        self.local_region = next((r for r in regions if r.unit == rank), None)
        self.versions = {r.unit: 0 for r in regions}
        self.updated_own_shard = False  # our last push applied our shard's update inline

    def pull(
        self,
        timer: PhaseTimer,
        step: int,
        wanted: int,
        op: int = OP_PULL,
        target_reached: bool = False,
    ) -> PullResult:
        """Get the weights of version >= ``wanted`` (``op=OP_FINAL``: the final weights;
        ``target_reached``: this worker stopped because the target accuracy was met)."""
        wire = self.replica.wire_state
        reached = 1 if target_reached else 0
        requests = [
            isend(header(op, step, wanted, reached), r.unit, TAG_REQUEST) for r in self.remote
        ]
        replies = {r.unit: empty_header() for r in self.remote}
        answered = [irecv(replies[r.unit], r.unit, TAG_REPLY) for r in self.remote]
        data = [irecv(wire[r.start : r.stop], r.unit, TAG_PULL) for r in self.remote]
        if self.local is not None:
            if op == OP_FINAL:
                self.local.finish(self.rank, target_reached)
            else:
                self.local.wait_version(wanted)
        wait_all(answered)
        timer.mark("wait")
        fields = {
            u: (int(h[0]), float(h[1]), float(h[2]), int(h[3]), int(h[4]), bool(h[5]))
            for u, h in replies.items()
        }
        if self.local is not None and self.local_region is not None:
            region = self.local_region
            version, update_s, reporter, stop = self.local.copy_state_to(
                self.replica.state[region.start : region.stop], self.rank
            )
            if self.updated_own_shard:  # already charged to update in our push
                update_s = 0.0
            lost = len(self.local.stats.lost)
            fields[self.rank] = (version, update_s, 0.0, reporter, lost, stop)
        wait_all(data + requests)
        for region in self.remote:
            self.replica.commit_pull(region)
        timer.mark("pull")
        # Units answer concurrently: the worker was held up by the longest admission queue
        # and the longest update, not their sums. The update may have begun before the
        # request was sent, so at most the wait beyond the queue is the update's.
        queue = max((f[2] for f in fields.values()), default=0.0)
        update = max((f[1] for f in fields.values()), default=0.0)
        timer.move("wait", "update", min(update, timer.elapsed("wait") - queue))
        for unit, f in fields.items():
            self.versions[unit] = f[0]
        return PullResult(
            queue_s=queue,
            reporter=min((f[3] for f in fields.values()), default=self.rank),
            lost=max((f[4] for f in fields.values()), default=0),
            stop=any(f[5] for f in fields.values()),
        )

    def push(self, timer: PhaseTimer, step: int) -> float:
        """Send this step's gradients to every unit; returns the seconds queued for admission
        (the longest queue of any unit: the units queue at the same time)."""
        self.replica.stage_push()
        wire = self.replica.wire_grads
        requests = [
            isend(header(OP_PUSH, step, self.versions[r.unit]), r.unit, TAG_REQUEST)
            for r in self.remote
        ]
        sends: list[Pending] = []
        queued = 0.0
        if self.semaphore:
            gos = {r.unit: empty_header() for r in self.remote}
            answered = [irecv(gos[r.unit], r.unit, TAG_REPLY) for r in self.remote]
            for region, go in zip(self.remote, answered, strict=True):
                go.wait()
                timer.mark("wait")
                # concurrent queues at several units: the longest is what held us up
                queued = max(queued, float(gos[region.unit][2]))
                sends.append(isend(wire[region.start : region.stop], region.unit, TAG_PUSH))
        else:
            sends = [isend(wire[r.start : r.stop], r.unit, TAG_PUSH) for r in self.remote]
        local_update = 0.0
        if self.local is not None and self.local_region is not None:
            region = self.local_region
            local_update = self.local.accept(
                self.rank, wire[region.start : region.stop], step, self.versions[self.rank]
            )
        wait_all(sends + requests)
        timer.mark("push")
        timer.move("push", "update", local_update)
        self.updated_own_shard = local_update > 0.0
        return queued

    def final(self, target_reached: bool = False) -> PullResult:
        """Tell every unit this worker is done and receive the final weights."""
        return self.pull(PhaseTimer(), -1, -1, op=OP_FINAL, target_reached=target_reached)

    def version(self) -> int:
        """The updates the pulled weights contain (units step together: the newest)."""
        return max(self.versions.values(), default=0)
