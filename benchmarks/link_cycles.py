"""Does a fluid link keep workers in step the way real TCP does? A closed loop of plain
transfers on an emulated network, beside the simulator's run of the same loop.

    sudo python benchmarks/link_cycles.py                      # 4 workers, 2.9 MB, 75 ms
    sudo python benchmarks/link_cycles.py --workers 8 --kilobytes 2910 --compute 0.075
    python benchmarks/link_cycles.py --simulate-only --unfairness 0,0.05,0.1

Each of ``--workers`` hosts repeats, ``--steps`` times: ask one hub for ``--kilobytes``
(a pull), receive them, sleep ``--compute`` seconds (±2 %, drawn), send as many bytes back
(a push) — an asynchronous parameter server's cycle with plain TCP sockets (no gloo, no
distbench protocol), every host behind a link of ``--network`` (default 1 Gbit/s, fair
queues). It prints each
worker's mean step after the first ``--warmup`` steps; how equally concurrent transfers
shared each of the hub's links (every stretch of at least ``MIN_SEGMENT`` seconds with the
same transfers in flight, each one's bytes as its receiver got them over the mean: the
spread of those shares, all steps included); the TCP segments the hosts retransmitted
and their retransmission timeouts over the loop (whether losses play a part); and the
simulator's mean step for
the same loop (the same bytes, compute draws and start; the link at the rate a lone
transfer of the emulated network sustains, ``--sustained``, with the network's shaper
bucket), the mean of ``--seeds``
simulations, and the bounds: one worker's own cycle, and the full convoy. ``--unfairness
U[,U...]``: the simulator's run with each transfer's share of a link weighted by a draw
from ``[1 - U, 1 + U]`` (``Links.unfairness``, a what-if; default 0, equal shares);
``--simulate-only``: no emulated network, only the simulator's rows.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import random
import statistics
import subprocess
import sys
from dataclasses import dataclass
from statistics import fmean

from distbench.netem.namespaces import emulated_network
from distbench.netem.spec import parse_network
from distbench.predict.simulated import shaper_burst
from distbench.simulator import ComputeDraws, Links, SimSpec, simulate

PORT = 5602
JITTER = 0.02

HUB = f"""
import json, socket, sys, threading, time
workers, nbytes, steps = (int(a) for a in sys.argv[1:4])
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", {PORT}))
server.listen(64)
print("ready", flush=True)
block = b"x" * nbytes
pushes = []
def serve(conn):
    for _ in range(steps):
        conn.recv(1)
        conn.sendall(block)
        left, chunks = nbytes, []
        while left > 0:
            got = len(conn.recv(min(left, 1 << 20)))
            left -= got
            chunks.append((time.time(), got))
        pushes.append(chunks)
    conn.close()
threads = [threading.Thread(target=serve, args=(server.accept()[0],)) for _ in range(workers)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(pushes), flush=True)
"""

WORKER = f"""
import json, random, socket, sys, time
address, nbytes, steps, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
compute, seed = float(sys.argv[5]), int(sys.argv[6])
draw = random.Random(seed)
conn = socket.create_connection((address, {PORT}))
block = b"x" * nbytes
marks, pulls = [], []
for _ in range(steps):
    marks.append(time.perf_counter())
    conn.sendall(b"p")
    left, chunks = nbytes, []
    while left > 0:
        got = len(conn.recv(min(left, 1 << 20)))
        left -= got
        chunks.append((time.time(), got))
    pulls.append(chunks)
    time.sleep(compute * draw.uniform(1 - {JITTER}, 1 + {JITTER}))
    conn.sendall(block)
marks.append(time.perf_counter())
print((marks[-1] - marks[warmup]) / (steps - warmup), flush=True)
print(json.dumps(pulls), flush=True)
"""


def simulated_step(args: argparse.Namespace, rate: float, unfairness: float) -> list[float]:
    """The simulator's mean step of the same loop, one per seed."""
    draw = random.Random(0)
    samples = tuple(args.compute * draw.uniform(1 - JITTER, 1 + JITTER) for _ in range(100))
    steps = []
    for seed in range(args.seeds):
        spec = SimSpec(
            strategy="async",
            workers=args.workers,
            compute=ComputeDraws(args.compute, 2 / 3, 0.0, samples),
            links=Links(
                rate,
                rate,
                burst=shaper_burst(args.network),
                fair_queues=parse_network(args.network).queue == "fair",
                unfairness=unfairness,
            ),
            weight_bytes=args.kilobytes * 1e3,
            samples_per_step=1,
            steps=args.steps - args.warmup,
            warmup=args.warmup,
            seed=seed,
        )
        steps.append(simulate(spec).step_time)
    return steps


#: One transfer as its receiver saw it: (wall time, bytes) of every chunk received.
Transfer = list[tuple[float, int]]
#: The shortest stretch with the same transfers in flight whose shares are compared.
MIN_SEGMENT = 0.2


@dataclass
class LoopRun:
    """The loop on the emulated network: every worker's mean step, every pull (the hub's
    outgoing link) and push (its incoming link) as received, and the TCP segments every
    host retransmitted and its retransmission timeouts over the loop."""

    steps: list[float]
    pulls: list[Transfer]
    pushes: list[Transfer]
    retransmits: int
    timeouts: int


def tcp_counters(namespaces: list[str]) -> tuple[int, int]:
    """(retransmitted segments, retransmission timeouts) summed over ``namespaces``, from
    each one's own ``/proc/net/snmp`` and ``/proc/net/netstat``."""
    retransmits = timeouts = 0
    for namespace in namespaces:
        for name, group, field in (
            ("snmp", "Tcp:", "RetransSegs"),
            ("netstat", "TcpExt:", "TCPTimeouts"),
        ):
            text = subprocess.run(
                ["ip", "netns", "exec", namespace, "cat", f"/proc/net/{name}"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            header, values = [line.split() for line in text.splitlines() if line.startswith(group)]
            count = int(values[header.index(field)])
            if field == "RetransSegs":
                retransmits += count
            else:
                timeouts += count
    return retransmits, timeouts


def measured_loop(args: argparse.Namespace) -> LoopRun:
    """The loop on the emulated network."""
    spec = parse_network(args.network)
    nbytes = str(int(args.kilobytes * 1e3))
    with emulated_network(spec, args.workers + 1) as net:
        hub, *hosts = net.hosts
        namespaces = [host.namespace for host in net.hosts]
        before = tcp_counters(namespaces)
        hub_args = [str(args.workers), nbytes, str(args.steps)]
        hub_proc = subprocess.Popen(
            [*hub.exec_prefix(), sys.executable, "-c", HUB, *hub_args],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert hub_proc.stdout is not None
        hub_proc.stdout.readline()  # listening
        workers = [
            subprocess.Popen(
                [
                    *host.exec_prefix(),
                    sys.executable,
                    "-c",
                    WORKER,
                    hub.address,
                    nbytes,
                    *(str(a) for a in (args.steps, args.warmup, args.compute, i)),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for i, host in enumerate(hosts)
        ]
        outputs = [w.communicate(timeout=600)[0].splitlines() for w in workers]
        pushes = json.loads(hub_proc.communicate(timeout=60)[0])
        after = tcp_counters(namespaces)
    pulls = [transfer for out in outputs for transfer in json.loads(out[1])]
    return LoopRun(
        [float(out[0]) for out in outputs],
        pulls,
        pushes,
        after[0] - before[0],
        after[1] - before[1],
    )


def received_by(transfer: Transfer, moment: float) -> float:
    """Bytes of ``transfer`` received by ``moment`` (linear between its chunks)."""
    times = [t for t, _ in transfer]
    totals = list(itertools.accumulate(n for _, n in transfer))
    k = bisect.bisect_left(times, moment)
    if k == 0:
        return 0.0
    if k == len(times):
        return float(totals[-1])
    t0, t1, b0 = times[k - 1], times[k], totals[k - 1]
    return b0 + (totals[k] - b0) * (moment - t0) / (t1 - t0)


def relative_shares(transfers: list[Transfer]) -> list[float]:
    """How equally one link's transfers shared it: over every stretch of at least
    ``MIN_SEGMENT`` seconds with the same two or more transfers in flight, each one's
    bytes over the stretch against their mean (1: an equal share)."""
    spans = [(t[0][0], t[-1][0], t) for t in transfers if len(t) > 1]
    moments = sorted({m for a, b, _ in spans for m in (a, b)})
    shares: list[float] = []
    for a, b in itertools.pairwise(moments):
        if b - a < MIN_SEGMENT:
            continue
        moved = [received_by(t, b) - received_by(t, a) for s, e, t in spans if s <= a and e >= b]
        if len(moved) >= 2 and sum(moved) > 0:
            shares += [m * len(moved) / sum(moved) for m in moved]
    return shares


def print_shares(name: str, transfers: list[Transfer]) -> None:
    shares = sorted(relative_shares(transfers))
    if len(shares) < 2:
        print(f"  {name}: no stretch of {MIN_SEGMENT:g} s with two transfers in flight")
        return
    low, high = shares[len(shares) // 20], shares[-1 - len(shares) // 20]
    print(
        f"  {name}: shares of concurrent transfers, standard deviation "
        f"{statistics.pstdev(shares):.1%}, 5-95 % {low:.2f}-{high:.2f} ({len(shares)} shares)"
    )


def unfairness_levels(text: str) -> list[float]:
    """``--unfairness``'s values; empty when one is not a number in [0, 1)."""
    try:
        levels = [float(u) for u in text.split(",")]
    except ValueError:
        return []
    return levels if all(0.0 <= u < 1.0 for u in levels) else []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", default="bandwidth=1gbit,queue=fair")
    parser.add_argument("--sustained", type=float, default=119.4e6, help="bytes/s")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--kilobytes", type=float, default=2910.0)
    parser.add_argument("--compute", type=float, default=0.075)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--unfairness", default="0")
    parser.add_argument("--simulate-only", action="store_true")
    args = parser.parse_args()
    levels = unfairness_levels(args.unfairness)
    if not 0 <= args.warmup < args.steps or args.workers < 1 or args.kilobytes <= 0 or not levels:
        print(
            "link_cycles: need 0 <= --warmup < --steps, --workers >= 1, --kilobytes > 0,"
            " --unfairness values in [0, 1)",
            file=sys.stderr,
        )
        return 2
    transfer = args.kilobytes * 1e3 / args.sustained
    ms = 1e3
    print(
        f"{args.workers} workers, {args.kilobytes:g} kB each way, {args.compute * ms:g} ms "
        f"compute, --network {args.network}, steps {args.warmup + 1}-{args.steps}:"
    )
    if not args.simulate_only:
        run = measured_loop(args)
        print(
            f"  measured mean step: {fmean(run.steps) * ms:.1f} ms "
            f"(workers {min(run.steps) * ms:.1f}-{max(run.steps) * ms:.1f}); TCP over the "
            f"loop: {run.retransmits} segments retransmitted, {run.timeouts} timeouts"
        )
        print_shares("pulls (hub's outgoing link)", run.pulls)
        print_shares("pushes (hub's incoming link)", run.pushes)
    for u in levels:
        simulated = simulated_step(args, args.sustained, u)
        label = "simulated:" if u == 0 else f"simulated, u={u:g}:"
        print(
            f"  {label:19} {fmean(simulated) * ms:.1f} ms "
            f"(seeds {min(simulated) * ms:.1f}-{max(simulated) * ms:.1f})"
        )
    print(
        f"  own cycle {(2 * transfer + args.compute) * ms:.1f} ms, full convoy "
        f"{(2 * args.workers * transfer + args.compute) * ms:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
