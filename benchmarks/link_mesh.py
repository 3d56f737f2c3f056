"""Can this machine keep every emulated link at its rate at once? Plain TCP from every
host to every other at the same moment (a sharded parameter server's traffic), no gloo.

    sudo python benchmarks/link_mesh.py                        # 1 Gbit/s, 2..8 hosts
    sudo python benchmarks/link_mesh.py --network bandwidth=100mbit,queue=fair --megabytes 5

For each host count k of ``--hosts``, every host sends ``--megabytes`` to each of the k − 1
others at once (k(k − 1) connections), so every host's uplink and downlink carries
(k − 1) · M. A machine that keeps up ends it in (k − 1) · M / rate; the rate printed is
each host's link's bytes over the time to the last byte, as a share of the line rate.
Beside it, the machine's CPU over the transfer from ``/proc/stat`` (every namespace shares
the kernel): the busy share of all cores, and the part in softirq (the bridge's and the
veths' forwarding, the shapers), which no process is charged for — what the emulation's
own check of a run's process CPU cannot see.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from distbench.netem.namespaces import emulated_network
from distbench.netem.spec import parse_network

PORT = 5604

HOST = f"""
import socket, sys, threading, time
me, peers = int(sys.argv[1]), sys.argv[2].split(",")
nbytes, at = int(sys.argv[3]), float(sys.argv[4])
others = [a for i, a in enumerate(peers) if i != me]
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", {PORT}))
server.listen(64)
def drain(conn):
    while conn.recv(1 << 20):
        pass
    conn.close()
def accept():
    threads = []
    for _ in others:
        threads.append(threading.Thread(target=drain, args=(server.accept()[0],)))
        threads[-1].start()
    for t in threads:
        t.join()
acceptor = threading.Thread(target=accept)
acceptor.start()
time.sleep(max(0.0, at - 1.0 - time.time()))
conns = []
for address in others:
    for _ in range(100):
        try:
            conns.append(socket.create_connection((address, {PORT})))
            break
        except ConnectionRefusedError:
            time.sleep(0.02)
chunk = b"x" * (1 << 20)
def send(conn):
    left = nbytes
    while left > 0:
        conn.sendall(chunk[: min(left, len(chunk))])
        left -= len(chunk)
    conn.shutdown(socket.SHUT_WR)
    conn.recv(1)  # the peer drained it all
time.sleep(max(0.0, at - time.time()))
start = time.time()
senders = [threading.Thread(target=send, args=(c,)) for c in conns]
for t in senders:
    t.start()
for t in senders:
    t.join()
acceptor.join()
print(start, time.time(), flush=True)
"""


def cpu_times() -> list[int]:
    with open("/proc/stat") as stat:
        return [int(v) for v in stat.readline().split()[1:]]


def mesh(args: argparse.Namespace, hosts: int) -> tuple[float, float, float]:
    """(seconds to the last byte, busy share of all cores, softirq share) for one mesh."""
    spec = parse_network(args.network)
    nbytes = int(args.megabytes * 1e6)
    with emulated_network(spec, hosts) as net:
        addresses = ",".join(h.address for h in net.hosts)
        at = time.time() + 3.0
        procs = [
            subprocess.Popen(
                [
                    *h.exec_prefix(),
                    sys.executable,
                    "-c",
                    HOST,
                    *(str(i), addresses),
                    *(str(nbytes), str(at)),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for i, h in enumerate(net.hosts)
        ]
        time.sleep(max(0.0, at - time.time()))
        before = cpu_times()
        outputs = [p.communicate(timeout=600)[0].split() for p in procs]
        after = cpu_times()
    starts, ends = [float(o[0]) for o in outputs], [float(o[1]) for o in outputs]
    spent = [b - a for a, b in zip(before, after, strict=True)]
    idle = spent[3] + spent[4]  # idle, iowait
    total = sum(spent[:8])  # user nice system idle iowait irq softirq steal
    return max(ends) - min(starts), 1 - idle / total, spent[6] / total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", default="bandwidth=1gbit,queue=fair")
    parser.add_argument("--megabytes", type=float, default=40.0, help="per pair (40)")
    parser.add_argument("--hosts", default="2,3,4,6,8")
    args = parser.parse_args()
    rate_bits = parse_network(args.network).rate_bit_s
    if rate_bits is None:
        raise SystemExit("--network needs a rate")
    rate = rate_bits / 8
    print(
        f"{'hosts':>5} {'each link MB':>12} {'seconds':>8} {'of line rate':>12}"
        f" {'cpu busy':>8} {'softirq':>8}"
    )
    for k in (int(h) for h in args.hosts.split(",")):
        seconds, busy, softirq = mesh(args, k)
        per_link = (k - 1) * args.megabytes * 1e6
        print(
            f"{k:>5} {per_link / 1e6:>12.0f} {seconds:>8.2f} {per_link / seconds / rate:>12.2f}"
            f" {busy:>8.2f} {softirq:>8.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
