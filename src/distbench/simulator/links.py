"""Links that share their bandwidth among the transfers crossing them at once.

A ``FairLink`` is a processor-sharing server on a SimPy environment: while ``k`` transfers
are in flight each moves ``min(cap, rate / k)`` bytes per second, so a transfer's time
stretches as others join and shrinks as they leave (the fluid model of TCP flows sharing
a bottleneck fairly; docs/simulator.md). A shaped link has a token bucket (``burst``):
a transfer that finds the link idle passes what the bucket refilled while it was idle
(at the link's rate, at most ``burst``) at once, as ``tc``'s FIFO shaper (tbf) lets it.
Behind fair queues (``joiners_burst``) a lone transfer cannot use the bucket — each
peer's class may send at most the link's rate — but transfers in flight together may,
for a while, pass more than the rate between them from the parent class's bucket: the
bucket refilled while the link idled passes, at once, to transfers that join a busy
link, until it is spent (``benchmarks/idle_burst.py``, ``test_multihost``'s fair-queue
burst test). Every
transfer in this model crosses exactly one shared link, so all its transfers move at one
common speed, and the link keeps one number, ``served``: the bytes every transfer in
flight has received since the link was created. A transfer of ``b`` bytes that joins at
``served = s`` ends when ``served`` reaches ``s + b`` (less what the bucket passed at
once); the link keeps those end marks in a heap, so a join or an end costs
O(log k) however many transfers share it (thousands of workers on one server link).
A transfer may carry a weight: it then moves ``weight`` times the common speed, and the
link keeps ``served`` per unit of weight (generalized processor sharing; the far end's
``cap`` bounds the common speed). Weights other than 1 are a what-if of the simulator
(``Links.unfairness``): nothing measures how unequally real flows share a link.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import simpy

#: Two end marks closer than this share of their size end together (float rounding).
_RELATIVE_EPSILON = 1e-12


@dataclass
class LinkUse:
    """What a link did: bytes moved and seconds it had a transfer in flight."""

    bytes: float = 0.0
    busy_s: float = 0.0
    transfers: int = 0
    most_at_once: int = 0


@dataclass
class FairLink:
    """One direction of a link: ``rate`` bytes/s shared fairly, ``cap`` bytes/s at most per
    transfer (the far end's own link; ``None``: no limit but the share)."""

    env: simpy.Environment
    rate: float
    cap: float | None = None
    name: str = ""
    burst: float = 0.0
    joiners_burst: bool = False
    use: LinkUse = field(default_factory=LinkUse)
    _tokens: float = 0.0  # the bucket when the link last went busy (fair queues), or 0
    _served: float = 0.0
    _updated: float = 0.0
    _idle_since: float = -math.inf
    _ends: list[tuple[float, int, simpy.Event, float]] = field(default_factory=list)
    _weights: float = 0.0  # the transfers' weights in flight, summed
    _sequence: int = 0
    _generation: int = 0
    _joined: bool = False  # a transfer joined since the timer was armed: it fires early

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"link {self.name!r}: rate must be positive, got {self.rate}")
        self._updated = self.env.now

    @property
    def in_flight(self) -> int:
        return len(self._ends)

    def share(self) -> float:
        """Bytes per second a transfer of weight 1 in flight moves now."""
        each = self.rate / self._weights if self._ends else self.rate
        return each if self.cap is None else min(each, self.cap)

    def transfer(self, nbytes: float, weight: float = 1.0) -> simpy.Event:
        """An event that fires when ``nbytes`` have crossed the link; ``weight``: the
        transfer's part of the rate against the others' (1: an equal share)."""
        done = self.env.event()
        if nbytes <= 0:
            done.succeed()
            return done
        self._advance()
        free = self._joining_credit(nbytes) if self.joiners_burst else self._idle_credit()
        head = self._ends[0] if self._ends else None
        mark = self._served + max(0.0, nbytes - free) / weight
        heapq.heappush(self._ends, (mark, self._sequence, done, weight))
        self._weights += weight
        self._sequence += 1
        self.use.bytes += nbytes
        self.use.transfers += 1
        self.use.most_at_once = max(self.use.most_at_once, len(self._ends))
        if head is not None and self._ends[0] is head:
            # the same transfer ends first, only later now (the share fell): the timer
            # armed for it fires early and re-arms, one event for any number of joins
            self._joined = True
        else:
            self._reschedule()
        return done

    def _bucket(self) -> float:
        """Bytes the shaper's bucket holds once the link has idled since ``_idle_since``:
        what it kept, refilled at the link's rate, at most ``burst``."""
        if self.burst <= 0:
            return 0.0
        return min(self.burst, self._tokens + self.rate * (self.env.now - self._idle_since))

    def _idle_credit(self) -> float:
        """FIFO: a transfer that finds the link idle passes the bucket at once."""
        return self._bucket() if not self._ends else 0.0

    def _joining_credit(self, nbytes: float) -> float:
        """Fair queues: a transfer that finds the link idle passes nothing at once, and the
        bucket stays as it is while the link runs at its rate; one that joins a busy
        link passes what is left of it, up to its own bytes."""
        if not self._ends:
            self._tokens = self._bucket()
            return 0.0
        free = min(self._tokens, nbytes)
        self._tokens -= free
        return free

    def _advance(self) -> None:
        now = self.env.now
        elapsed = now - self._updated
        if self._ends and elapsed > 0:
            self._served += elapsed * self.share()
            self.use.busy_s += elapsed
        self._updated = now

    def _reschedule(self) -> None:
        ends, served = self._ends, self._served
        while ends and ends[0][0] - served <= _RELATIVE_EPSILON * max(1.0, ends[0][0]):
            _, _, done, weight = heapq.heappop(ends)
            self._weights -= weight
            done.succeed()
        if not ends:
            self._weights = 0.0  # no rounding carried into the next busy period
            self._idle_since = self.env.now
            return
        self._generation += 1
        self._joined = False
        timeout = self.env.timeout((ends[0][0] - served) / self.share(), self._generation)
        timeout.callbacks.append(self._on_end)

    def _on_end(self, timeout: simpy.Event) -> None:
        if timeout.value != self._generation:  # a new head since rescheduled it
            return
        self._advance()
        if not self._joined:
            # the head transfer's end was this very moment: end it even where rounding
            # left ``served`` a hair short (a tiny remainder would re-arm at this instant)
            self._served = max(self._served, self._ends[0][0])
        self._reschedule()
