"""Does an emulated link give its rate to many flows at once? Plain TCP bulk transfers
between emulated hosts (no gloo, no distbench protocol), to tell the links' physics from
what the training protocols make of them.

    sudo python benchmarks/link_flows.py                  # 100mbit, 25 MB per pattern
    sudo python benchmarks/link_flows.py --rate 1gbit
    sudo python benchmarks/link_flows.py --rate 1gbit --queue fair

Three patterns, each moving ``--megabytes`` in all and printing the aggregate rate:
``k flows 1 -> 1`` (one host to another over k connections at once: a sharded worker's
link, or a central server's), ``k hosts -> 1`` (k hosts sending at once into one
host's link: the pushes into a central server) and ``1 -> k hosts`` (one host sending to
k hosts at once: a central server's pulls), each with the spread of its flows' ends
(equal flows started together end together on a fairly shared link). Each host's link is
shaped in both directions as ``--network`` builds it (``--queue``: its ``queue=`` key);
the packets the shaper dropped on the way into the receiving host are counted (``tc -s
qdisc``).

Then short transfers after idle (``--short-kilobytes`` each, the size of a small model's
push or a shard): ``k hosts -> 1`` and ``1 -> k hosts`` at once, each round after 0.3 s of
idle (the shapers' buckets refill), started together by a byte from the hub; the rate is
the bytes over the time from that start to the last byte. A link that keeps its rate gives
at most its rate plus one bucket (64 KiB at 100 Mbit/s) per round.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys

from distbench.netem.namespaces import Host, Network, emulated_network, run_cmd
from distbench.netem.spec import parse_network

PORT = 5601

RECEIVER = f"""
import socket, sys, threading, time
flows = int(sys.argv[1])
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", {PORT}))
server.listen(64)
print("ready", flush=True)
first = []
ends = []
def drain(conn):
    data = conn.recv(1 << 20)
    first.append(time.perf_counter())
    while data:
        data = conn.recv(1 << 20)
    ends.append(time.perf_counter())
    conn.close()  # the sender's clock stops here: everything was delivered
threads = []
for _ in range(flows):
    conn, _ = server.accept()
    threads.append(threading.Thread(target=drain, args=(conn,)))
    threads[-1].start()
for t in threads:
    t.join()
start, last = min(first), max(ends)
print(last - start, start, last, *(end - start for end in sorted(ends)), flush=True)
"""

SENDER = f"""
import socket, sys, threading, time
address, flows, nbytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
chunk = b"x" * (1 << 20)
conns = [socket.create_connection((address, {PORT})) for _ in range(flows)]
def send(conn, left):
    while left > 0:
        conn.sendall(chunk[: min(left, len(chunk))])
        left -= len(chunk)
    conn.shutdown(socket.SHUT_WR)
    conn.recv(1)  # until the receiver has drained it all (sendall only filled the buffer)
start = time.perf_counter()
threads = [threading.Thread(target=send, args=(c, nbytes // flows)) for c in conns]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(time.perf_counter() - start)
"""


HUB = f"""
import socket, sys, threading, time
peers, nbytes, rounds = (int(a) for a in sys.argv[1:4])
direction = sys.argv[4]
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", {PORT}))
server.listen(64)
print("ready", flush=True)
conns = [server.accept()[0] for _ in range(peers)]
block = b"x" * nbytes
def take(conn, size):
    while size > 0:
        size -= len(conn.recv(min(size, 1 << 20)))
def serve(conn):
    if direction == "in":
        take(conn, nbytes)
    else:
        conn.sendall(block)
        take(conn, 1)  # the peer has it all
for _ in range(rounds):
    time.sleep(0.3)
    start = time.perf_counter()
    threads = [threading.Thread(target=serve, args=(c,)) for c in conns]
    for c in conns:
        c.sendall(b"g")
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(time.perf_counter() - start, flush=True)
"""

PEER = """
import socket, sys
address, direction = sys.argv[1], sys.argv[5]
port, nbytes, rounds = (int(a) for a in sys.argv[2:5])
conn = socket.create_connection((address, port))
block = b"x" * nbytes
for _ in range(rounds):
    conn.recv(1)
    if direction == "in":
        conn.sendall(block)
    else:
        left = nbytes
        while left > 0:
            left -= len(conn.recv(min(left, 1 << 20)))
        conn.sendall(b"d")
"""


def short_rounds(
    hub: Host, peers: list[Host], nbytes: int, rounds: int, direction: str
) -> list[float]:
    """Seconds of each round in which every peer sends ``nbytes`` to ``hub`` (``in``) or
    ``hub`` sends ``nbytes`` to every peer (``out``), all started by one byte from the hub
    after 0.3 s of idle."""
    args = [str(len(peers)), str(nbytes), str(rounds), direction]
    hub_proc = subprocess.Popen(
        [*hub.exec_prefix(), sys.executable, "-c", HUB, *args], stdout=subprocess.PIPE, text=True
    )
    assert hub_proc.stdout is not None
    hub_proc.stdout.readline()  # listening
    peer_args = [hub.address, str(PORT), str(nbytes), str(rounds), direction]
    peer_procs = [
        subprocess.Popen([*p.exec_prefix(), sys.executable, "-c", PEER, *peer_args]) for p in peers
    ]
    seconds = [float(hub_proc.stdout.readline()) for _ in range(rounds)]
    for peer in peer_procs:
        peer.wait(timeout=60)
    hub_proc.wait(timeout=60)
    return seconds


def dropped_into(net: Network, host: Host) -> int:
    """Packets the shaper of ``host``'s incoming direction (its bridge port) has dropped."""
    out = run_cmd(
        "tc", "-n", net.bridge_namespace, "-s", "qdisc", "show", "dev", f"dbn-v{host.index}"
    )
    return sum(int(n) for n in re.findall(r"dropped (\d+)", out.stdout))


def transfer(
    sink: Host, sources: list[Host], flows_each: int, nbytes: int
) -> tuple[float, list[float]]:
    """Seconds from the first byte to the last arriving at ``sink`` while every source
    sends its share of ``nbytes`` (the receiver's clock: senders start at different times),
    and each flow's own end from that first byte."""
    receiver = subprocess.Popen(
        [*sink.exec_prefix(), sys.executable, "-c", RECEIVER, str(flows_each * len(sources))],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert receiver.stdout is not None
    receiver.stdout.readline()  # listening
    share = str(nbytes // len(sources))
    senders = [
        subprocess.Popen(
            [*h.exec_prefix(), sys.executable, "-c", SENDER, sink.address, str(flows_each), share],
            stdout=subprocess.PIPE,
            text=True,
        )
        for h in sources
    ]
    for sender in senders:
        sender.communicate(timeout=120)
    seconds, _, _, *ends = (float(v) for v in receiver.stdout.readline().split())
    receiver.wait(timeout=60)
    return seconds, ends


def fan_out(source: Host, sinks: list[Host], nbytes: int) -> tuple[float, list[float]]:
    """One host sending ``nbytes / k`` to each of ``k`` hosts at once: seconds from the
    first byte in anywhere to the last byte in anywhere, and each flow's own seconds from
    that first byte to its last (the receivers share this machine's monotonic clock)."""
    receivers = [
        subprocess.Popen(
            [*sink.exec_prefix(), sys.executable, "-c", RECEIVER, "1"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for sink in sinks
    ]
    for receiver in receivers:
        assert receiver.stdout is not None
        receiver.stdout.readline()  # listening
    share = str(nbytes // len(sinks))
    senders = [
        subprocess.Popen(
            [*source.exec_prefix(), sys.executable, "-c", SENDER, sink.address, "1", share],
            stdout=subprocess.PIPE,
            text=True,
        )
        for sink in sinks
    ]
    for sender in senders:
        sender.communicate(timeout=120)
    marks = []
    for receiver in receivers:
        assert receiver.stdout is not None
        _, first, last, *_ = (float(v) for v in receiver.stdout.readline().split())
        receiver.wait(timeout=60)
        marks.append((first, last))
    start = min(first for first, _ in marks)
    ends = sorted(last - start for _, last in marks)
    return ends[-1], ends


def spread(ends: list[float], last: float) -> str:
    """The flows' ends as fractions of the last one's, e.g. ``0.39-1.00``."""
    return f"{min(ends) / last:.2f}-{max(ends) / last:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", default="100mbit")
    parser.add_argument("--megabytes", type=float, default=25.0)
    parser.add_argument("--queue", choices=("fifo", "fair"), default="fifo")
    parser.add_argument("--short-kilobytes", type=float, default=250.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    nbytes = int(args.megabytes * 1e6)
    spec = parse_network(f"bandwidth={args.rate},queue={args.queue}")
    assert spec.rate_bit_s is not None
    line_rate = spec.rate_bit_s / 8
    with emulated_network(spec, 9) as net:
        sink, *others = net.hosts
        print(
            f"{args.rate} ({line_rate / 1e6:.2f} MB/s), {args.queue} queues,"
            f" {args.megabytes:g} MB per transfer; flows' ends as fractions of the last"
        )
        for pattern, cases in (
            ("flows 1 -> 1", [(1, k) for k in (1, 2, 4, 8, 16)]),
            ("hosts -> 1", [(k, 1) for k in (1, 2, 4, 8)]),
        ):
            for hosts, flows in cases:
                before = dropped_into(net, sink)
                seconds, ends = transfer(sink, others[:hosts], flows, nbytes)
                rate = nbytes / seconds
                print(
                    f"  {max(hosts, flows):2d} {pattern}: {seconds:.3f} s, {rate / 1e6:.2f} MB/s,"
                    f" {rate / line_rate:.2f} of the line rate, "
                    f"{dropped_into(net, sink) - before} packets dropped into the receiver;"
                    f" ends {spread(ends, seconds)}"
                )
        for k in (1, 2, 4, 8):
            seconds, ends = fan_out(sink, others[:k], nbytes)
            rate = nbytes / seconds
            print(
                f"  {k:2d} 1 -> hosts: {seconds:.3f} s, {rate / 1e6:.2f} MB/s,"
                f" {rate / line_rate:.2f} of the line rate; ends {spread(ends, seconds)}"
            )
        short = int(args.short_kilobytes * 1e3)
        print(f"short transfers of {args.short_kilobytes:g} kB after idle, median of {args.rounds}")
        for direction, label in (("in", "hosts -> 1"), ("out", "1 -> hosts")):
            for k in (1, 3, 7):
                rounds = short_rounds(sink, others[:k], short, args.rounds, direction)
                rate = k * short / statistics.median(rounds)
                print(
                    f"  {k:2d} {label}: {statistics.median(rounds) * 1e3:.1f} ms,"
                    f" {rate / 1e6:.2f} MB/s, {rate / line_rate:.2f} of the line rate"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
