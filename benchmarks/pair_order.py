"""Do two gloo messages to the same peer share the link, or does the second wait for the
first? One connection per pair of ranks would make it wait (head-of-line blocking).

    sudo python benchmarks/pair_order.py                       # 100 Mbit/s, 4 MB then 40 kB
    sudo python benchmarks/pair_order.py --network bandwidth=1gbit,queue=fair --big-kb 40000

Two emulated hosts, one gloo process each. Rank 0 posts an ``isend`` of ``--big-kb``
(tag 14, as a PS push) and ``--gap-ms`` later, from a second thread, an ``isend`` of
``--small-kb`` (tag 13, as a sharded unit's reply, which a rank that is worker and unit at
once sends from its server thread); rank 1 has both ``irecv`` posted before either send.
It prints, per round, when each message arrived at rank 1 (ms after the big one was
posted) beside what each would take alone at the link's rate, and what it would take if
the two shared the link fairly (the simulator's fluid links) or if the small one queued
behind the big one (one ordered stream). The median over ``--rounds`` decides.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from statistics import median

from distbench.netem.namespaces import emulated_network
from distbench.netem.spec import parse_network

PORT = 5603

RANK = """
import json, os, sys, threading, time
import torch, torch.distributed as dist
rank, master, big, small, gap, rounds = (
    int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]),
    float(sys.argv[5]), int(sys.argv[6]),
)
dist.init_process_group(
    "gloo", init_method=f"tcp://{master}:PORT", rank=rank, world_size=2
)
big_t = torch.ones(big // 4)
small_t = torch.ones(small // 4)
out = []
for _ in range(rounds):
    if rank == 1:
        got_small = dist.irecv(small_t, src=0, tag=13)
        got_big = dist.irecv(big_t, src=0, tag=14)
    dist.barrier()  # both receives posted before anything is sent
    t0 = time.perf_counter()
    if rank == 0:
        first = dist.isend(big_t, dst=1, tag=14)
        def later():
            time.sleep(gap)
            dist.isend(small_t, dst=1, tag=13).wait()
        thread = threading.Thread(target=later)
        thread.start()
        first.wait()
        thread.join()
    else:
        marks = {}
        def watch(name, work):
            work.wait()
            marks[name] = time.perf_counter() - t0
        threads = [
            threading.Thread(target=watch, args=(n, w))
            for n, w in (("small", got_small), ("big", got_big))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out.append(marks)
    dist.barrier()
if rank == 1:
    print(json.dumps(out), flush=True)
dist.barrier()
dist.destroy_process_group()
""".replace("PORT", str(PORT))


def on_two_hosts(network: str, program: str, argv: list[str]) -> list[str]:
    """Run ``program`` (Python source) as rank 0 and rank 1 on two emulated hosts behind
    ``network``, each given ``rank master *argv``; their standard outputs."""
    return on_hosts(network, 2, program, argv)


def on_hosts(network: str, hosts: int, program: str, argv: list[str]) -> list[str]:
    """Run ``program`` (Python source) as ranks 0 .. ``hosts`` - 1, one per emulated host
    behind ``network``, each given ``rank master *argv``; their standard outputs."""
    with emulated_network(parse_network(network), hosts) as net:
        master = net.hosts[0].address
        ifname = f"GLOO_SOCKET_IFNAME={net.hosts[0].ifname}"
        python = [sys.executable, "-c", program]
        procs = [
            subprocess.Popen(
                [*host.exec_prefix(), "env", ifname, *python, str(rank), master, *argv],
                stdout=subprocess.PIPE,
                text=True,
            )
            for rank, host in enumerate(net.hosts)
        ]
        outputs = [p.communicate(timeout=600)[0] for p in procs]
        if any(p.returncode for p in procs):
            raise SystemExit("a rank failed; see its stderr above")
    return outputs


def run_rounds(args: argparse.Namespace) -> list[dict[str, float]]:
    argv = [
        str(int(args.big_kb * 1e3)),
        str(int(args.small_kb * 1e3)),
        str(args.gap_ms / 1e3),
        str(args.rounds),
    ]
    return list(json.loads(on_two_hosts(args.network, RANK, argv)[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", default="bandwidth=100mbit,queue=fair")
    parser.add_argument("--big-kb", type=float, default=4000.0)
    parser.add_argument("--small-kb", type=float, default=40.0)
    parser.add_argument("--gap-ms", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rate_bits = parse_network(args.network).rate_bit_s
    if rate_bits is None:
        raise SystemExit("--network needs a rate")
    rate = rate_bits / 8
    rounds = run_rounds(args)
    for i, marks in enumerate(rounds):
        print(
            f"round {i}: small at {marks['small'] * 1e3:7.1f} ms,"
            f" big at {marks['big'] * 1e3:7.1f} ms"
        )
    big_s, small_s, gap = args.big_kb * 1e3 / rate, args.small_kb * 1e3 / rate, args.gap_ms / 1e3
    print(f"alone at the rate: big {big_s * 1e3:.1f} ms, small {small_s * 1e3:.1f} ms")
    print(f"small if it shares the link fairly: {(gap + 2 * small_s) * 1e3:.1f} ms")
    print(f"small if it queues behind the big:  {(big_s + small_s) * 1e3:.1f} ms")
    print(f"small measured (median): {median(m['small'] for m in rounds) * 1e3:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
