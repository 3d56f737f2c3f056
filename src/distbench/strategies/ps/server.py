"""A parameter-server unit: weights, optimizer state, versions, and the per-worker serve loop.

Start at :class:`ShardServer`. One instance holds one unit's slice of the flat state (all of it
for a central server) with a ``torch.optim.SGD`` built by ``strategies.common.make_optimizer``
over views of that slice, so updates follow exactly the optimizer sequential training uses.
Every remote worker gets its own thread running :func:`serve_worker`; the worker that lives in
the same process (sharded mode) calls the server's methods directly.

Consistency rules:

- *synchronous* (sync-join, sync-split): gradients are deposited per worker; the thread that
  deposits the last one averages them in worker order, steps the optimizer and bumps the
  version. A pull for version ``v`` waits until the version reaches ``v``.
- *asynchronous*: each gradient is applied as it arrives; its staleness is
  ``version at apply - version the gradient was computed on``.
- a pull sends the state under a read lock and an update holds the write lock, so a worker
  never receives half an update; pulls can run concurrently with each other.
- with the semaphore, :class:`Admission` lets one transfer at a time through per direction,
  first come first served, and reports how long each waited.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

import torch
from torch import nn

from distbench.config import RunConfig
from distbench.strategies.common import make_optimizer
from distbench.strategies.ps.sharding import Entry, Region
from distbench.strategies.ps.transport import (
    OP_FINAL,
    OP_PULL,
    OP_PUSH,
    TAG_PULL,
    TAG_PUSH,
    TAG_REPLY,
    TAG_REQUEST,
    PeerLost,
    Pending,
    empty_header,
    header,
    irecv,
    isend,
    send,
    wait_all,
)

MAX_TRANSFERS = 4096  # transfer intervals kept per unit for the result (the rest are counted)


class ServerFailed(RuntimeError):
    """The unit cannot go on (a synchronous peer was lost, or a serve thread crashed)."""


class RWLock:
    """Many readers or one writer; a waiting writer blocks new readers (no starvation)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._writer and not self._writers_waiting)
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            self._cond.wait_for(lambda: not self._writer and not self._readers)
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class Admission:
    """The semaphore of one direction: when enabled, one transfer at a time, in arrival order.

    ``admit()`` yields the seconds the caller queued (0.0 when disabled)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._cond = threading.Condition()
        self._next_ticket = 0
        self._serving = 0

    @contextmanager
    def admit(self) -> Iterator[float]:
        if not self.enabled:
            yield 0.0
            return
        start = time.perf_counter()
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            self._cond.wait_for(lambda: self._serving == ticket)
        try:
            yield time.perf_counter() - start
        finally:
            with self._cond:
                self._serving += 1
                self._cond.notify_all()


@dataclass(frozen=True)
class AppliedUpdate:
    """One optimizer step on a unit, as the central server records it."""

    index: int
    step: int  # the worker step (async) or iteration (sync) the gradient belongs to
    worker: int | None  # None: an averaged synchronous update
    start_wall: float
    seconds: float
    staleness: int | None


@dataclass
class ServerStats:
    """What a unit reports in the result: updates, staleness, queueing, transfer intervals."""

    update_seconds: list[float] = field(default_factory=list)
    staleness: Counter[int] = field(default_factory=Counter)
    queue_seconds: dict[str, float] = field(default_factory=lambda: {"pull": 0.0, "push": 0.0})
    transfers: list[tuple[str, int, float, float, float]] = field(default_factory=list)
    transfers_dropped: int = 0
    lost: dict[int, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def transfer(
        self, direction: str, worker: int, start: float, end: float, queued: float
    ) -> None:
        with self.lock:
            self.queue_seconds[direction] += queued
            if len(self.transfers) < MAX_TRANSFERS:
                self.transfers.append((direction, worker, start, end, queued))
            else:
                self.transfers_dropped += 1

    def summary(self, synchronous: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "updates": len(self.update_seconds),
            "update_mean_s": fmean(self.update_seconds) if self.update_seconds else None,
            "queue_s": dict(self.queue_seconds),
            "transfers": [
                {"direction": d, "worker": w, "start": s, "end": e, "queued": q}
                for d, w, s, e, q in self.transfers
            ],
            "transfers_dropped": self.transfers_dropped,
            "lost_workers": {str(rank): why for rank, why in sorted(self.lost.items())},
        }
        if not synchronous:
            out["staleness"] = staleness_summary(self.staleness)
        return out


def staleness_summary(counts: Counter[int]) -> dict[str, Any]:
    """Histogram (staleness -> number of applied gradients), mean and max."""
    total = sum(counts.values())
    mean = sum(k * v for k, v in counts.items()) / total if total else None
    return {
        "histogram": {str(k): counts[k] for k in sorted(counts)},
        "count": total,
        "mean": mean,
        "max": max(counts) if counts else None,
    }


def _param_views(flat: torch.Tensor, entries: list[Entry], base: int) -> list[torch.Tensor]:
    return [
        flat[e.offset - base : e.offset - base + e.numel].view(e.shape)
        for e in entries
        if e.is_param
    ]


class ShardServer:
    """One unit's weights and optimizer state; thread-safe; transport-agnostic."""

    def __init__(
        self,
        cfg: RunConfig,
        region: Region,
        entries: list[Entry],
        initial: torch.Tensor,
        workers: list[int],
        synchronous: bool,
        on_update: Callable[[AppliedUpdate], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.region = region
        self.workers = workers
        self.synchronous = synchronous
        self.on_update = on_update
        self.state = initial.detach().to("cpu", torch.float32).clone()
        self.params = [
            nn.Parameter(view, requires_grad=False)
            for view in _param_views(self.state, entries, region.start)
        ]
        self.entries = entries
        self.buffer_slices = [(e.offset - region.start, e.numel) for e in entries if not e.is_param]
        self.optimizer = make_optimizer(cfg, self.params)
        self.inbox = {w: torch.zeros(region.size) for w in workers}
        self.mean = torch.zeros(region.size) if synchronous else torch.empty(0)
        self.version = 0
        self.last_update_s = 0.0
        self.own_update_s: dict[int, float] = {}
        self.arrived: set[int] = set()
        self.done: set[int] = set()
        #: The evaluating worker met the target accuracy: every later reply says stop.
        self.target_reached = False
        self.failure: BaseException | None = None
        self.stats = ServerStats()
        self.rw = RWLock()
        self.cond = threading.Condition()
        self.admission = {"pull": Admission(cfg.ps_semaphore), "push": Admission(cfg.ps_semaphore)}

    # -- waiting -------------------------------------------------------------------------
    def _wait_until(self, ready: Callable[[], bool]) -> None:
        with self.cond:
            self.cond.wait_for(lambda: ready() or self.failure is not None)
            if self.failure is not None and not ready():
                raise ServerFailed(f"server unit {self.region.unit}: {self.failure}")

    def wait_version(self, wanted: int) -> None:
        """Block until the weights have reached ``wanted`` (sync: the worker's iteration)."""
        self._wait_until(lambda: self.version >= wanted)

    def finish(self, worker: int, target_reached: bool = False) -> None:
        """``worker`` is done (``target_reached``: because the run met its target accuracy,
        which the unit passes on to the others); block until every worker is done or lost."""
        with self.cond:
            self.done.add(worker)
            self.target_reached = self.target_reached or target_reached
            self.cond.notify_all()
        self._wait_until(lambda: len(self.done | set(self.stats.lost)) == len(self.workers))

    def lose(self, worker: int, reason: str) -> None:
        """A worker vanished. Async: go on without it. Sync: the unit cannot go on."""
        with self.cond:
            self.stats.lost[worker] = reason
            if self.synchronous and self.failure is None:
                self.failure = ServerFailed(
                    f"worker rank {worker} lost in a synchronous run: {reason}"
                )
            self.cond.notify_all()

    def fail(self, exc: BaseException) -> None:
        with self.cond:
            if self.failure is None:
                self.failure = exc
            self.cond.notify_all()

    def reporter(self) -> int:
        """The worker that reports the final weights: the lowest-ranked one not lost."""
        alive = [w for w in self.workers if w not in self.stats.lost]
        return alive[0] if alive else -1

    def reply_update_seconds(self, worker: int) -> float:
        """The update this worker's pull had to wait for: the last one (sync), or the one of
        its own previous gradient (async, applied by the thread serving it)."""
        return self.last_update_s if self.synchronous else self.own_update_s.get(worker, 0.0)

    # -- updates -------------------------------------------------------------------------
    def accept(self, worker: int, message: torch.Tensor, step: int, computed_on: int) -> float:
        """A gradient message has arrived; returns the seconds spent applying an update here."""
        if not self.synchronous:
            return self._apply_async(worker, message, step, computed_on)
        if message.data_ptr() != self.inbox[worker].data_ptr():
            self.inbox[worker].copy_(message)
        return self._deposit(worker, step)

    def _apply_async(
        self, worker: int, message: torch.Tensor, step: int, computed_on: int
    ) -> float:
        with self.rw.write():
            start_wall, start = time.time(), time.perf_counter()
            self._step_optimizer(message)
            seconds = time.perf_counter() - start
            staleness = self.version - computed_on
            with self.cond:
                self.version += 1
                self.own_update_s[worker] = seconds
                self.cond.notify_all()
            self._record(
                AppliedUpdate(self.version - 1, step, worker, start_wall, seconds, staleness)
            )
        return seconds

    def _deposit(self, worker: int, step: int) -> float:
        with self.cond:
            self.arrived.add(worker)
            alive = [w for w in self.workers if w not in self.stats.lost]
            if len(self.arrived) < len(alive):
                return 0.0
            with self.rw.write():
                start_wall, start = time.time(), time.perf_counter()
                self.mean.copy_(self.inbox[alive[0]])
                for other in alive[1:]:
                    self.mean.add_(self.inbox[other])
                self.mean.div_(len(alive))
                self._step_optimizer(self.mean)
                seconds = time.perf_counter() - start
                self.version += 1
            self.arrived.clear()
            self.last_update_s = seconds
            self.cond.notify_all()
        self._record(AppliedUpdate(self.version - 1, step, None, start_wall, seconds, None))
        return seconds

    def _step_optimizer(self, message: torch.Tensor) -> None:
        """Gradients from ``message`` into the optimizer; its buffer values replace ours."""
        for param, grad in zip(
            self.params, _param_views(message, self.entries, self.region.start), strict=True
        ):
            param.grad = grad
        self.optimizer.step()
        for param in self.params:
            param.grad = None
        for offset, numel in self.buffer_slices:
            self.state[offset : offset + numel].copy_(message[offset : offset + numel])

    def _record(self, update: AppliedUpdate) -> None:
        with self.stats.lock:
            self.stats.update_seconds.append(update.seconds)
            if update.staleness is not None:
                self.stats.staleness[update.staleness] += 1
        if self.on_update is not None:
            self.on_update(update)

    # -- the worker in the same process (sharded mode) -------------------------------------
    def copy_state_to(self, target: torch.Tensor, worker: int) -> tuple[int, float, int, bool]:
        """A local pull: (version, update seconds to attribute, reporter, stop)."""
        with self.rw.read():
            target.copy_(self.state)
            return (
                self.version,
                self.reply_update_seconds(worker),
                self.reporter(),
                self.target_reached,
            )

    def summary(self) -> dict[str, Any]:
        return {
            "unit": self.region.unit,
            "elements": self.region.size,
            **self.stats.summary(self.synchronous),
        }


# -- the serve loop for one remote worker ------------------------------------------------------
def serve_worker(server: ShardServer, worker: int) -> None:
    """Answer ``worker``'s requests until it sends FINAL or disappears.

    Receives are posted before the message can arrive (gloo sends wait for the matching
    receive): the next request as soon as one has arrived, and the gradient as soon as a
    pull request has arrived, since a worker's step is always pull then push."""
    request = empty_header()
    # An asynchronous pull sends a snapshot, so that updates never wait for a transfer on
    # the wire (a pull holding the read lock while it sends would stop every update, and
    # through the lock's writer preference every other pull, for a whole transfer).
    snapshot = None if server.synchronous else torch.empty(server.region.size)
    next_request = irecv(request, worker, TAG_REQUEST)
    gradient: Pending | None = None
    try:
        while True:
            next_request.wait()
            op, step, version = int(request[0]), int(request[1]), int(request[2])
            if op == OP_FINAL:
                server.finish(worker, target_reached=bool(request[3]))
                _send_state(server, worker, snapshot)
                return
            next_request = irecv(request, worker, TAG_REQUEST)
            if op == OP_PULL:
                gradient = irecv(server.inbox[worker], worker, TAG_PUSH)
                server.wait_version(version)
                _send_state(server, worker, snapshot)
            elif op == OP_PUSH and gradient is not None:
                _receive_gradient(server, worker, gradient, step, version)
                gradient = None
            else:
                raise RuntimeError(f"unexpected request op {op} from rank {worker}")
    except PeerLost as exc:
        server.lose(worker, str(exc))
    except ServerFailed:
        return  # another thread recorded the cause; the main thread raises it
    except BaseException as exc:  # a bug: stop the unit, the main thread re-raises
        server.fail(exc)


def _send_state(server: ShardServer, worker: int, snapshot: torch.Tensor | None) -> None:
    with server.admission["pull"].admit() as queued:
        if snapshot is None:
            # No update can happen while a synchronous pull is in flight: it needs this
            # worker's next push. Send the weights themselves, without a copy.
            with server.rw.read():
                reply = _pull_reply(server, worker, queued)
                start, end = _send_pull(reply, server.state, worker)
        else:
            with server.rw.read():
                reply = _pull_reply(server, worker, queued)
                snapshot.copy_(server.state)
            start, end = _send_pull(reply, snapshot, worker)
    server.stats.transfer("pull", worker, start, end, queued)


def _pull_reply(server: ShardServer, worker: int, queued: float) -> torch.Tensor:
    return header(
        server.version,
        server.reply_update_seconds(worker),
        queued,
        server.reporter(),
        len(server.stats.lost),
        1 if server.target_reached else 0,
    )


def _send_pull(reply: torch.Tensor, weights: torch.Tensor, worker: int) -> tuple[float, float]:
    """Send a pull's reply and weights; the (start, end) wall times of the transfer."""
    start = time.time()
    wait_all([isend(reply, worker, TAG_REPLY), isend(weights, worker, TAG_PULL)])
    return start, time.time()


def _receive_gradient(
    server: ShardServer, worker: int, gradient: Pending, step: int, computed_on: int
) -> None:
    with server.admission["push"].admit() as queued:
        if server.admission["push"].enabled:
            send(header(server.version, 0.0, queued), worker, TAG_REPLY)  # "go"
        start = time.time()
        gradient.wait()
        end = time.time()
    server.stats.transfer("push", worker, start, end, queued)
    server.accept(worker, server.inbox[worker], step, computed_on)


def start_serving(server: ShardServer, remote_workers: list[int]) -> list[threading.Thread]:
    threads = [
        threading.Thread(
            target=serve_worker,
            args=(server, w),
            daemon=True,
            name=f"ps-unit{server.region.unit}-w{w}",
        )
        for w in remote_workers
    ]
    for thread in threads:
        thread.start()
    return threads
