"""The discrete-event model of every strategy, on SimPy.

Where to start: :func:`simulate` runs one ``SimSpec`` and returns a ``SimResult``; each
strategy is a function in ``MODELS`` that starts its SimPy processes on a ``Cluster``
(the environment, the links, the random draws and every worker's ``Ledger``).

What is modelled (docs/simulator.md says what each model leaves out):

- **compute**: every worker's step drawn from the profile's measured one-worker steps (so
  a synchronous step waits for the slowest of N draws), or fixed;
- **links**: transfers share a link fairly while they overlap (``links.FairLink``), a
  shaped link's bucket passing at once to a transfer that finds it idle, with a one-way
  latency and the protocol's fixed cost per transfer;
- **parameter servers**: a central server's outgoing link carries every pull, its incoming
  link every push, each transfer also capped by the worker's own link; its updates are
  serialized (the write lock). A sharded server's traffic is on the hosts' own links: a
  pull is a message from each other unit, on that unit's uplink and the worker's
  downlink, waiting its turn on the pair's one connection (``Connection``); a push the
  other way round (beyond ``EXACT_SHARD_FLOWS`` workers a mean field of two flows: the
  worker's link and the largest unit's reply). Asynchronous and without a semaphore,
  each message is sent as gloo sends it (``ShardedWires``): a request only once the
  unit has said it is ready, and a send done for its sender once the kernel's send
  buffer holds the rest. Synchronous and without a semaphore every flow is alone on its
  link, so one process computes it exactly;
- **ring all-reduce** (DDP): buckets reduced in order as backward produces them, each
  ``2(N-1)`` messages of ``bytes/N`` through every link at once. The ring is symmetric, so
  one process stands for all ranks: exact, and independent of N in cost;
- **pipelines**: GPipe and 1F1B schedules op by op, activations and their gradients sent
  over the stages' links; model parallelism is one microbatch. Stage times are fixed and
  every step ends in a flush, so one simulated step stands for all (exact).
"""

from __future__ import annotations

import functools
import itertools
import random
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from statistics import fmean
from typing import Any, cast

import simpy

from distbench.errors import UserError
from distbench.simulator.links import FairLink
from distbench.simulator.spec import SimSpec

#: The parts of a step the simulator reports, as ``SimResult.split`` names them.
SPLIT = ("compute", "comm", "wait", "server")

Process = Generator[simpy.Event, Any, None]

#: One flow of a transfer: the link it crosses and its bytes.
Flow = tuple[FairLink, float]
#: One message of a transfer: the ordered pair of hosts whose one connection carries it
#: (``None``: no other message can be on its connection at once), and its flows.
Message = tuple[tuple[int, int] | None, list[Flow]]


@dataclass
class Connection:
    """One ordered pair of hosts' connection: one byte stream, so a message sent while
    another is on it waits for that one's last byte (gloo keeps one connection per pair
    of ranks and writes their messages in order; ``benchmarks/pair_order.py``)."""

    busy: bool = False
    waiting: deque[Callable[[], None]] = field(default_factory=deque)
    queued: float = 0.0  # bytes posted on it and not yet delivered

    def release(self) -> None:
        """The message on it is delivered: start the next one waiting, if any."""
        if self.waiting:
            self.waiting.popleft()()
        else:
            self.busy = False


@dataclass
class Ledger:
    """One worker's step starts and, over measured steps, the seconds of each part."""

    warmup: int
    starts: list[float] = field(default_factory=list)
    parts: dict[str, float] = field(default_factory=lambda: dict.fromkeys(SPLIT, 0.0))
    samples: int = 0

    def begin(self, now: float) -> None:
        self.starts.append(now)

    @property
    def measuring(self) -> bool:
        return len(self.starts) > self.warmup

    def add(self, part: str, seconds: float) -> None:
        if self.measuring:
            self.parts[part] += seconds

    def measured_steps(self) -> list[float]:
        """Seconds of every measured step (start to the next step's start)."""
        marks = self.starts[self.warmup :]
        return [b - a for a, b in itertools.pairwise(marks)]


@dataclass
class Cluster:
    """The simulated machines of one run."""

    spec: SimSpec
    env: simpy.Environment
    rng: random.Random
    ledgers: list[Ledger]
    links: dict[str, FairLink] = field(default_factory=dict)
    connections: dict[tuple[int, int], Connection] = field(default_factory=dict)
    note: str = ""
    _deferred: list[Callable[[], None]] = field(default_factory=list)

    @property
    def total_steps(self) -> int:
        return self.spec.total_steps

    def draw_grad(self) -> float:
        """One worker's forward + backward for one step."""
        compute = self.spec.compute
        return self.rng.choice(compute.samples) if compute.samples else compute.grad

    def link(self, name: str, rate: float, cap: float | None = None) -> FairLink:
        if name not in self.links:
            links = self.spec.links
            self.links[name] = FairLink(
                self.env, rate, cap, name, links.burst, joiners_burst=links.fair_queues
            )
        return self.links[name]

    def timed(self, ledger: Ledger, part: str, event: simpy.Event) -> Process:
        start = self.env.now
        yield event
        ledger.add(part, self.env.now - start)

    @property
    def fixed_cost(self) -> float:
        """A transfer's latency and the protocol's fixed cost (no link is busy for it)."""
        return self.spec.links.latency + self.spec.links.transfer_overhead

    def send(self, ledger: Ledger, flows: list[Flow], fixed: bool = True) -> Process:
        """One transfer: latency and the protocol's fixed cost (unless the caller waited
        them out already: ``fixed=False``), then its flows (all at once, done when the
        last is)."""
        yield from self.send_messages(ledger, [(None, flows)], fixed)

    def send_messages(self, ledger: Ledger, messages: list[Message], fixed: bool = True) -> Process:
        """``send`` for a transfer of several messages, each on its own connection: the
        messages start together, a message whose connection is busy waits its
        turn, and the transfer is done when its last message is."""
        start = self.env.now
        if fixed and self.fixed_cost > 0:
            yield self.env.timeout(self.fixed_cost)
        events = [self._message(pair, flows) for pair, flows in messages]
        if len(events) == 1:
            yield events[0]
        elif events:
            yield self.all_done(events)
        ledger.add("comm", self.env.now - start)

    def _start(self, flows: list[Flow]) -> list[simpy.Event]:
        """Start ``flows`` on their links: the events of their ends (none for no bytes)."""
        return [link.transfer(nbytes, self.weight()) for link, nbytes in flows if nbytes > 0]

    def _flows(self, flows: list[Flow]) -> simpy.Event:
        events = self._start(flows)
        if len(events) == 1:
            return events[0]
        if not events:
            return self.env.event().succeed()
        return self.all_done(events)

    def _after_flows(self, flows: list[Flow], call: Callable[[simpy.Event], None]) -> None:
        """Start ``flows`` and run ``call`` when the last one ends, with no event of its
        own (two flows a message, thousands of messages a step)."""
        events = self._start(flows)
        if len(events) == 1:
            self.callback(events[0], call)
            return
        left = [len(events)]

        def one(event: simpy.Event) -> None:
            left[0] -= 1
            if left[0] == 0:
                call(event)

        for event in events:
            self.callback(event, one)

    def _message(self, pair: tuple[int, int] | None, flows: list[Flow]) -> simpy.Event:
        if pair is None:
            return self._flows(flows)
        done = self.env.event()
        self.post(pair, flows, delivered=lambda: self.fire(done))
        return done

    def post(
        self,
        pair: tuple[int, int],
        flows: list[Flow],
        buffer: float = 0.0,
        handed: Callable[[], None] | None = None,
        delivered: Callable[[], None] | None = None,
    ) -> None:
        """One message on ``pair``'s connection, in its turn. ``handed`` is called when the
        sender's send completes: the kernel's send buffer (``buffer`` bytes) holds the
        rest of it, and of the messages ahead of it; ``delivered`` with its last byte. A
        message of no bytes (a request, a notice) is delivered as it reaches the head of
        the connection, with no event of its own: thousands of them a step."""
        connection = self.connections.get(pair)
        if connection is None:
            connection = self.connections[pair] = Connection()
        size = max((nbytes for _, nbytes in flows), default=0.0)
        if handed is not None and connection.queued + size <= buffer:
            handed()
            handed = None  # done: ``tail`` reads the name when it runs, and skips it
        connection.queued += size

        def scaled(part: float) -> list[Flow]:
            return [(link, nbytes * part / size) for link, nbytes in flows]

        def finish(_: simpy.Event | None = None) -> None:
            connection.queued -= size
            if delivered is not None:
                delivered()
            connection.release()

        held = min(size, buffer)  # what the kernel takes at once, once it is this one's turn

        def tail(_: simpy.Event | None = None) -> None:
            if handed is not None:
                handed()
            if held > 0:
                self._after_flows(scaled(held), finish)
            elif size > 0:
                finish()  # its flows' own event has just ordered it
            else:
                self.defer(finish)

        def start() -> None:
            if size > held:
                self._after_flows(scaled(size - held), tail)
            else:
                tail()

        if connection.busy:
            connection.waiting.append(start)
        else:
            connection.busy = True
            start()

    @staticmethod
    def callback(event: simpy.Event, call: Callable[[simpy.Event], None]) -> None:
        """Run ``call`` when ``event`` is processed (at once if it already was)."""
        if event.callbacks is None:
            call(event)
        else:
            event.callbacks.append(call)

    def defer(self, call: Callable[[], None]) -> None:
        """Call ``call`` at this moment, after what is already due now: a message of no
        bytes takes no time, but what was sent at the same moment goes before it. The
        calls of one moment share one event."""
        self._deferred.append(call)
        if len(self._deferred) == 1:
            self.env.timeout(0).callbacks.append(self._run_deferred)

    def _run_deferred(self, _: simpy.Event) -> None:
        calls, self._deferred = self._deferred, []
        for call in calls:
            call()

    @staticmethod
    def fire(event: simpy.Event) -> None:
        """Succeed ``event`` (a callback that returns nothing)."""
        event.succeed()

    def weight(self) -> float:
        """A transfer's part of a shared link's rate against the others' (``unfairness``);
        no draw at all for equal shares, so they leave the compute draws as they were."""
        u = self.spec.links.unfairness
        return self.rng.uniform(1.0 - u, 1.0 + u) if u > 0 else 1.0

    def all_done(self, events: list[simpy.Event]) -> simpy.Event:
        """An event for the last of ``events`` (lighter than SimPy's ``all_of``, which
        keeps every value: thousands of transfers a step)."""
        done, one = self.countdown(len(events))
        for event in events:
            self.callback(event, lambda _: one())
        return done

    def countdown(self, count: int) -> tuple[simpy.Event, Callable[[], None]]:
        """An event, and the call that fires it when made the ``count``-th time (at once
        for none)."""
        done = self.env.event()
        left = [count]

        def one() -> None:
            left[0] -= 1
            if left[0] == 0:
                done.succeed()

        if count == 0:
            done.succeed()
        return done, one


@dataclass(frozen=True)
class SimResult:
    """What a simulated configuration did over its measured steps.

    ``step_time``: seconds per step (a synchronous iteration; for asynchronous workers the
    mean step their throughput implies, every worker's batch over the samples per second
    of all); ``throughput``: samples per second of all workers; ``split``: seconds of a
    step (mean over workers) computing, in transfers not hidden by compute, waiting for
    other workers, and waiting for the server's update; ``links``: each link's busy share
    of the measured time and the most transfers it carried at once."""

    strategy: str
    workers: int
    step_time: float
    throughput: float
    split: dict[str, float]
    links: dict[str, dict[str, float]]
    note: str


# --- parameter servers -----------------------------------------------------------------


class _Iteration:
    """A synchronous iteration's two moments: every push in, the server's update done."""

    def __init__(self, env: simpy.Environment, workers: int) -> None:
        self.pushed = env.event()
        self.released = env.event()
        self.waiting = workers

    def arrive(self) -> bool:
        """Count one push; true for the last."""
        self.waiting -= 1
        if self.waiting == 0:
            self.pushed.succeed()
            return True
        return False


#: Up to this many workers every unit of a sharded server sends its own message for every
#: transfer (N - 1 a pull); beyond it, two flows (the mean field of ``_server_messages``).
EXACT_SHARD_FLOWS = 32


def _server_messages(
    cluster: Cluster,
) -> tuple[Callable[[int], list[Message]], Callable[[int], list[Message]]]:
    """(pull messages of worker w, push messages of worker w) for the spec's server
    layout."""
    spec = cluster.spec
    links = spec.links
    if spec.servers == "central":
        out = cluster.link("server out", links.server_out, cap=links.down)
        into = cluster.link("server in", links.server_in, cap=links.up)
        w = spec.weight_bytes
        return (lambda _: [(None, [(out, w)])]), (lambda _: [(None, [(into, w)])])
    shards, n, total = spec.shards(), spec.workers, spec.weight_bytes

    def up(i: int) -> FairLink:
        return cluster.link(f"host {i} up", links.up)

    def down(i: int) -> FairLink:
        return cluster.link(f"host {i} down", links.down)

    if n > EXACT_SHARD_FLOWS:
        # A mean field of two flows a transfer: the worker's own link and the reply of the
        # unit with the largest shard, which every pull waits for and whose link carries
        # every pull's reply, as the real busiest link does (the lighter units' links,
        # which end sooner, and the order on each connection are left out).
        largest = max(range(n), key=lambda j: shards[j])

        def others(i: int) -> list[int]:
            return [] if i == largest else [largest]

        def pull_field(i: int) -> list[Message]:
            flows = [(down(i), total - shards[i]), *((up(j), shards[j]) for j in others(i))]
            return [(None, flows)]

        def push_field(i: int) -> list[Message]:
            flows = [(up(i), total - shards[i]), *((down(j), shards[j]) for j in others(i))]
            return [(None, flows)]

        return pull_field, push_field

    # Every other unit's reply is its own message, on the unit's uplink and the worker's
    # downlink, so a worker waits for the slowest unit, as the real server's worker does;
    # a push the other way round. A unit and its worker are one process, so unit j's
    # reply to worker i and worker j's push to unit i share one connection, in order.
    def pull(i: int) -> list[Message]:
        return [((j, i), [(up(j), shards[j]), (down(i), shards[j])]) for j in range(n) if j != i]

    def push(i: int) -> list[Message]:
        return [((i, j), [(up(i), shards[j]), (down(j), shards[j])]) for j in range(n) if j != i]

    return pull, push


@dataclass
class Admission:
    """How a worker's pull and push get through the server's semaphore.

    Without one, at once. A central server admits one pull and one push at a time, in
    arrival order (beyond ``EXACT_SHARD_FLOWS`` workers a sharded server is taken as one
    such gate too, letting the next in when a transfer is through). Up to it, each unit
    of a sharded server admits on its own: a pull asks every unit at once, and each unit
    sends its shard once it has admitted the worker, letting the next in when its send
    returns — once the kernel's send buffer holds the rest (``send_buffer``), as the real
    unit's semaphore does; a push asks every unit at once for its turn (a ticket each)
    but waits for the units' answers one by one in their order, sending each shard as
    its unit answers — so a unit that answered early waits, held until its shard has
    arrived, for a shard that is queued behind another unit's turn.

    Pulls that reach a unit at the same moment (a synchronous unit releases every waiting
    worker at once after its update) race for its semaphore: each unit is its own process
    whose serve threads wake together, so the order is drawn anew at every unit, and a
    worker first at one unit may be last at the next (measured: the units' pull orders
    agree with a Kendall tau near 0.2–0.5, their push orders near 1;
    ``benchmarks/admission_orders.py``).

    An asynchronous central server applies each gradient under its write lock
    (``update_lock``), and a pull waits for the update in progress: it copies the
    weights under the read lock. The go of a push whose turn has come behind the
    semaphore is sent by a serve thread while the update runs, and waits for part of
    it (``benchmarks/server_transfers.py --handoffs``: squeezenet's next go starts about
    when its 1 ms update ends, a larger model's 0.9-1.7 ms into its 3-5 ms update); no
    two-process measurement gives that part, so the simulator leaves the wait out."""

    cluster: Cluster
    pull_gate: simpy.Resource | None = None
    push_gate: simpy.Resource | None = None
    pull_units: list[simpy.Resource] = field(default_factory=list)
    push_units: list[simpy.Resource] = field(default_factory=list)
    update_lock: simpy.Resource | None = None
    _racing: dict[int, list[Callable[[], None]]] = field(default_factory=dict)

    @classmethod
    def of(cls, cluster: Cluster, update_lock: simpy.Resource | None = None) -> Admission:
        spec, env = cluster.spec, cluster.env
        if not spec.semaphore:
            return cls(cluster, update_lock=update_lock)
        if spec.servers == "sharded" and spec.workers <= EXACT_SHARD_FLOWS:
            units = range(spec.workers)
            return cls(
                cluster,
                pull_units=[simpy.Resource(env, 1) for _ in units],
                push_units=[simpy.Resource(env, 1) for _ in units],
            )
        return cls(cluster, simpy.Resource(env, 1), simpy.Resource(env, 1), update_lock=update_lock)

    def pull(
        self, ledger: Ledger, messages: list[Message], ready: list[simpy.Event] | None = None
    ) -> Process:
        """``ready``: for each unit, the event after which it may send (its update); only
        with each unit admitting on its own."""
        if self.pull_units:
            yield from self._units_pull(ledger, _with_bytes(messages), ready)
        elif self.pull_gate is not None and self.cluster.spec.servers == "central":
            yield from self._central_pull(ledger, self.pull_gate, messages)
        else:
            # only a central server without the semaphore has an update lock here
            yield from self._update_applied(ledger)
            yield from self._gated(ledger, self.pull_gate, messages)

    def push(
        self,
        ledger: Ledger,
        messages: list[Message],
        delivered: Callable[[int], None] | None = None,
        posted: Callable[[], None] | None = None,
    ) -> Process:
        """``delivered(unit)`` is called as each unit has its shard, ``posted()`` once every
        shard is on its way; only with each unit admitting on its own."""
        if self.push_units:
            yield from self._units_push(ledger, _with_bytes(messages), delivered, posted)
        else:
            # the go of a queued push waits for part of an update in progress at most
            # (see the class): left out, as a pull's wait for the read lock is not
            yield from self._gated(ledger, self.push_gate, messages)

    def _gated(
        self, ledger: Ledger, gate: simpy.Resource | None, messages: list[Message]
    ) -> Process:
        cluster = self.cluster
        if gate is None:
            yield from cluster.send_messages(ledger, messages)
            return
        with gate.request() as admitted:
            yield from cluster.timed(ledger, "wait", admitted)
            yield from cluster.send_messages(ledger, messages)

    def _update_applied(self, ledger: Ledger) -> Process:
        """Until the update in progress, and any queued for the lock before this moment,
        has been applied (nothing without ``update_lock``)."""
        if self.update_lock is None:
            return
        with self.update_lock.request() as turn:
            yield from self.cluster.timed(ledger, "wait", turn)

    def _central_pull(
        self, ledger: Ledger, gate: simpy.Resource, messages: list[Message]
    ) -> Process:
        """The central server's pull behind its semaphore: the next worker is let in when
        the send returns, once the kernel's send buffer holds the rest of the weights
        (``kernel_holds``), as a unit's semaphore does. Only where the two-host probe
        measured what a send holds: the kernel's grant alone (8 MB here) is far more
        than it holds of a message of many megabytes (about 2 MB at 1 Gbit/s), so
        without the measurement the next pull waits for the weights' arrival. Where the
        probe also measured a message of the weights' size, that is what it holds."""
        cluster, env = self.cluster, self.cluster.env
        links = cluster.spec.links
        ((_, flows),) = messages
        size = max(nbytes for _, nbytes in flows)
        measured = links.send_held_weights or links.send_held
        holds = kernel_holds(cluster.spec, cluster.spec.weight_bytes, measured) if measured else 0.0
        held = min(size, holds)
        ticket = gate.request()
        yield from cluster.timed(ledger, "wait", ticket)
        yield from self._update_applied(ledger)
        start = env.now
        if cluster.fixed_cost > 0:
            yield env.timeout(cluster.fixed_cost)
        if size > held:
            yield cluster._flows([(link, nbytes * (size - held) / size) for link, nbytes in flows])
        gate.release(ticket)
        if held > 0:
            yield cluster._flows([(link, nbytes * held / size) for link, nbytes in flows])
        ledger.add("comm", env.now - start)

    def _units_pull(
        self, ledger: Ledger, messages: list[Message], ready: list[simpy.Event] | None
    ) -> Process:
        """Unit ``pair[0]`` of each message admits it on its own (once ``ready[unit]``)."""
        cluster, env = self.cluster, self.cluster.env
        start = env.now
        if cluster.fixed_cost > 0:
            yield env.timeout(cluster.fixed_cost)
        done, one = cluster.countdown(len(messages))
        last_admitted = [env.now]
        for pair, flows in messages:
            unit = _unit(pair, 0)

            def ask(
                gate: simpy.Resource = self.pull_units[unit],
                pair: tuple[int, int] | None = pair,
                flows: list[Flow] = flows,
            ) -> None:
                ticket = gate.request()

                def admitted(_: simpy.Event) -> None:
                    last_admitted[0] = max(last_admitted[0], env.now)

                    def handed() -> None:  # the unit's send has returned: the next may go
                        gate.release(ticket)

                    buffer = send_buffer(cluster.spec, *_pair(pair))
                    cluster.post(_pair(pair), flows, buffer, handed=handed, delivered=one)

                cluster.callback(ticket, admitted)

            if ready is None:
                self._race(unit, ask)
            else:
                cluster.callback(ready[unit], functools.partial(self._race_when, unit, ask))
        yield done
        waited = last_admitted[0] - start - cluster.fixed_cost
        ledger.add("wait", waited)
        ledger.add("comm", env.now - start - waited)

    def _race_when(self, unit: int, ask: Callable[[], None], _: simpy.Event) -> None:
        self._race(unit, ask)

    def _race(self, unit: int, ask: Callable[[], None]) -> None:
        """Ask ``unit``'s pull gate once every pull of this moment has reached it, in an
        order drawn for this unit (no draw for one alone: the compute draws stay put)."""
        if not self._racing:
            self.cluster.defer(self._admit_racers)
        self._racing.setdefault(unit, []).append(ask)

    def _admit_racers(self) -> None:
        racing, self._racing = self._racing, {}
        for unit in sorted(racing):
            asks = racing[unit]
            if len(asks) > 1:
                self.cluster.rng.shuffle(asks)
            for ask in asks:
                ask()

    def _units_push(
        self,
        ledger: Ledger,
        messages: list[Message],
        delivered: Callable[[int], None] | None,
        posted: Callable[[], None] | None,
    ) -> Process:
        """Unit ``pair[1]`` of each message admits it; the answers are waited for in the
        units' order."""
        cluster, env = self.cluster, self.cluster.env
        start = env.now
        gates = [self.push_units[_unit(pair, 1)] for pair, _ in messages]
        tickets = [gate.request() for gate in gates]
        if cluster.fixed_cost > 0:
            yield env.timeout(cluster.fixed_cost)
        done, one = cluster.countdown(len(messages))
        waited = 0.0
        for (pair, flows), gate, ticket in zip(messages, gates, tickets, strict=True):
            asked = env.now
            yield ticket
            waited += env.now - asked

            def through(
                gate: simpy.Resource = gate,
                ticket: simpy.resources.resource.Request = ticket,
                unit: int = _unit(pair, 1),
            ) -> None:
                gate.release(ticket)
                if delivered is not None:
                    delivered(unit)
                one()

            cluster.post(_pair(pair), flows, delivered=through)
        if posted is not None:
            posted()
        yield done
        ledger.add("wait", waited)
        ledger.add("comm", env.now - start - waited)


def _with_bytes(messages: list[Message]) -> list[Message]:
    """The messages that carry something: a unit with no shard is never asked."""
    return [(pair, flows) for pair, flows in messages if any(n > 0 for _, n in flows)]


def _pair(pair: tuple[int, int] | None) -> tuple[int, int]:
    assert pair is not None, "a sharded unit's message has its connection"
    return pair


def _unit(pair: tuple[int, int] | None, end: int) -> int:
    return _pair(pair)[end]


def _update_time(spec: SimSpec) -> float:
    """The server's work for one gradient. A sharded unit updates only its shard, and the
    next pull waits for every unit's update: the largest shard's share of the work."""
    if spec.servers != "sharded":
        return spec.server_update
    return spec.server_update * max(spec.shards()) / spec.weight_bytes


def _sync_sharded(cluster: Cluster) -> None:
    """A synchronous sharded server without a semaphore, all workers in one process.

    Exact for the model: every worker pulls at the same moment, so each link carries one
    flow of the pull phase alone, and each push starts when its own compute ends and is
    again alone on its links. A phase takes the fixed cost plus its most loaded link's
    bytes (a worker's N - 1 shards in, the largest unit's N - 1 replies out); an
    iteration is the pull, the slowest of N draws, the push and a unit's update."""
    spec, env = cluster.spec, cluster.env
    shards, n, links = spec.shards(), spec.workers, spec.links
    fixed = links.latency + links.transfer_overhead if n > 1 else 0.0
    biggest_in = max(spec.weight_bytes - s for s in shards)
    biggest_out = (n - 1) * max(shards)
    pull = fixed + max(biggest_in / links.down, biggest_out / links.up)
    push = fixed + max(biggest_in / links.up, biggest_out / links.down)
    update = _update_time(spec)
    # the links' use, for the bottleneck: every host's alike
    up_use = cluster.link("each host up", links.up).use
    down_use = cluster.link("each host down", links.down).use

    def iterations() -> Process:
        for _ in range(cluster.total_steps):
            up_use.busy_s += (biggest_out + biggest_in) / links.up if n > 1 else 0.0
            down_use.busy_s += (biggest_in + biggest_out) / links.down if n > 1 else 0.0
            draws = [cluster.draw_grad() + spec.compute.overhead for _ in range(n)]
            slowest = max(draws)
            for ledger, own in zip(cluster.ledgers, draws, strict=True):
                ledger.begin(env.now)
                ledger.add("comm", pull + push)
                ledger.add("compute", own)
                ledger.add("wait", slowest - own)
                ledger.add("server", update)
                ledger.samples += spec.samples_per_step if ledger.measuring else 0
            yield env.timeout(pull + slowest + push + update)
        for ledger in cluster.ledgers:
            ledger.begin(env.now)

    env.process(iterations())


def _sync_units(cluster: Cluster) -> None:
    """A synchronous sharded server behind the semaphore, each unit on its own.

    A unit updates its shard once every worker's push of the iteration has reached it,
    and then lets that iteration's pulls through; a worker asks every unit for its next
    pull as soon as its own push is through. So a unit whose pushes are in serves pulls
    while the last worker is still pushing to the others, and that worker, asking last,
    queues behind the others at every unit (the real unit's serve thread waits for the
    version, then takes its turn at the semaphore)."""
    spec, env = cluster.spec, cluster.env
    shards = spec.shards()
    pulls, pushes = _server_messages(cluster)
    admission = Admission.of(cluster)
    updates = [spec.server_update * shard / spec.weight_bytes for shard in shards]
    longest_update = max(updates)
    iterations = [_unit_releases(cluster, updates) for _ in range(cluster.total_steps)]

    def worker(i: int, ledger: Ledger) -> Process:
        previous: list[simpy.Event] | None = None
        for released, arrive in iterations:
            ledger.begin(env.now)
            waited_before = ledger.parts["wait"]
            yield from admission.pull(ledger, pulls(i), previous)
            if previous is not None:  # its own unit's shard, in its own process
                yield from cluster.timed(ledger, "wait", previous[i])
                _charge_update(ledger, ledger.parts["wait"] - waited_before, longest_update)
            grad = cluster.draw_grad() + spec.compute.overhead
            yield env.timeout(grad)
            ledger.add("compute", grad)
            own = arrive[i] if shards[i] > 0 else None
            delivered = functools.partial(_call, arrive)
            yield from admission.push(ledger, pushes(i), delivered=delivered, posted=own)
            ledger.samples += spec.samples_per_step if ledger.measuring else 0
            previous = released
        ledger.begin(env.now)

    for i, ledger in enumerate(cluster.ledgers):
        env.process(worker(i, ledger))


def _charge_update(ledger: Ledger, waited: float, longest_update: float) -> None:
    """Of a synchronous pull's ``waited`` seconds, what was the units' update (at most the
    longest unit's) is the server's part, not waiting for other workers."""
    server = min(longest_update, waited)
    ledger.add("wait", -server)
    ledger.add("server", server)


def _unit_releases(
    cluster: Cluster, updates: list[float]
) -> tuple[list[simpy.Event], list[Callable[[], None]]]:
    """One synchronous iteration of a sharded server's units: each unit's release, and
    the call that counts a push into it. A unit updates its shard once every worker's
    push has reached it (a unit without a shard is never pushed to: released at once)."""
    env, n, shards = cluster.env, cluster.spec.workers, cluster.spec.shards()
    released = [env.event() for _ in range(n)]
    arrive: list[Callable[[], None]] = []
    for unit in range(n):
        pushed, one = cluster.countdown(n if shards[unit] > 0 else 0)

        def update(_: simpy.Event, unit: int = unit) -> None:
            def release(_: simpy.Event) -> None:
                released[unit].succeed(env.now)

            cluster.callback(env.timeout(updates[unit]), release)

        cluster.callback(pushed, update)
        arrive.append(one)
    return released, arrive


def _sync_wired(cluster: Cluster) -> None:
    """A synchronous sharded server without a semaphore, every message on its connection
    (``ShardedWires``), up to ``EXACT_SHARD_FLOWS`` workers.

    Each unit updates its shard once every worker's push has reached it and then answers
    the pulls waiting for it; a worker asks for its next pull once its own push is
    handed to the kernel, and its request, like a unit's reply, waits its turn behind
    what the connection already carries (a worker's push to unit j and its unit's reply
    to worker j share one). So the worker whose push ends last is answered last, pulls
    last, and pushes last again: one worker last at every unit, step after step
    (measured: ``benchmarks/admission_orders.py STORE --timeline K``), where the closed
    form (``_sync_sharded``) starts every pull of an iteration at once."""
    spec, env = cluster.spec, cluster.env
    n, shards = spec.workers, spec.shards()
    wires = ShardedWires(cluster)
    updates = [spec.server_update * shard / spec.weight_bytes for shard in shards]
    longest_update = max(updates)
    iterations = [_unit_releases(cluster, updates) for _ in range(cluster.total_steps)]
    fixed = cluster.fixed_cost

    def worker(i: int, ledger: Ledger) -> Process:
        others = [j for j in range(n) if j != i]
        previous: list[simpy.Event] | None = None
        for released, arrive in iterations:
            ledger.begin(env.now)
            start = env.now
            if fixed > 0:
                yield env.timeout(fixed)
            yield wires.pull(i, others, previous)
            if previous is not None:  # its own unit's shard, in its own process
                yield previous[i]
            # the time the last unit's update ended: what of the pull was waiting for it
            released_at = max(cast(float, e.value) for e in previous) if previous else start
            waited = max(0.0, released_at - start)
            ledger.add("wait", waited)
            _charge_update(ledger, waited, longest_update)
            ledger.add("comm", env.now - start - waited)
            grad = cluster.draw_grad() + spec.compute.overhead
            yield env.timeout(grad)
            ledger.add("compute", grad)
            pushed = env.now
            if shards[i] > 0:
                arrive[i]()
            if fixed > 0:
                yield env.timeout(fixed)
            yield wires.push(i, others, functools.partial(_call, arrive))
            ledger.add("comm", env.now - pushed)
            ledger.samples += spec.samples_per_step if ledger.measuring else 0
            previous = released
        ledger.begin(env.now)

    for i, ledger in enumerate(cluster.ledgers):
        env.process(worker(i, ledger))


def _call(calls: list[Callable[[], None]], index: int) -> None:
    calls[index]()


def _sync_ps(cluster: Cluster) -> None:
    spec, env = cluster.spec, cluster.env
    if spec.servers == "sharded" and not spec.semaphore:
        if spec.workers <= EXACT_SHARD_FLOWS:
            _sync_wired(cluster)
        else:
            _sync_sharded(cluster)
        return
    if spec.servers == "sharded" and spec.workers <= EXACT_SHARD_FLOWS:
        _sync_units(cluster)
        return
    pulls, pushes = _server_messages(cluster)
    admission = Admission.of(cluster)
    iterations = [_Iteration(env, spec.workers) for _ in range(cluster.total_steps)]

    def release(it: _Iteration) -> Process:
        yield env.timeout(_update_time(spec))
        it.released.succeed()

    def worker(i: int, ledger: Ledger) -> Process:
        for it in iterations:
            ledger.begin(env.now)
            yield from admission.pull(ledger, pulls(i))
            grad = cluster.draw_grad() + spec.compute.overhead
            yield env.timeout(grad)
            ledger.add("compute", grad)
            yield from admission.push(ledger, pushes(i))
            if it.arrive():
                env.process(release(it))
            yield from cluster.timed(ledger, "wait", it.pushed)
            yield from cluster.timed(ledger, "server", it.released)
            ledger.samples += spec.samples_per_step if ledger.measuring else 0
        ledger.begin(env.now)

    for i, ledger in enumerate(cluster.ledgers):
        env.process(worker(i, ledger))


def _async_ps(cluster: Cluster) -> None:
    spec, env = cluster.spec, cluster.env
    pulls, pushes = _server_messages(cluster)
    # the central server applies one gradient at a time (its write lock); sharded units
    # each update their own shard, beside the others
    lock = simpy.Resource(env, 1) if spec.servers == "central" else None
    admission = Admission.of(cluster, update_lock=lock)
    update = _update_time(spec)

    def apply(ledger: Ledger) -> Process:
        if lock is None:
            yield from cluster.timed(ledger, "server", env.timeout(update))
            return
        start = env.now
        with lock.request() as held:
            yield held
            yield env.timeout(update)
        ledger.add("server", env.now - start)

    replay = spec.replay

    def worker(i: int, ledger: Ledger) -> Process:
        if replay is not None and replay.starts[i] > 0:
            yield env.timeout(replay.starts[i])
        for k in range(cluster.total_steps):
            ledger.begin(env.now)
            yield from admission.pull(ledger, pulls(i))
            drawn = replay.compute[i][k] if replay is not None else cluster.draw_grad()
            grad = drawn + spec.compute.overhead
            yield env.timeout(grad)
            ledger.add("compute", grad)
            yield from admission.push(ledger, pushes(i))
            if update > 0:
                yield from apply(ledger)
            ledger.samples += spec.samples_per_step if ledger.measuring else 0
        ledger.begin(env.now)

    def lean_worker(i: int, ledger: Ledger) -> Process:
        """``worker`` for a sharded server without a semaphore beyond
        ``EXACT_SHARD_FLOWS`` workers (its mean field)."""
        yield from _unit_worker(
            cluster,
            i,
            ledger,
            lambda: cluster.send_messages(ledger, pulls(i), fixed=False),
            lambda: cluster.send_messages(ledger, pushes(i), fixed=False),
            update,
        )

    sharded_alone = spec.servers == "sharded" and not spec.semaphore
    if sharded_alone and spec.workers <= EXACT_SHARD_FLOWS:
        _async_sharded(cluster, update)
        return
    lean = sharded_alone and replay is None
    for i, ledger in enumerate(cluster.ledgers):
        env.process((lean_worker if lean else worker)(i, ledger))


@dataclass
class ShardedWires:
    """The messages of a sharded server's transfers, each on its pair's connection as
    gloo sends it.

    A unit and its worker are one process, so the connection from host i to host j
    carries, in order, unit i's replies to worker j and worker i's requests and pushes to
    unit j. A send goes once its receiver has said it is ready, and unit j says it is
    ready for worker i's next request on receiving the current one: a notice that waits
    its turn on the connection back (behind worker j's push to unit i, say). A pull is,
    from each other unit, the request (once the unit's notice has come) and then the
    unit's reply. The unit announced its receive for the push's data before that reply,
    so a push goes at once: its request, then its data. A send is done for its sender
    when the kernel holds the rest (``Links.send_buffer_max``), so a worker asks for its
    next pull while its push is still on the wire, ahead of what its unit sends later."""

    cluster: Cluster
    # unit j's notice that it will take worker i's next request, by (j, i); none yet:
    # the first requests' receives were posted before any worker began
    notices: dict[tuple[int, int], simpy.Event] = field(default_factory=dict)

    def _flows(self, src: int, dst: int, nbytes: float) -> list[Flow]:
        links, cluster = self.cluster.spec.links, self.cluster
        up = cluster.link(f"host {src} up", links.up)
        down = cluster.link(f"host {dst} down", links.down)
        return [(up, nbytes), (down, nbytes)]

    def buffer(self, src: int, dst: int) -> float:
        return send_buffer(self.cluster.spec, src, dst)

    def pull(
        self, worker: int, units: list[int], ready: list[simpy.Event] | None = None
    ) -> simpy.Event:
        """Worker ``worker``'s pull from ``units``: the event of the last reply's last
        byte. A unit replies once the request has reached it and, given ``ready``, once
        its event has fired (a synchronous unit's update)."""
        cluster = self.cluster
        shards = cluster.spec.shards()
        done, replied = cluster.countdown(len(units))

        def ask(unit: int, _: simpy.Event | None = None) -> None:
            def send(_: simpy.Event | None = None) -> None:
                flows = self._flows(unit, worker, shards[unit])
                cluster.post((unit, worker), flows, self.buffer(unit, worker), delivered=replied)

            def reply() -> None:
                if ready is None:
                    send()
                else:
                    cluster.callback(ready[unit], send)

            cluster.post((worker, unit), [], delivered=reply)

        for unit in units:
            notice = self.notices.get((unit, worker))
            if notice is None:
                ask(unit)
            else:
                cluster.callback(notice, functools.partial(ask, unit))
        return done

    def push(
        self, worker: int, units: list[int], delivered: Callable[[int], None] | None = None
    ) -> simpy.Event:
        """Worker ``worker``'s push to ``units``: the event of the last one's hand-over to
        the kernel; ``delivered(unit)`` is called as each unit has its shard."""
        cluster = self.cluster
        shards = cluster.spec.shards()
        done, handed = cluster.countdown(len(units))
        for unit in units:
            notice = self.notices[(unit, worker)] = cluster.env.event()

            def announce(unit: int = unit, notice: simpy.Event = notice) -> None:
                cluster.post((unit, worker), [], delivered=lambda: cluster.fire(notice))

            cluster.post((worker, unit), [], delivered=announce)
            flows = self._flows(worker, unit, shards[unit])
            arrived = None if delivered is None else functools.partial(delivered, unit)
            buffer = self.buffer(worker, unit)
            cluster.post((worker, unit), flows, buffer, handed=handed, delivered=arrived)
        return done


def send_buffer(spec: SimSpec, src: int, dst: int) -> float:
    """The kernel's send buffer of a sharded server's src-to-dst connection: gloo asks for
    its largest message (unit src's shard out, or unit dst's shard pushed), and the kernel
    grants twice the request, up to twice its cap, in its own accounting; of a message it
    holds at most what the two-host probe measured (``Links.send_held``), where known."""
    shards = spec.shards()
    return kernel_holds(spec, max(shards[src], shards[dst]))


def kernel_holds(spec: SimSpec, largest: float, held: float | None = None) -> float:
    """What the kernel holds of a send on a connection whose largest message is
    ``largest`` bytes: gloo asks for that much buffer, the kernel grants twice the
    request, up to twice its cap, and the two-host probe (``Links.send_held``, or ``held``
    where it measured a message of this size) bounds it where known."""
    granted = 2 * min(largest, spec.links.send_buffer_max)
    held = spec.links.send_held if held is None else held
    return min(granted, held) if held > 0 else granted


def _unit_worker(
    cluster: Cluster,
    i: int,
    ledger: Ledger,
    pull: Callable[[], Process],
    push: Callable[[], Process],
    update: float,
) -> Process:
    """An asynchronous worker of a sharded server without a semaphore, one timeout fewer
    per transfer: the delays that occupy nothing (a transfer's fixed cost, its unit's
    update of its shard) join the wait before them — the same moments, fewer events, for
    thousands of workers. ``pull`` and ``push`` move the bytes; compute is drawn, or
    replayed (``SimSpec.replay``)."""
    spec, env, replay = cluster.spec, cluster.env, cluster.spec.replay
    fixed = cluster.fixed_cost
    carried = 0.0  # the unit's update, due before the next pull
    if replay is not None and replay.starts[i] > 0:
        yield env.timeout(replay.starts[i])
    for k in range(cluster.total_steps):
        ledger.begin(env.now)
        if carried + fixed > 0:
            yield env.timeout(carried + fixed)
        ledger.add("server", carried)
        ledger.add("comm", fixed)
        yield from pull()
        drawn = replay.compute[i][k] if replay is not None else cluster.draw_grad()
        grad = drawn + spec.compute.overhead
        yield env.timeout(grad + fixed)
        ledger.add("compute", grad)
        ledger.add("comm", fixed)
        yield from push()
        carried = update
        ledger.samples += spec.samples_per_step if ledger.measuring else 0
    if carried > 0:
        yield env.timeout(carried)
        ledger.add("server", carried)
    ledger.begin(env.now)


def _async_sharded(cluster: Cluster, update: float) -> None:
    """Asynchronous workers of a sharded server without a semaphore, up to
    ``EXACT_SHARD_FLOWS``: every message on its connection (``ShardedWires``)."""
    spec, env = cluster.spec, cluster.env
    wires = ShardedWires(cluster)

    def worker(i: int, ledger: Ledger) -> Process:
        others = [j for j in range(spec.workers) if j != i]
        yield from _unit_worker(
            cluster,
            i,
            ledger,
            lambda: cluster.timed(ledger, "comm", wires.pull(i, others)),
            lambda: cluster.timed(ledger, "comm", wires.push(i, others)),
            update,
        )

    for i, ledger in enumerate(cluster.ledgers):
        env.process(worker(i, ledger))


# --- all-reduce -------------------------------------------------------------------------


def bucket_sizes(grad_bytes: float, bucket_bytes: float) -> list[float]:
    """DDP's buckets: full buckets of ``bucket_bytes``, the remainder last."""
    full, rest = divmod(grad_bytes, bucket_bytes)
    sizes = [bucket_bytes] * int(full)
    return [*sizes, rest] if rest > 0 or not sizes else sizes


def _ddp(cluster: Cluster) -> None:
    """One process for the whole ring: every rank moves the same bytes at the same moments,
    so the ring's time depends on N only through the formula's 2(N-1) messages of bytes/N.
    Each bucket waits for the slowest rank to produce it."""
    spec, env = cluster.spec, cluster.env
    ring = spec.ring
    assert ring is not None
    n = spec.workers
    if ring.buckets:
        buckets = list(ring.buckets)
    else:  # gradients fill buckets of bucket_bytes uniformly in backward
        sizes = bucket_sizes(spec.weight_bytes, ring.bucket_bytes)
        buckets = [(sum(sizes[: i + 1]) / sum(sizes), b) for i, b in enumerate(sizes)]

    def reduce_time(nbytes: float) -> float:
        if n == 1:
            return 0.0
        return 2 * (n - 1) * ring.alpha + 2 * (n - 1) / n * nbytes / ring.beta

    def step_parts() -> tuple[float, float, float]:
        draws = [cluster.draw_grad() for _ in range(n)]
        slowest = max(draws)
        backward = slowest * spec.compute.backward_share
        forward = slowest - backward
        if ring.fixed is not None or n == 1:
            exposed = ring.fixed if ring.fixed is not None and n > 1 else 0.0
            return slowest, fmean(draws), exposed
        ring_free = 0.0
        for fraction, nbytes in buckets:
            ready = forward + backward * fraction if ring.overlap else slowest
            ring_free = max(ring_free, ready) + reduce_time(nbytes)
        return slowest, fmean(draws), max(0.0, ring_free - slowest)

    def ranks() -> Process:
        ledgers = cluster.ledgers
        for _ in range(cluster.total_steps):
            for ledger in ledgers:
                ledger.begin(env.now)
            slowest, mean_draw, exposed = step_parts()
            extra = spec.compute.overhead + ring.machinery
            yield env.timeout(slowest + exposed + extra)
            for ledger in ledgers:
                ledger.add("compute", mean_draw + extra)
                ledger.add("wait", slowest - mean_draw)
                ledger.add("comm", exposed)
                ledger.samples += spec.samples_per_step if ledger.measuring else 0
        for ledger in ledgers:
            ledger.begin(env.now)

    env.process(ranks())


# --- sequential and pipelines -------------------------------------------------------------


def _sequential(cluster: Cluster) -> None:
    spec, env = cluster.spec, cluster.env

    def worker(ledger: Ledger) -> Process:
        for _ in range(cluster.total_steps):
            ledger.begin(env.now)
            grad = cluster.draw_grad() + spec.compute.overhead
            yield env.timeout(grad)
            ledger.add("compute", grad)
            ledger.samples += spec.samples_per_step if ledger.measuring else 0
        ledger.begin(env.now)

    for ledger in cluster.ledgers:
        env.process(worker(ledger))


def schedule(kind: str, stages: int, microbatches: int, stage: int) -> list[tuple[str, int]]:
    """The order of stage ``stage``'s ops, ``("F", m)`` / ``("B", m)``: GPipe runs every
    forward then every backward; 1F1B (PipeDream-flush) runs ``S - 1 - stage`` forwards
    to fill the pipeline, then one forward and one backward in turn, then the rest."""
    if kind != "1f1b":
        return [("F", m) for m in range(microbatches)] + [("B", m) for m in range(microbatches)]
    warm = min(stages - 1 - stage, microbatches)
    order = [("F", m) for m in range(warm)]
    for m in range(warm, microbatches):
        order += [("F", m), ("B", m - warm)]
    order += [("B", m) for m in range(microbatches - warm, microbatches)]
    return order


def _pipeline(cluster: Cluster) -> None:
    spec, env = cluster.spec, cluster.env
    pipe = spec.pipeline
    assert pipe is not None
    stages = len(pipe.stage_times)
    kind = "gpipe" if spec.strategy == "model-parallel" else spec.strategy
    micro = 1 if spec.strategy == "model-parallel" else pipe.microbatches
    orders = [schedule(kind, stages, micro, s) for s in range(stages)]
    Arrivals = dict[tuple[str, int, int], simpy.Event]
    steps: list[tuple[Arrivals, _Iteration]] = []

    def step_events(k: int) -> tuple[Arrivals, _Iteration]:
        """Step ``k``'s arrival events and flush, made when the first stage reaches it
        (not all up front: stages x microbatches x steps of them)."""
        while len(steps) <= k:
            steps.append(({}, _Iteration(env, stages)))
        return steps[k]

    def arrival(arrivals: Arrivals, key: tuple[str, int, int]) -> simpy.Event:
        if key not in arrivals:
            arrivals[key] = env.event()
        return arrivals[key]

    def deliver(arrivals: Arrivals, key: tuple[str, int, int], src: int) -> Process:
        link = cluster.link(f"stage {src} up", spec.links.up)
        yield from cluster.send(cluster.ledgers[src], [(link, pipe.activation_bytes)])
        arrival(arrivals, key).succeed()

    def needs(op: str, s: int, m: int) -> tuple[str, int, int] | None:
        if op == "F" and s > 0:
            return ("F", s, m)  # the previous stage's activations
        if op == "B" and s < stages - 1:
            return ("B", s, m)  # the next stage's gradient
        return None

    def stage(s: int, ledger: Ledger) -> Process:
        forward = pipe.stage_times[s] * pipe.forward_share
        backward = pipe.stage_times[s] - forward
        for k in range(cluster.total_steps):
            arrivals, flush = step_events(k)
            ledger.begin(env.now)
            for op, m in orders[s]:
                key = needs(op, s, m)
                if key is not None:
                    yield from cluster.timed(ledger, "wait", arrival(arrivals, key))
                seconds = forward if op == "F" else backward
                yield env.timeout(seconds)
                ledger.add("compute", seconds)
                if op == "F" and s < stages - 1:
                    env.process(deliver(arrivals, ("F", s + 1, m), s))
                if op == "B" and s > 0:
                    env.process(deliver(arrivals, ("B", s - 1, m), s))
            flush.arrive()  # a flush: every stage ends the batch before the update
            yield from cluster.timed(ledger, "wait", flush.pushed)
            yield env.timeout(spec.compute.overhead)
            ledger.add("compute", spec.compute.overhead)
            ledger.samples += spec.samples_per_step if ledger.measuring and s == 0 else 0
        ledger.begin(env.now)

    for s, ledger in enumerate(cluster.ledgers):
        env.process(stage(s, ledger))


MODELS: dict[str, Callable[[Cluster], None]] = {
    "sequential": _sequential,
    "ddp": _ddp,
    "sync-join": _sync_ps,
    "sync-split": _sync_ps,
    "async": _async_ps,
    "gpipe": _pipeline,
    "1f1b": _pipeline,
    "model-parallel": _pipeline,
}


PIPELINES = ("gpipe", "1f1b", "model-parallel")


def _ledger_count(spec: SimSpec) -> int:
    if spec.strategy in PIPELINES:
        assert spec.pipeline is not None
        return len(spec.pipeline.stage_times)
    return spec.workers


def _steps_to_run(spec: SimSpec) -> SimSpec:
    """The steps that need simulating. A pipeline's stage times are fixed (no draws) and
    its flush leaves every stage idle and every link empty at the end of each step, so
    every step is the same step: simulating one is exact, and a hundred times cheaper
    for thousands of stages."""
    if spec.strategy in PIPELINES:
        return replace(spec, warmup=0, steps=1)
    return spec


def simulate(spec: SimSpec) -> SimResult:
    """Run ``spec`` to the end of its steps and measure it as a run is measured."""
    return run_every_step(_steps_to_run(spec))


def run_every_step(spec: SimSpec) -> SimResult:
    """``simulate`` without its shortcuts: every step of ``spec`` simulated."""
    return _result(_run(spec))


def worker_steps(spec: SimSpec) -> list[list[float]]:
    """Every worker's (a pipeline: every stage's) seconds of each step, warm-up included,
    every step simulated: how a run's steps change over its course (a convoy's start)."""
    return [[b - a for a, b in itertools.pairwise(ledger.starts)] for ledger in _run(spec).ledgers]


def _run(spec: SimSpec) -> Cluster:
    env = simpy.Environment()
    ledgers = [Ledger(spec.warmup) for _ in range(_ledger_count(spec))]
    cluster = Cluster(spec, env, random.Random(spec.seed), ledgers)
    MODELS[spec.strategy](cluster)
    env.run()
    stalled = [i for i, ledger in enumerate(ledgers) if len(ledger.starts) <= spec.total_steps]
    if stalled:  # a model whose messages wait for each other: a bug, not the user's input
        raise RuntimeError(
            f"the simulation of {spec.strategy} x{spec.workers} stalled: worker(s) "
            f"{', '.join(map(str, stalled[:8]))} did not finish their steps"
        )
    return cluster


def _result(cluster: Cluster) -> SimResult:
    spec, ledgers = cluster.spec, cluster.ledgers
    if cluster.env.now <= 0:
        raise UserError("nothing to simulate: no compute, no transfer, no update")
    per_worker = [ledger.measured_steps() for ledger in ledgers]
    if spec.strategy == "async":
        elapsed = [sum(steps) for steps in per_worker]
        throughput = sum(
            ledger.samples / span for ledger, span in zip(ledgers, elapsed, strict=True)
        )
        # the mean step the throughput implies, as a measured run's is taken: the workers'
        # mean steps' harmonic mean (a worker that escapes a convoy counts by its rate)
        step_time = spec.workers * spec.samples_per_step / throughput
        span = max(elapsed)
    else:  # every worker steps once per iteration: the mean over workers is the period
        step_time = fmean(fmean(steps) for steps in per_worker)
        span = step_time * spec.steps
        throughput = sum(ledger.samples for ledger in ledgers) / span
    split = {part: fmean(ledger.parts[part] for ledger in ledgers) / spec.steps for part in SPLIT}
    return SimResult(
        strategy=spec.strategy,
        workers=spec.workers,
        step_time=step_time,
        throughput=throughput,
        split=split,
        links={
            name: {
                "busy": min(1.0, link.use.busy_s / cluster.env.now) if cluster.env.now else 0.0,
                "most_at_once": float(link.use.most_at_once),
            }
            for name, link in sorted(cluster.links.items())
        },
        note=cluster.note,
    )
