"""The discrete-event simulator: its links, its agreement with the thesis' formulas where
their assumptions hold, the effects the formulas lack, the profile backend and the
``simulate`` command."""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import simpy
from test_validate import make_profile

from distbench.cli.main import main
from distbench.config import RunConfig
from distbench.errors import UserError
from distbench.netem.spec import default_burst
from distbench.predict import formulas as f
from distbench.predict.core import case_of
from distbench.predict.engines import predict
from distbench.predict.simulated import shaper_burst, simulate_case, simulate_run
from distbench.profiling.profiles import kernel_send_buffer_max, save_profile
from distbench.simulator import (
    ComputeDraws,
    Links,
    Pipeline,
    Replay,
    RingAllReduce,
    SimSpec,
    simulate,
    worker_steps,
)
from distbench.simulator.engine import (
    EXACT_SHARD_FLOWS,
    Admission,
    Cluster,
    Flow,
    Ledger,
    Message,
    ShardedWires,
    bucket_sizes,
    run_every_step,
    schedule,
    send_buffer,
)
from distbench.simulator.links import FairLink
from distbench.workflows.simulate import SimRow, bottleneck, knee

T_GRAD, T_COMM, RATE = 2.0, 1.0, 1e8  # the weights cross a link in one second alone
WEIGHTS = T_COMM * RATE


def spec(strategy: str, n: int, **changes: Any) -> SimSpec:
    given: dict[str, Any] = {
        "compute": ComputeDraws(grad=T_GRAD, backward_share=2 / 3),
        "links": Links(up=RATE, down=RATE),
        "weight_bytes": WEIGHTS,
        "samples_per_step": 32,
        "steps": 10,
    }
    return SimSpec(strategy=strategy, workers=n, **{**given, **changes})  # type: ignore[arg-type]


# --- links ------------------------------------------------------------------------------


def test_a_link_shares_its_rate_among_the_transfers_in_flight() -> None:
    """100 B/s; two 100 B transfers from t=0 and a 50 B one from t=0.5: until 0.5 each
    of two gets 50 B/s, then each of three 33.3 B/s; the short one ends at 2.0, the
    others, 25 B short then, at 2.5."""
    env = simpy.Environment()
    link = FairLink(env, rate=100.0)
    ends: dict[int, float] = {}

    def transfer(i: int, start: float, size: float) -> Any:
        yield env.timeout(start)
        yield link.transfer(size)
        ends[i] = env.now

    for i, (start, size) in enumerate([(0, 100), (0, 100), (0.5, 50)]):
        env.process(transfer(i, start, size))
    env.run()
    assert ends == pytest.approx({0: 2.5, 1: 2.5, 2: 2.0})
    assert link.use.most_at_once == 3


def test_a_link_shares_its_rate_by_the_transfers_weights() -> None:
    """100 B/s; two 100 B transfers from t=0 weighted 3 and 1 move at 75 and 25 B/s, so the
    first ends at 4/3 s, and the second, 66.7 B short then, at 2.0 s with the whole rate."""
    env = simpy.Environment()
    link = FairLink(env, rate=100.0)
    ends: dict[str, float] = {}

    def transfer(name: str, weight: float) -> Any:
        yield link.transfer(100.0, weight=weight)
        ends[name] = env.now

    env.process(transfer("heavy", 3.0))
    env.process(transfer("light", 1.0))
    env.run()
    assert ends == pytest.approx({"heavy": 4 / 3, "light": 2.0})


def test_unequal_shares_break_up_an_asynchronous_convoy() -> None:
    """Eight workers with the same compute every step start together: on links shared
    exactly equally they pull together and push together for ever (the convoy, every
    pull and push taking N transfer times); with unequal shares the first to finish gets
    ahead and they spread out, towards the server's link carrying one transfer per worker
    a cycle (N · t_comm)."""
    n, steps = 8, 60
    convoy = simulate(spec("async", n, steps=steps))
    spread = simulate(
        spec("async", n, steps=steps, links=Links(up=RATE, down=RATE, unfairness=0.1))
    )
    assert convoy.step_time == pytest.approx(T_GRAD + 2 * n * T_COMM, rel=0.01)
    assert n * T_COMM * 0.99 <= spread.step_time < 0.9 * convoy.step_time


def test_worker_steps_show_a_convoy_breaking_up_over_the_run() -> None:
    """Every worker's steps one by one, warm-up included: an exact convoy's steps are
    all alike; with unequal shares the later steps are shorter than the first."""
    n, steps, warmup = 8, 40, 2
    convoy = worker_steps(spec("async", n, steps=steps, warmup=warmup))
    unequal = Links(up=RATE, down=RATE, unfairness=0.1)
    spreading = worker_steps(spec("async", n, steps=steps, warmup=warmup, links=unequal))
    assert [len(w) for w in convoy] == [warmup + steps] * n
    cycle = T_GRAD + 2 * n * T_COMM
    assert all(s == pytest.approx(cycle, rel=0.01) for w in convoy for s in w)
    first, last = (sum(w[k] for w in spreading) / n for k in (0, -1))
    assert first == pytest.approx(cycle, rel=0.05)
    assert last < 0.9 * first


def test_link_unfairness_must_lie_below_one() -> None:
    with pytest.raises(UserError, match="unfairness must lie in"):
        Links(up=RATE, down=RATE, unfairness=1.0)


def test_a_transfer_is_capped_by_the_far_end_link() -> None:
    env = simpy.Environment()
    link = FairLink(env, rate=100.0, cap=30.0)
    done = link.transfer(60.0)
    env.run()
    assert done.triggered and env.now == pytest.approx(2.0)


def test_a_shaped_link_passes_its_refilled_bucket_to_a_transfer_that_finds_it_idle() -> None:
    """100 B/s and a 20 B bucket, full at the start: a transfer that finds the link idle
    gets what the bucket holds at once, one that joins a busy link gets nothing, and the
    bucket refills at the link's rate while the link idles."""
    env = simpy.Environment()
    link = FairLink(env, rate=100.0, burst=20.0)
    ends: dict[int, float] = {}

    def transfer(i: int, start: float, size: float) -> Any:
        yield env.timeout(start)
        yield link.transfer(size)
        ends[i] = env.now

    for i, (start, size) in enumerate([(0.0, 100.0), (0.4, 40.0), (1.3, 100.0)]):
        env.process(transfer(i, start, size))
    env.run()
    # the first alone 0.4 s (40 B + the bucket's 20), then both at 50 B/s: the second's
    # 40 B take 0.8 s, the first's last 40 B as well: both end at 1.2 s; the link idles
    # 0.1 s, so the third starts with 10 B and ends 0.9 s later
    assert ends == pytest.approx({0: 1.2, 1: 1.2, 2: 2.2})
    assert FairLink(env, rate=100.0)._bucket() == 0.0  # no bucket: the fluid link as before


def test_a_fair_queued_link_lends_its_bucket_only_to_transfers_that_join_others() -> None:
    """Fair queues, 100 B/s and a 20 B bucket, full at the start: the first transfer finds
    the link idle and passes nothing at once; the second joins it and passes the bucket's
    20 B at once; the bucket refills while the link idles, a lone third again passes
    nothing, and a fourth that joins it passes the refill."""
    env = simpy.Environment()
    link = FairLink(env, rate=100.0, burst=20.0, joiners_burst=True)
    ends: dict[int, float] = {}

    def transfer(i: int, start: float, size: float) -> Any:
        yield env.timeout(start)
        yield link.transfer(size)
        ends[i] = env.now

    for i, (start, size) in enumerate([(0.0, 100.0), (0.4, 40.0), (1.3, 100.0), (1.5, 10.0)]):
        env.process(transfer(i, start, size))
    env.run()
    # the first alone at 100 B/s to 0.4 s (60 B left); the second's 20 B after its credit
    # at 50 B/s end at 0.8 s, the first's last 40 B alone at 1.2 s; idle 0.1 s refills
    # 10 B, which the third cannot use (it ends 1 s after it began) and the fourth's
    # 10 B pass at once
    assert ends == pytest.approx({0: 1.2, 1: 0.8, 2: 2.3, 3: 1.5})


def test_fair_queued_links_are_told_apart_from_fifo_ones() -> None:
    """The bucket is the network's behind either queue; only fair queues lend it to
    transfers that join others."""
    assert shaper_burst("bandwidth=1gbit,queue=fair") == default_burst(10**9) > 0
    assert shaper_burst(None) == 0.0
    cfg = RunConfig(model="lenet5", strategy="ps-async", workers=4, servers="central")
    for queue, fair in (("fifo", False), ("fair", True)):
        network = f"bandwidth=1gbit,queue={queue}"
        profile = replace(make_profile(), network=network)
        simulated = simulate_case(case_of(replace(cfg, network=network)), profile, steps=2)
        assert simulated.spec.links.fair_queues is fair


# --- the formulas, reproduced where their assumptions hold ------------------------------


@pytest.mark.parametrize("n", [1, 2, 4, 8, 32])
def test_sync_central_server_is_the_worst_case_when_all_transfer_at_once(n: int) -> None:
    """No jitter: every worker pulls at once and pushes at once through the server's link
    (eq. 4.7, and the links formula with N transfers' bytes)."""
    result = simulate(spec("sync-join", n))
    assert result.step_time == pytest.approx(f.sync_central_worst(T_GRAD, T_COMM, n))
    assert result.step_time == pytest.approx(f.sync_central_links(T_GRAD, n * T_COMM, 0.0))


@pytest.mark.parametrize("servers", ["central", "sharded"])
def test_a_replayed_async_run_plays_its_own_compute_and_starts(servers: str) -> None:
    fixed = spec("async", 2, servers=servers, steps=4)
    same = Replay(((T_GRAD,) * 6, (T_GRAD,) * 6), (0.0, 0.0))
    assert simulate(replace(fixed, replay=same)).step_time == pytest.approx(
        simulate(fixed).step_time
    )
    # the second worker starts one transfer late: the two never share the server's link
    staggered = Replay(((T_GRAD,) * 6, (T_GRAD,) * 6), (0.0, T_COMM))
    alone = simulate(replace(fixed, replay=staggered, servers="central"))
    assert alone.step_time == pytest.approx(T_GRAD + 2 * T_COMM)
    with pytest.raises(UserError, match="only an asynchronous run"):
        spec("sync-join", 2, replay=same)
    with pytest.raises(UserError, match="shorter than 2 \\+ 10 steps"):
        spec("async", 2, replay=same)
    with pytest.raises(UserError, match="a replay of 2 workers for 3"):
        spec("async", 3, replay=same)


@pytest.mark.parametrize("n", [1, 2, 4, 16])
def test_sync_sharded_server_is_eq_4_12(n: int) -> None:
    result = simulate(spec("sync-join", n, servers="sharded"))
    assert result.step_time == pytest.approx(f.sync_distributed(T_GRAD, T_COMM, n))


@pytest.mark.parametrize("n", [33, 64])
def test_sync_sharded_server_beyond_the_exact_flows_is_eq_4_12(n: int) -> None:
    result = simulate(spec("sync-join", n, servers="sharded", steps=3))
    assert result.step_time == pytest.approx(f.sync_distributed(T_GRAD, T_COMM, n))


def test_a_synchronous_units_answer_waits_its_turn_on_the_connection() -> None:
    """Three workers; unit 0 holds half the weights, units 1 and 2 a quarter each; no
    send buffers. Unit 0's two replies and the two pushes into it take 1 s each (two
    halves on one link), so with every pull of an iteration starting at once a step is
    1 + 2 + 1 = 4 s. But worker 1 asks unit 0 for its pull once its push is through, on
    the connection that carries unit 1's reply to worker 0 — a reply that itself waited
    behind that very push — and unit 0 answers half a second late: 4.5 s a step."""
    shards = (WEIGHTS / 2, WEIGHTS / 4, WEIGHTS / 4)
    result = simulate(spec("sync-join", 3, servers="sharded", shard_bytes=shards))
    assert result.step_time == pytest.approx(T_GRAD + 2.5 * T_COMM)


@pytest.mark.parametrize("n", [1, 2, 8])
def test_async_sharded_server_is_eq_4_21(n: int) -> None:
    d = 10 * n
    result = simulate(spec("async", n, servers="sharded"))
    assert result.step_time == pytest.approx(f.async_distributed(T_GRAD, T_COMM, n, d) / (d / n))


@pytest.mark.parametrize("n", [4, EXACT_SHARD_FLOWS + 8])
def test_every_async_pull_waits_for_the_unit_with_the_largest_shard(n: int) -> None:
    """One unit holds 70 % of the weights: its uplink carries that shard to each of the
    other N - 1 workers and its own worker's push of the rest every cycle (its downlink as
    much), so no worker steps faster than that link allows — with a flow per unit and in
    the mean field of many workers — nor slower than pulls and pushes taking turns on it."""
    big = 0.7 * WEIGHTS
    shards = (big, *((WEIGHTS - big) / (n - 1),) * (n - 1))
    fast = ComputeDraws(grad=0.01, backward_share=2 / 3)
    result = simulate(spec("async", n, servers="sharded", shard_bytes=shards, compute=fast))
    busiest_link = ((n - 1) * big + (WEIGHTS - big)) / RATE
    assert busiest_link * 0.99 <= result.step_time <= 2 * busiest_link + 0.01


def test_a_message_waits_for_the_one_before_it_on_its_connection() -> None:
    """One connection is one byte stream: a small message sent 0.1 s into a large one to
    the same peer ends after it (as gloo's pair of ranks does, benchmarks/pair_order.py),
    while the same small message from another host shares the link and ends at once."""
    import random

    from distbench.simulator.engine import Cluster, Ledger

    env = simpy.Environment()
    ledgers = [Ledger(0) for _ in range(3)]
    cluster = Cluster(spec("async", 3), env, random.Random(0), ledgers)
    link = cluster.link("host 1 down", RATE)
    ends: dict[str, float] = {}

    def send(name: str, pair: tuple[int, int], nbytes: float, at: float) -> Any:
        yield env.timeout(at)
        yield from cluster.send_messages(ledgers[pair[0]], [(pair, [(link, nbytes)])], False)
        ends[name] = env.now

    env.process(send("large", (0, 1), WEIGHTS, 0.0))
    env.process(send("same connection", (0, 1), WEIGHTS / 100, 0.1))
    env.process(send("other host", (2, 1), WEIGHTS / 100, 0.1))
    env.run()
    assert ends["other host"] == pytest.approx(0.1 + 2 * T_COMM / 100)
    assert ends["large"] == pytest.approx(T_COMM + T_COMM / 100)
    assert ends["same connection"] == pytest.approx(T_COMM + T_COMM / 100 + T_COMM / 100)


def test_a_sharded_units_reply_queues_behind_its_workers_push() -> None:
    """Two workers, unit 0 holding 90 % of the weights, compute 0.1 s, no send buffer.
    Worker 1 moves 90 % in, computes, moves 90 % out, and its pull's request (on the
    connection from host 1 to host 0) queues behind unit 1's 10 % reply to worker 0,
    asked for while worker 1's push was on that connection: a cycle of 0.9 + 0.1 + 0.1 +
    0.9 s. Worker 0 moves only 10 % each way, but its pull comes on the connection that
    carries worker 1's push and its push goes on the one that carries unit 0's reply to
    worker 1, so it waits its turn on both and keeps worker 1's pace. Sharing the links
    fairly instead, worker 0 would lap worker 1 (0.65 s: the mean step of 1/0.40 +
    1/1.9 steps a second)."""
    shards = (0.9 * WEIGHTS, 0.1 * WEIGHTS)
    fast = ComputeDraws(grad=0.1, backward_share=2 / 3)
    result = simulate(
        spec("async", 2, servers="sharded", shard_bytes=shards, compute=fast, steps=40)
    )
    worker_1_cycle = (0.9 + 0.1 + 0.9) * T_COMM + 0.1
    assert result.step_time == pytest.approx(worker_1_cycle, rel=0.02)


def _two_host_cluster(spec_: SimSpec) -> tuple[simpy.Environment, Cluster]:
    import random

    env = simpy.Environment()
    return env, Cluster(spec_, env, random.Random(0), [Ledger(0), Ledger(0)])


def _through_sharded_semaphore(
    direction: str,
    workers: list[int],
    units: int = 3,
    apart: float = 1e-9,
    send_buffer: float = 0.0,
    ready: Callable[[simpy.Environment], list[simpy.Event]] | None = None,
) -> tuple[dict[int, float], list[Ledger], dict[int, list[tuple[int, float]]]]:
    """``units`` units of an equal share of the weights each behind the semaphore;
    ``workers`` pull (``direction="pull"``) or push, in that order, each ``apart`` seconds
    after the one before (0: at the same moment), through connections whose send buffer
    may hold ``2 * send_buffer`` bytes, a pull from each unit once its ``ready`` event
    has fired (none: at once). When each was done, their ledgers, and the workers each
    unit let through with the moment their shard was posted."""
    import random

    shards = (WEIGHTS / units,) * units
    links = Links(up=RATE, down=RATE, send_buffer_max=send_buffer)
    spec_ = spec("async", units, servers="sharded", shard_bytes=shards, semaphore=True, links=links)
    env = simpy.Environment()
    ledgers = [Ledger(0) for _ in range(units)]
    cluster = Cluster(spec_, env, random.Random(0), ledgers)
    admission = Admission.of(cluster)
    ended: dict[int, float] = {}
    admitted: dict[int, list[tuple[int, float]]] = {unit: [] for unit in range(units)}
    post = cluster.post
    events = ready(env) if ready is not None else None

    def recording_post(pair: tuple[int, int], flows: list[Flow], *args: Any, **kw: Any) -> None:
        unit, worker = pair if direction == "pull" else pair[::-1]
        admitted[unit].append((worker, env.now))
        post(pair, flows, *args, **kw)

    cluster.post = recording_post  # type: ignore[method-assign]

    def message(src: int, dst: int, unit: int) -> Message:
        up, down = cluster.link(f"host {src} up", RATE), cluster.link(f"host {dst} down", RATE)
        return ((src, dst), [(up, shards[unit]), (down, shards[unit])])

    def transfer(i: int, delay: float) -> Generator[simpy.Event, Any, None]:
        yield env.timeout(delay)
        others = [j for j in range(units) if j != i]
        ledgers[i].begin(env.now)
        if direction == "pull":
            yield from admission.pull(ledgers[i], [message(j, i, j) for j in others], events)
        else:
            yield from admission.push(ledgers[i], [message(i, j, j) for j in others])
        ended[i] = env.now

    for k, i in enumerate(workers):
        env.process(transfer(i, k * apart))
    env.run()
    return ended, ledgers, admitted


def test_each_unit_of_a_sharded_server_admits_pulls_on_its_own() -> None:
    """Behind the semaphore, three units of a third of the weights each (1/3 s alone on a
    link), workers 0 and 1 pulling one just after the other: units 1 and 2 send to worker
    0, sharing its downlink (done at 2/3 s); unit 0 sends to worker 1 alone (1/3 s); unit
    2, busy with worker 0, lets worker 1 in at 2/3 s, done at 1 s. One gate for the whole
    server would have made worker 1 wait for worker 0's whole pull (done at 4/3 s)."""
    ended, ledgers, _ = _through_sharded_semaphore("pull", [0, 1])
    assert ended[0] == pytest.approx(2 / 3 * T_COMM)
    assert ended[1] == pytest.approx(1.0 * T_COMM)
    assert ledgers[1].parts["wait"] == pytest.approx(2 / 3 * T_COMM)


def test_pulls_reaching_the_units_at_once_race_for_each_unit_on_its_own() -> None:
    """Six workers pull from six units at the same moment (as a synchronous iteration
    releases them): every unit lets each of the other five through once, but the units
    draw their orders apart, so they do not all agree. Pulls a moment apart keep their
    arrival order at every unit."""
    workers = list(range(6))
    _, _, at_once = _through_sharded_semaphore("pull", workers, units=6, apart=0.0)
    orders = {unit: [w for w, _ in admitted] for unit, admitted in at_once.items()}
    for unit, order in orders.items():
        assert sorted(order) == [w for w in workers if w != unit]
    assert any(_disagree(orders[a], orders[b]) for a in orders for b in orders)
    _, _, in_turn = _through_sharded_semaphore("pull", workers, units=6)
    assert all([w for w, _ in a] == sorted(w for w, _ in a) for a in in_turn.values())


def test_a_unit_lets_the_next_pull_in_once_the_kernel_holds_the_last_one() -> None:
    """Workers 0 and 1 pull one just after the other from three units of a third of the
    weights each, through send buffers that hold a whole shard: unit 2 hands worker 0's
    shard to the kernel at once and lets worker 1 in then, not when the shard has arrived
    (1/3 s later), as the real unit's semaphore is released when its send returns. Every
    link with two shards on it shares its rate, so both pulls are done at 2/3 s (worker 1
    at 1 s when the unit waits for the delivery)."""
    ended, _, admitted = _through_sharded_semaphore("pull", [0, 1], send_buffer=WEIGHTS / 3)
    assert [w for w, _ in admitted[2]] == [0, 1]
    assert admitted[2][1][1] == pytest.approx(0.0, abs=1e-6)
    assert ended == pytest.approx({0: 2 / 3 * T_COMM, 1: 2 / 3 * T_COMM})


def test_the_central_server_lets_the_next_pull_in_once_the_kernel_holds_the_rest() -> None:
    """Two workers pull at once from a central server behind the semaphore, through send
    buffers that hold a quarter of the weights: worker 0's pull is alone for 3/4 s, then
    its send returns and the semaphore lets worker 1 in, the two sharing the server's
    link, so worker 0's last quarter arrives at 5/4 s; worker 1's pull still ends at 2 s.
    Where the probe measured that a send holds half of a message of the weights' size
    (more of it than of its large message), worker 1 is let in at 1/2 s and worker 0's
    pull ends at 3/2 s. Without a send buffer, or where the probe has not measured what a
    send holds (the kernel's grant alone), the semaphore waits for the delivery (1 s and
    2 s)."""
    import random

    def pulls_end(links: Links) -> dict[int, float]:
        env = simpy.Environment()
        ledgers = [Ledger(0) for _ in range(2)]
        cluster = Cluster(
            spec("sync-join", 2, semaphore=True, links=links), env, random.Random(0), ledgers
        )
        admission = Admission.of(cluster)
        ended: dict[int, float] = {}

        def pull(i: int) -> Generator[simpy.Event, Any, None]:
            ledgers[i].begin(env.now)
            out = cluster.link("server out", RATE)
            yield from admission.pull(ledgers[i], [(None, [(out, WEIGHTS)])])
            ended[i] = env.now

        for i in range(2):
            env.process(pull(i))
        env.run()
        return ended

    held = Links(up=RATE, down=RATE, send_buffer_max=WEIGHTS, send_held=WEIGHTS / 4)
    assert pulls_end(held) == pytest.approx({0: 1.25 * T_COMM, 1: 2.0 * T_COMM})
    of_weights = replace(held, send_held_weights=WEIGHTS / 2)
    assert pulls_end(of_weights) == pytest.approx({0: 1.5 * T_COMM, 1: 2.0 * T_COMM})
    on_delivery = {0: T_COMM, 1: 2.0 * T_COMM}
    assert pulls_end(Links(up=RATE, down=RATE)) == pytest.approx(on_delivery)
    granted = Links(up=RATE, down=RATE, send_buffer_max=WEIGHTS)
    assert pulls_end(granted) == pytest.approx(on_delivery)


def test_a_unit_sends_a_synchronous_pull_once_its_own_update_is_done() -> None:
    """A synchronous iteration's pull waits for each unit's own update, not for every
    unit's: unit 1 is ready at 0.5 s and sends its shard then (done at 5/6 s); unit 2 at
    2 s, and the pull is done when its shard is, at 7/3 s."""

    def ready(env: simpy.Environment) -> list[simpy.Event]:
        return [env.timeout(0.0), env.timeout(0.5), env.timeout(2.0)]

    ended, ledgers, admitted = _through_sharded_semaphore("pull", [0], ready=ready)
    assert admitted[1] == [(0, pytest.approx(0.5))]
    assert admitted[2] == [(0, pytest.approx(2.0))]
    assert ended[0] == pytest.approx(2.0 + T_COMM / 3)
    assert ledgers[0].parts["wait"] == pytest.approx(2.0)


def test_a_synchronous_sharded_server_behind_the_semaphore_is_pull_compute_push() -> None:
    """Two workers, each unit holding half the weights: each pulls the other's half on
    links of its own (1/2 s), computes, pushes the other half (1/2 s), and the next pull
    follows the other's push at once: a step of t_grad + t_comm, with or without a send
    buffer."""
    halves = (WEIGHTS / 2, WEIGHTS / 2)
    for buffer in (0.0, WEIGHTS):
        links = Links(up=RATE, down=RATE, send_buffer_max=buffer)
        gated = spec(
            "sync-join", 2, servers="sharded", shard_bytes=halves, semaphore=True, links=links
        )
        assert simulate(gated).step_time == pytest.approx(T_GRAD + T_COMM)


def _disagree(first: list[int], second: list[int]) -> bool:
    """Whether two admission orders put some pair of workers the other way round."""
    common = [w for w in first if w in second]
    return common != [w for w in second if w in common]


def test_a_push_behind_the_semaphore_waits_for_the_units_answers_in_their_order() -> None:
    """Three units of a third of the weights each (1/3 s alone on a link); workers 2 and
    0 push at once, worker 2 first. Worker 2 has units 0 and 1 at once and sends both
    shards over its uplink (done at 2/3 s). Worker 0 holds unit 2's turn from the start
    but waits for unit 1 first, its first in order, which worker 2 holds until 2/3 s;
    then it sends both shards, sharing its uplink, done at 4/3 s. Answers taken as they
    come would have had it done at 1 s."""
    ended, ledgers, _ = _through_sharded_semaphore("push", [2, 0], apart=0.0)
    assert ended[2] == pytest.approx(2 / 3 * T_COMM)
    assert ended[0] == pytest.approx(4 / 3 * T_COMM)
    assert ledgers[0].parts["wait"] == pytest.approx(2 / 3 * T_COMM)


def test_a_send_is_done_for_its_sender_once_the_kernel_holds_the_rest() -> None:
    """A 1 s message through a send buffer of half its bytes is handed over at 0.5 s and
    delivered at 1 s; a quarter-size one posted behind it is handed over once the one
    ahead is gone (the kernel's buffer then holds it whole) and delivered at 1.25 s, and
    a message of no bytes behind both (a request) is handed over and delivered as it
    reaches the head. Without a buffer a send is done when its last byte is delivered."""
    env, cluster = _two_host_cluster(spec("async", 2))
    flows: list[Flow] = [(cluster.link("host 0 up", RATE), WEIGHTS)]
    moments: dict[str, float] = {}

    def at(name: str) -> Callable[[], None]:
        return lambda: moments.__setitem__(name, env.now)

    cluster.post((0, 1), flows, WEIGHTS / 2, at("big handed"), at("big delivered"))
    small: list[Flow] = [(flows[0][0], WEIGHTS / 4)]
    cluster.post((0, 1), small, WEIGHTS / 2, at("small handed"), at("small delivered"))
    cluster.post((0, 1), [], WEIGHTS / 2, at("empty handed"), at("empty delivered"))
    bare: list[Flow] = [(cluster.link("host 1 up", RATE), WEIGHTS)]
    cluster.post((1, 0), bare, handed=at("bare handed"), delivered=at("bare delivered"))
    env.run()
    assert moments == pytest.approx(
        {
            "big handed": 0.5,
            "big delivered": 1.0,
            "small handed": 1.0,
            "small delivered": 1.25,
            "empty handed": 1.25,
            "empty delivered": 1.25,
            "bare handed": 1.0,
            "bare delivered": 1.0,
        }
    )


def test_a_pull_request_waits_for_the_units_notice_on_the_connection_back() -> None:
    """gloo sends a message once its receiver has said it is ready. Unit 1 says it will
    take worker 0's next request when worker 0's push request arrives (t = 0), on the
    connection from host 1 to host 0, behind worker 1's 0.9 s push to unit 0. Worker 0's
    push (0.1 s) is handed over at once, but its pull's request waits for that notice
    (0.9 s), and by then worker 1's second push, sent at 0.5 s, is ahead of the reply on
    that connection: the pull ends at 0.9 + 0.9 + 0.1 s. Were the request sent at once,
    it would arrive at 0.1 s and the reply end at 1.0 s."""
    shards = (0.9 * WEIGHTS, 0.1 * WEIGHTS)
    links = Links(up=RATE, down=RATE, send_buffer_max=WEIGHTS)
    env, cluster = _two_host_cluster(
        spec("async", 2, servers="sharded", shard_bytes=shards, links=links)
    )
    wires = ShardedWires(cluster)
    ends: dict[str, float] = {}

    def worker_0() -> Any:
        yield wires.push(0, [1])
        yield wires.pull(0, [1])
        ends["pull"] = env.now

    def worker_1() -> Any:
        yield wires.push(1, [0])
        yield env.timeout(0.5)
        yield wires.push(1, [0])

    env.process(worker_1())
    env.process(worker_0())
    env.run()
    assert ends["pull"] == pytest.approx((0.9 + 0.9 + 0.1) * T_COMM)


@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_async_central_server_lies_between_the_thesis_bounds(n: int) -> None:
    d = 10 * n
    jitter = ComputeDraws(T_GRAD, 2 / 3, samples=(1.6, 1.8, 2.0, 2.2, 2.4))
    result = simulate(spec("async", n, compute=jitter, steps=200))
    best = f.async_central_best(T_GRAD, T_COMM, n, d) / (d / n)
    worst = f.async_central_worst(T_GRAD, T_COMM, n, d) / (d / n)
    assert best * 0.99 <= result.step_time <= worst * 1.01
    if n == 1:
        assert result.step_time == pytest.approx(T_GRAD + 2 * T_COMM, rel=0.02)


@pytest.mark.parametrize("n", [1, 2, 4, 16])
def test_ddp_with_one_bucket_is_compute_then_the_ring(n: int) -> None:
    ring = RingAllReduce(alpha=1e-3, beta=RATE, bucket_bytes=2 * WEIGHTS)
    result = simulate(spec("ddp", n, ring=ring))
    t_ar = f.ring_allreduce_time(n, WEIGHTS, 1e-3, RATE)
    assert result.step_time == pytest.approx(f.ddp_step_time(T_GRAD, t_ar, 4 / 3, 0.0))


def test_ddp_buckets_hide_the_ring_behind_backward_as_the_formula_says() -> None:
    """When the ring is slower than backward it never idles after the first bucket, so
    the step is the formula's with the default overlap (alpha 0: one latency per ring)."""
    n, bucket = 8, WEIGHTS / 4
    ring = RingAllReduce(alpha=0.0, beta=RATE / 2, bucket_bytes=bucket)
    result = simulate(spec("ddp", n, ring=ring))
    t_ar = f.ring_allreduce_time(n, WEIGHTS, 0.0, RATE / 2)
    overlap = f.ddp_default_overlap(WEIGHTS, bucket)
    assert result.step_time == pytest.approx(f.ddp_step_time(T_GRAD, t_ar, 4 / 3, overlap))


@pytest.mark.parametrize(("stages", "micro"), [(1, 4), (2, 4), (4, 8), (8, 2)])
@pytest.mark.parametrize("schedule_name", ["gpipe", "1f1b"])
def test_pipelines_have_the_bubble_of_the_formula(
    stages: int, micro: int, schedule_name: str
) -> None:
    times = (0.5,) * stages
    result = simulate(spec(schedule_name, stages, pipeline=Pipeline(times, micro)))
    assert result.step_time == pytest.approx(f.gpipe_batch_time(times, micro))


@pytest.mark.parametrize(
    ("times", "micro"), [((0.3, 0.5, 0.2), 4), ((0.5, 0.1), 8), ((0.1, 0.2, 0.7, 0.1), 2)]
)
def test_unequal_stages_fill_with_their_own_time(times: tuple[float, ...], micro: int) -> None:
    """GPipe with unequal stages takes exactly the formula's ``(M - 1) · max + Σ``; 1F1B
    no more (stages 0.3, 0.5, 0.2 s and M = 4: 2.33 s against GPipe's 2.5)."""
    gpipe = simulate(spec("gpipe", len(times), pipeline=Pipeline(times, micro)))
    assert gpipe.step_time == pytest.approx(f.gpipe_batch_time(times, micro))
    one_f_one_b = simulate(spec("1f1b", len(times), pipeline=Pipeline(times, micro)))
    assert one_f_one_b.step_time <= f.one_f_one_b_batch_time(times, micro) + 1e-9
    if times == (0.3, 0.5, 0.2):
        assert one_f_one_b.step_time == pytest.approx(7 / 3)


def test_model_parallel_is_one_microbatch_through_every_stage() -> None:
    times = (0.3, 0.5, 0.2)
    result = simulate(spec("model-parallel", 3, pipeline=Pipeline(times, 8)))
    assert result.step_time == pytest.approx(sum(times))


@pytest.mark.parametrize("schedule_name", ["gpipe", "1f1b", "model-parallel"])
def test_one_simulated_pipeline_step_stands_for_every_step(schedule_name: str) -> None:
    """Uneven stages, activations that contend for the stages' links and an update after
    the flush: every step of the full simulation is the step ``simulate`` simulates once."""
    pipeline = Pipeline((0.3, 0.7, 0.2, 0.5), 6, activation_bytes=0.2 * RATE)
    changes = {"pipeline": pipeline, "compute": ComputeDraws(2.0, 2 / 3, 0.05)}
    once = simulate(spec(schedule_name, 4, **changes))
    every = run_every_step(spec(schedule_name, 4, **changes))
    assert once.step_time == pytest.approx(every.step_time, rel=1e-9)
    assert once.throughput == pytest.approx(every.throughput, rel=1e-9)
    for part in once.split:
        assert once.split[part] == pytest.approx(every.split[part], rel=1e-9, abs=1e-12)
    assert once.links.keys() == every.links.keys()
    for name, use in once.links.items():
        assert use["most_at_once"] == every.links[name]["most_at_once"]
        assert use["busy"] == pytest.approx(every.links[name]["busy"], rel=1e-9)


def test_1f1b_fills_then_alternates() -> None:
    assert schedule("1f1b", 3, 4, 0) == [
        ("F", 0), ("F", 1), ("F", 2), ("B", 0), ("F", 3), ("B", 1), ("B", 2), ("B", 3)
    ]  # fmt: skip
    assert schedule("1f1b", 3, 4, 2)[:4] == [("F", 0), ("B", 0), ("F", 1), ("B", 1)]


def test_buckets_hold_every_byte() -> None:
    assert bucket_sizes(10.0, 4.0) == [4.0, 4.0, 2.0]
    assert bucket_sizes(8.0, 4.0) == [4.0, 4.0]
    assert bucket_sizes(3.0, 4.0) == [3.0]


# --- what the formulas lack -------------------------------------------------------------


def test_a_synchronous_step_waits_for_the_slowest_of_n_draws() -> None:
    """Steps of 1 s or 2 s, no communication: two workers' iteration is their slower,
    1.75 s on average (expected_max), and the faster waits for it."""
    draws = ComputeDraws(1.5, 2 / 3, samples=(1.0, 2.0))
    result = simulate(spec("sync-join", 2, compute=draws, weight_bytes=1.0, steps=4000))
    assert result.step_time == pytest.approx(f.expected_max([1.0, 2.0], 2), rel=0.02)
    assert result.split["wait"] == pytest.approx(0.25, rel=0.1)


def test_a_semaphore_serializes_transfers_into_the_thesis_best_case() -> None:
    """Eq. 4.4 and 7.1-7.2: with one transfer admitted at a time the pulls queue (N
    t_comm), and each worker's push follows its compute while the next worker's pull is
    still queued, so the iteration is the thesis' best case, (N + 1) t_comm + t_grad."""
    n = 4
    gated = simulate(spec("sync-join", n, semaphore=True))
    assert gated.step_time == pytest.approx(f.sync_central_best(T_GRAD, T_COMM, n))
    assert gated.links["server out"]["most_at_once"] == 1
    waited = gated.split["wait"] + gated.split["comm"]
    assert f.semaphore_best(T_COMM, n) <= waited / 2 <= f.semaphore_worst(T_COMM, n)


def test_latency_and_protocol_cost_join_every_transfer() -> None:
    links = Links(up=RATE, down=RATE, latency=0.01, transfer_overhead=0.04)
    result = simulate(spec("sync-join", 2, links=links))
    assert result.step_time == pytest.approx(f.sync_central_worst(T_GRAD, T_COMM, 2) + 0.1)


def test_async_central_server_serializes_its_updates() -> None:
    slow = simulate(spec("async", 4, server_update=0.5, steps=50))
    assert slow.split["server"] > 0.5


def test_an_async_pull_waits_for_the_update_in_progress() -> None:
    """Two workers in a convoy behind a central server whose update (3 s) outlasts a
    pull: they pull and push together (2 s each on the shared links), compute 2 s, and
    the updates run one after the other; the first worker's next pull waits for the
    second's update under the read lock, so they pull together again 12 s after they
    began. (Were the pull not to wait, each worker's cycle would be 7 s.)"""
    assert simulate(spec("async", 2, server_update=3.0)).step_time == pytest.approx(12.0)


def test_a_queued_async_push_does_not_wait_for_the_update() -> None:
    """Behind the central semaphore the pushes queue (compute is short against a push)
    and go back to back, whatever update runs beside them: four a step."""
    short = ComputeDraws(grad=0.1, backward_share=2 / 3)
    for update in (0.0, 0.2):
        gated = simulate(spec("async", 4, compute=short, server_update=update, semaphore=True))
        assert gated.step_time == pytest.approx(4 * T_COMM)


def test_an_async_step_is_the_one_the_throughput_implies() -> None:
    """Workers whose mean steps are 1 s and 3 s move 1/1 + 1/3 batches a second: the
    mean step a measured run reports from its throughput is 2 / (4/3) = 1.5 s (the
    harmonic mean), not the workers' plain mean of 2 s."""
    import random

    from distbench.simulator.engine import Cluster, Ledger, _result

    fast, slow = Ledger(0), Ledger(0)
    for ledger, step in ((fast, 1.0), (slow, 3.0)):
        ledger.starts = [0.0, step, 2 * step]
        ledger.samples = 2 * 32
    env = simpy.Environment()
    env.run(until=6.0)
    cluster = Cluster(spec("async", 2, steps=2, warmup=0), env, random.Random(0), [fast, slow])
    result = _result(cluster)
    assert result.throughput == pytest.approx(32 / 1.0 + 32 / 3.0)
    assert result.step_time == pytest.approx(1.5)


def test_thousands_of_workers_simulate() -> None:
    result = simulate(spec("sync-join", 2048, servers="sharded", steps=3))
    assert result.step_time == pytest.approx(f.sync_distributed(T_GRAD, T_COMM, 2048))


def test_bad_specs_are_user_errors() -> None:
    from distbench.errors import UserError

    with pytest.raises(UserError, match="no model of 'nope'"):
        spec("nope", 2)
    with pytest.raises(UserError, match="workers"):
        spec("sync-join", 0)
    with pytest.raises(UserError, match="alpha and beta"):
        spec("ddp", 2)


# --- from a profile ---------------------------------------------------------------------


def _emulated_profile() -> Any:
    samples = [
        {"data": 0.01, "forward": 0.1 + 0.01 * i, "backward": 0.2, "update": 0.02} for i in range(5)
    ]
    return make_profile(network="bandwidth=1gbit", phase_samples=samples, ps_overhead=0.003)


def test_a_sharded_servers_send_buffers_come_from_the_profile_and_say_so() -> None:
    """The kernel's cap on a socket's send buffer is the profile's, where it has one,
    else this machine's; a sharded prediction says which, and so does a central
    semaphore's where the probe measured what a send holds."""
    cfg = RunConfig(
        model="m",
        strategy="ps-async",
        servers="sharded",
        workers=4,
        compute="profile",
        network="bandwidth=1gbit",
    )
    recorded = replace(_emulated_profile(), send_buffer_max=1 << 20)
    sim = simulate_case(case_of(cfg), recorded, steps=5)
    assert sim.spec.links.send_buffer_max == 1 << 20
    assert "send buffers up to 2 x 1 MiB (net.core.wmem_max, profile)" in sim.inputs
    older = simulate_case(case_of(cfg), _emulated_profile(), steps=5)
    assert older.spec.links.send_buffer_max == kernel_send_buffer_max()
    assert "this machine's" in older.inputs
    assert older.spec.links.send_held == 0.0 and "two-host probe" not in older.inputs
    probed = replace(recorded, send_held_bytes=1.5e6)
    sim = simulate_case(case_of(replace(cfg, ps_semaphore=True)), probed, steps=5)
    assert sim.spec.links.send_held == 1.5e6
    assert "holding 1.50 MB (two-host probe)" in sim.inputs
    synchronous = replace(cfg, strategy="ps-sync-join")
    assert "send buffers" in simulate_case(case_of(synchronous), probed, steps=5).inputs
    # a central server's sends matter only to its semaphore, and only where measured
    central = replace(synchronous, servers="central", ps_semaphore=True)
    assert "holding 1.50 MB" in simulate_case(case_of(central), probed, steps=5).inputs
    assert "send buffers" not in simulate_case(case_of(central), recorded, steps=5).inputs
    plain = replace(central, ps_semaphore=False)
    assert "send buffers" not in simulate_case(case_of(plain), probed, steps=5).inputs
    # a central server's one message is the weights: what the probe held of that size
    of_weights = replace(probed, send_held_weight_bytes=0.75e6)
    central_sim = simulate_case(case_of(central), of_weights, steps=5)
    assert central_sim.spec.links.send_held_weights == 0.75e6
    assert "holding 0.75 MB of the weights (two-host probe)" in central_sim.inputs
    sharded_sim = simulate_case(case_of(synchronous), of_weights, steps=5)
    assert "holding 1.50 MB (two-host probe)" in sharded_sim.inputs


def test_a_connection_holds_no_more_of_a_message_than_the_probe_measured() -> None:
    """The kernel grants twice the largest message, up to twice its cap; where the
    two-host probe measured what a send's buffer held, no more than that."""
    shards = (4e6, 1e6, 1e6)
    granted = Links(up=RATE, down=RATE, send_buffer_max=3e6)
    unprobed = spec("async", 3, servers="sharded", shard_bytes=shards, links=granted)
    assert send_buffer(unprobed, 1, 2) == 2e6
    assert send_buffer(unprobed, 0, 1) == 6e6
    probed = replace(unprobed, links=replace(granted, send_held=1.5e6))
    assert send_buffer(probed, 1, 2) == 1.5e6
    assert send_buffer(probed, 0, 1) == 1.5e6


def test_the_profile_backend_reads_what_the_formulas_read() -> None:
    profile = _emulated_profile()
    cfg = RunConfig(
        model="m", strategy="ps-sync-join", workers=4, compute="profile", network="bandwidth=1gbit"
    )
    sim = simulate_case(case_of(cfg), profile, steps=50)
    rate = profile.p2p.sizes[-1] / profile.p2p.seconds[-1]  # the sustained rate
    assert sim.spec.links.up == pytest.approx(rate)
    assert sim.spec.links.transfer_overhead == 0.003
    assert sorted(sim.spec.compute.samples) == pytest.approx([0.3 + 0.01 * i for i in range(5)])
    formulas = predict(case_of(cfg), profile, "formulas")
    assert formulas is not None
    # without jitter in when the workers push, the simulator is the formula's worst case
    assert sim.prediction.step_time <= formulas.step_time * 1.001
    assert sim.prediction.formula.startswith("simulator: sync-join, central server")


def test_the_simulator_predicts_pipelines_the_formulas_do_not() -> None:
    cfg = RunConfig(model="m", strategy="pipeline-gpipe", workers=2, compute="profile")
    profile = _emulated_profile()
    assert predict(case_of(cfg), profile, "formulas") is None
    assert predict(case_of(cfg), profile, "simulator") is not None


def test_the_bottleneck_names_the_busiest_link_in_words() -> None:
    comm = {"compute": 0.1, "comm": 0.9}
    one = {"host 3 up": {"busy": 0.8}, "host 0 down": {"busy": 0.4}}
    assert bottleneck(comm, one) == "the host 3 up link (80% busy)"
    every = {"each host down": {"busy": 0.51}, "each host up": {"busy": 0.5}}
    assert bottleneck(comm, every) == "each host down link (51% busy)"


def test_knee_is_right_for_linear_and_for_network_bound_scaling() -> None:
    def rows(speedups: dict[int, float]) -> list[SimRow]:
        return [
            SimRow("s", None, n, 1.0, 1.0, s, s / n, {}, "", {}, "") for n, s in speedups.items()
        ]

    linear = {n: float(n) for n in (1, 2, 4, 8, 1024, 4096)}
    assert knee(rows(linear), 0.1) == 4096
    flat = {1: 1.0, 2: 1.8, 4: 2.5, 8: 2.7, 16: 2.75}
    assert knee(rows(flat), 0.1) == 4  # 4 -> 8 adds 0.05 a worker
    assert knee(rows({8: 5.0}), 0.1) is None


# --- the command ------------------------------------------------------------------------


def test_simulate_from_given_timings_prints_rows_like_stored_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["simulate", "--model", "m", "--t-grad", "0.5", "--weight-bytes", "4e7"]
    argv += ["--network", "bandwidth=1gbit", "--strategy", "ddp,ps-async", "--workers", "1,4,16"]
    assert main([*argv, "--steps", "20", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = data["rows"]
    assert [(r["strategy"], r["workers"]) for r in rows] == [
        ("ddp", 1), ("ddp", 4), ("ddp", 16), ("ps-async", 1), ("ps-async", 4), ("ps-async", 16)
    ]  # fmt: skip
    assert all(r["step_time_median"] >= 0.5 - 1e-9 for r in rows)  # never below t_grad
    assert data["recommendation"]["strategy"] == "ddp"
    assert "low" in data["recommendation"]["confidence"]
    assert main([*argv, "--steps", "20", "--output", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("strategy,servers,workers")


def test_simulate_what_if_links_share_unequally(capsys: pytest.CaptureFixture[str]) -> None:
    """With the same compute every step an asynchronous server's workers stay in their
    first convoy on equal shares; ``--link-unfairness`` breaks it up, and says so."""
    argv = ["simulate", "--model", "m", "--t-grad", "0.05", "--weight-bytes", "1.25e7"]
    argv += ["--network", "bandwidth=1gbit", "--strategy", "ps-async", "--workers", "8"]
    steps = {}
    for u in ("0", "0.1"):
        assert main([*argv, "--steps", "60", "--link-unfairness", u, "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        steps[u] = data["rows"][0]["step_time_median"]
        assert ("what-if" in data["inputs"]) == (u != "0")
    assert steps["0.1"] < 0.9 * steps["0"]


def test_simulate_from_a_stored_profile(db_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_profile(db_path, _emulated_profile())
    argv = ["simulate", "--model", "m", "--db", str(db_path), "--strategy", "ps-sync-join"]
    assert main([*argv, "--workers", "1,2,4", "--steps", "10"]) == 0
    out = capsys.readouterr().out
    assert "profile 1 of m (links measured behind bandwidth=1gbit)" in out
    assert "recommendation" in out and "confidence: high" in out
    other = [*argv, "--workers", "1,2", "--steps", "5", "--network", "bandwidth=10gbit"]
    assert main(other) == 0
    out = capsys.readouterr().out
    assert "links 10gbit line rate" in out and "confidence: medium" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["simulate", "--model", "m", "--t-grad", "1", "--t-comm", "1", "--strategy", "nope"],
        ["simulate", "--model", "m", "--t-grad", "1", "--weight-bytes", "1e6", "--t-comm", "1",
         "--strategy", "ddp", "--workers", "0"],
        ["simulate", "--model", "m", "--strategy", "ddp"],  # no profile, no --t-grad
        ["simulate", "--model", "m", "--t-grad", "1", "--weight-bytes", "1e6", "--strategy",
         "ddp", "--network", "mtu=9000"],  # a spec without a rate
        ["simulate", "--model", "m", "--t-grad", "1", "--weight-bytes", "1e6", "--t-comm", "1",
         "--strategy", "ps-sync-split", "--workers", "64"],  # batch 32 split 64 ways
        ["simulate", "--model", "m", "--t-grad", "1", "--weight-bytes", "1e6", "--t-comm", "1",
         "--strategy", "ps-async", "--link-unfairness", "1"],  # a share could reach 0
    ],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main([*argv, "--db", str(tmp_path / "none.db")])
    except SystemExit as exc:
        code = int(exc.code or 0)
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "error" in err


def test_a_short_async_run_from_a_common_start_moves_in_a_convoy() -> None:
    """Workers that start together and share the server's link fairly pull together and
    push together for a while, as a synchronous iteration does; a long run's jitter
    breaks that up. ``simulate_run`` predicts the run as configured (its few steps), a
    long simulation the steady state."""
    samples = [
        {"data": 0.0, "forward": 0.1, "backward": 0.2 + 0.01 * i, "update": 0.0} for i in range(9)
    ]
    profile = make_profile(network="bandwidth=1gbit", phase_samples=samples, ps_overhead=0.0)
    cfg = RunConfig(
        model="m",
        strategy="ps-async",
        workers=8,
        compute="profile",
        network="bandwidth=1gbit",
        steps=4,
        warmup=2,
    )
    link = profile.weight_bytes * profile.p2p.seconds[-1] / profile.p2p.sizes[-1]
    as_run = simulate_run(case_of(cfg), profile)
    steady = simulate_case(case_of(cfg), profile, steps=2000).prediction
    in_step = 0.34 + 2 * 8 * link  # compute, then all 8 pulls, then all 8 pushes
    mixed = f.closed_cycle_time(8, 0.34, [link, link])  # the formulas' mean value analysis
    assert mixed < 0.7 * in_step
    assert as_run.step_time > 1.25 * steady.step_time  # most of a short run is the convoy
    # in the long run the workers mix, and the simulation reaches the queueing network's
    # mean cycle, which does not depend on the distribution of the times (BCMP)
    assert steady.step_time == pytest.approx(mixed, rel=0.05)
    assert "the run's 2 + 4 steps, mean of 10 simulations" in as_run.formula
    assert predict(case_of(cfg), profile, "simulator", as_run=True) == as_run


def test_a_model_that_leaves_workers_short_of_their_steps_is_reported_as_stalled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A model whose messages wait for each other ends with workers short of their steps;
    that is the simulator's bug, said as such, not a division by zero in the result."""
    from distbench.simulator import engine

    monkeypatch.setitem(engine.MODELS, "async", lambda cluster: None)
    with pytest.raises(RuntimeError, match="stalled: worker"):
        simulate(spec("async", 2))
