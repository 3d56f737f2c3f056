"""The wire protocol between PS workers and server units, over ``torch.distributed`` p2p.

Start at the message table below. Every message is a gloo ``send``/``recv`` on the default
process group; the four tags keep the streams apart, so a rank that is worker and server at
once (sharded mode) can talk to the same peer in both roles from different threads.

=============  ======  ==================================================================
message        tag     content
=============  ======  ==================================================================
request        REQUEST header ``[op, step, version, reached]`` worker -> unit
reply          REPLY   header ``[version, update_s, queue_s, reporter, lost, stop]``
                       unit -> worker
state          PULL    the unit's flat slice of weights + float buffers, unit -> worker
gradient       PUSH    the unit's flat slice of gradients + float buffers, worker -> unit
=============  ======  ==================================================================

Ops: ``PULL`` (``version`` = the version the worker needs: the iteration in sync modes, 0 in
async), ``PUSH`` (``version`` = the version the gradient was computed on), ``FINAL`` (the
worker is done; the reply and state come once every worker is done or lost). With the
semaphore a push request is answered with a reply ("go") before the gradient is sent;
without it the gradient follows the request at once. Headers are tiny and never queued.

Training to a target accuracy, asynchronously: the evaluating worker's FINAL carries
``reached = 1`` when it stopped because the target was met; from then on every reply of
that unit carries ``stop = 1``, and a worker that reads it ends after its current step.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

TAG_REQUEST = 11
TAG_REPLY = 12
TAG_PULL = 13
TAG_PUSH = 14

OP_PULL = 1
OP_PUSH = 2
OP_FINAL = 3

HEADER_SIZE = 6


class PeerLost(RuntimeError):
    """A transfer with ``peer`` failed: the peer process died or closed its connection."""

    def __init__(self, peer: int, cause: BaseException) -> None:
        # gloo appends advice ("This is typically caused by ...") that says nothing here
        detail = str(cause).split(" This is typically", 1)[0]
        super().__init__(f"lost contact with rank {peer}: {detail}")
        self.peer = peer


def header(*values: float) -> torch.Tensor:
    """A header tensor (float64: integers up to 2**53 stay exact), zero-padded."""
    out = torch.zeros(HEADER_SIZE, dtype=torch.float64)
    out[: len(values)] = torch.tensor(values, dtype=torch.float64)
    return out


def empty_header() -> torch.Tensor:
    return torch.zeros(HEADER_SIZE, dtype=torch.float64)


class Pending:
    """An in-flight isend/irecv with the peer it talks to, so a failure names the peer."""

    def __init__(self, work: dist.Work | None, peer: int) -> None:
        self.work = work
        self.peer = peer

    def wait(self) -> None:
        if self.work is None:
            return
        try:
            self.work.wait()
        except RuntimeError as exc:
            raise PeerLost(self.peer, exc) from exc


def isend(tensor: torch.Tensor, peer: int, tag: int) -> Pending:
    try:
        return Pending(dist.isend(tensor, dst=peer, tag=tag), peer)
    except RuntimeError as exc:
        raise PeerLost(peer, exc) from exc


def irecv(tensor: torch.Tensor, peer: int, tag: int) -> Pending:
    try:
        return Pending(dist.irecv(tensor, src=peer, tag=tag), peer)
    except RuntimeError as exc:
        raise PeerLost(peer, exc) from exc


def send(tensor: torch.Tensor, peer: int, tag: int) -> None:
    isend(tensor, peer, tag).wait()


def recv(tensor: torch.Tensor, peer: int, tag: int) -> None:
    irecv(tensor, peer, tag).wait()


def wait_all(pending: list[Pending]) -> None:
    for item in pending:
        item.wait()
