"""Does a transfer that finds a shaped link idle pass part of its bytes at once?

    sudo python benchmarks/idle_burst.py                                  # 1 Gbit/s, fair queues
    sudo python benchmarks/idle_burst.py --network bandwidth=1gbit        # the FIFO link (tbf)
    sudo python benchmarks/idle_burst.py --network bandwidth=100mbit,queue=fair

Two emulated hosts, one gloo process each, on a connection first warmed with 30 sends.
Per idle time in ``--idle-ms``, ``--rounds`` times: rank 1 (a parameter server) leaves the
link idle that long, sends rank 0 a 4-byte go and times until ``--megabytes`` from rank 0
have arrived, as a server behind its semaphore times a push. A link whose shaper refills a
token bucket while idle (tbf) lets a transfer after a longer idle finish sooner, by up to
the bucket's bytes at the link's rate; one that lends a lone transfer nothing takes as long
after any idle. It prints the median, min and max per idle time, and the most any idle
saved against none (the median's difference): the simulator's ``Links.burst`` for that
network is what the idle lets through at once (``predict.simulated.shaper_burst``).
"""

from __future__ import annotations

import argparse
import json
import sys
from statistics import median

from pair_order import on_hosts  # a sibling benchmark: run as python benchmarks/idle_burst.py

PORT = 5618

RANK = """
import json, sys, time
import torch, torch.distributed as dist
rank, master = int(sys.argv[1]), sys.argv[2]
size, idles, rounds = int(sys.argv[3]) // 4, json.loads(sys.argv[4]), int(sys.argv[5])
dist.init_process_group("gloo", init_method=f"tcp://{master}:PORT", rank=rank, world_size=2)
message, go = torch.ones(size), torch.zeros(1)
for _ in range(30):  # a connection that has carried the message, as a run's has
    (dist.send(message, 1) if rank == 0 else dist.recv(message, 0))
out = {}
for idle in idles:
    took = []
    for _ in range(rounds):
        if rank == 1:
            time.sleep(idle)
            start = time.perf_counter()
            dist.send(go, 0)
            dist.recv(message, 0)
            took.append(time.perf_counter() - start)
        else:
            dist.recv(go, 1)
            dist.send(message, 1)
    out[str(idle)] = took
if rank == 1:
    print(json.dumps(out), flush=True)
dist.barrier()
dist.destroy_process_group()
""".replace("PORT", str(PORT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", default="bandwidth=1gbit,queue=fair")
    parser.add_argument("--megabytes", type=float, default=2.9)
    parser.add_argument("--idle-ms", default="0,0.5,1,2,4,10,50,250")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    try:
        idles = [float(ms) / 1e3 for ms in args.idle_ms.split(",")]
    except ValueError:
        print(f"idle_burst: bad --idle-ms {args.idle_ms!r}", file=sys.stderr)
        return 2
    if args.megabytes <= 0 or args.rounds < 1 or any(i < 0 for i in idles):
        print("idle_burst: --megabytes, --rounds and --idle-ms must be positive", file=sys.stderr)
        return 2
    size = int(args.megabytes * 1e6) // 4 * 4
    argv = [str(size), json.dumps(idles), str(args.rounds)]
    took = json.loads(on_hosts(args.network, 2, RANK, argv)[1])
    print(f"{args.network}: go + {size / 1e6:.2f} MB, ms over {args.rounds} rounds")
    medians = {}
    for idle in idles:
        seconds = took[str(idle)]
        medians[idle] = median(seconds)
        print(
            f"  idle {idle * 1e3:6.1f} ms: median {medians[idle] * 1e3:7.2f}"
            f"  min {min(seconds) * 1e3:7.2f}  max {max(seconds) * 1e3:7.2f}"
        )
    saved = medians[idles[0]] - min(medians.values())
    print(f"  the most an idle saved against idle {idles[0] * 1e3:g} ms: {saved * 1e3:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
