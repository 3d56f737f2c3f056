"""Do gloo's messages move as fast as the links allow when they cross in both directions?

    sudo python benchmarks/exchange.py pair                # 100 Mbit/s, 0.74 / 2 / 3 MB
    sudo python benchmarks/exchange.py pair --network bandwidth=1gbit,queue=fair
    sudo python benchmarks/exchange.py all-to-all --store sq.db --model squeezenet --workers 8

``pair``: two emulated hosts, one gloo process each. Per size in ``--megabytes`` and per
``--rounds``, after 0.4 s idle: one way (rank 0 sends, rank 1 receives), then both ways at
once in two orders: each rank ``isend`` then ``irecv`` (sends first), and each rank
``irecv`` then ``isend`` (receives first). It prints the median time of each, and how
many rounds took at least 1.6 times the one-way time: gloo sends a message only once the
peer has said it posted the receive, and that notice waits in the sender's queue behind
whatever the pair is already writing, so a rank that posts its receive after its own large
send has begun makes the other direction wait for it.

``all-to-all``: a sharded parameter server's push (or pull) pattern with nothing else on
the links. ``--workers`` hosts; every rank sends unit ``j``'s shard to every other rank
``j`` at one common start, with every receive posted before it (as the server's serve
threads post a push's receive when the pull request comes). Shards: ``--shards`` (MB,
comma-separated) or the greedy split of a stored profile's tensors (``--store``,
``--model``). Per rank: the median time to its last byte in, beside its bytes in over
the link's rate (the fluid model's time when every transfer starts at once).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from statistics import median

from distbench.netem.spec import parse_network
from distbench.profiling.profiles import find_profile
from pair_order import on_hosts  # a sibling benchmark: run as python benchmarks/exchange.py

PORT = 5615

PAIR = """
import json, sys, time
import torch, torch.distributed as dist
rank, master, rounds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
sizes = [int(s) for s in sys.argv[4].split(",")]
dist.init_process_group("gloo", init_method=f"tcp://{master}:PORT", rank=rank, world_size=2)
out = []
for size in sizes:
    a, b = torch.ones(size // 4), torch.ones(size // 4)
    for mode in ("one way", "sends first", "receives first"):
        for r in range(rounds + 1):  # the first round sizes the buffers: left out
            time.sleep(0.4)
            dist.barrier()
            start = time.monotonic()
            if mode == "one way":
                (dist.send(a, dst=1) if rank == 0 else dist.recv(b, src=0))
            elif mode == "sends first":
                s = dist.isend(a, dst=1 - rank); q = dist.irecv(b, src=1 - rank)
                q.wait(); s.wait()
            else:
                q = dist.irecv(b, src=1 - rank); s = dist.isend(a, dst=1 - rank)
                q.wait(); s.wait()
            took = torch.tensor([time.monotonic() - start], dtype=torch.float64)
            dist.all_reduce(took, op=dist.ReduceOp.MAX)
            if r:
                out.append({"size": size, "mode": mode, "seconds": float(took)})
if rank == 0:
    print(json.dumps(out), flush=True)
dist.barrier()
dist.destroy_process_group()
""".replace("PORT", str(PORT))

ALL_TO_ALL = """
import json, sys, time
import torch, torch.distributed as dist
rank, master, rounds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
shards = json.loads(sys.argv[4])
n = len(shards)
dist.init_process_group("gloo", init_method=f"tcp://{master}:PORT", rank=rank, world_size=n)
outgoing = [torch.ones(int(shards[j]) // 4) for j in range(n)]
incoming = [torch.ones(int(shards[rank]) // 4) for _ in range(n)]
seconds = []
for r in range(rounds + 1):
    receives = [dist.irecv(incoming[j], src=j) for j in range(n) if j != rank]
    dist.barrier()
    start = torch.tensor([time.monotonic() + 0.3], dtype=torch.float64)
    dist.broadcast(start, 0)  # one clock: the hosts are namespaces of one machine
    time.sleep(max(0.0, float(start) - time.monotonic()))
    sends = [dist.isend(outgoing[j], dst=j) for j in range(n) if j != rank]
    for receive in receives:
        receive.wait()
    took = time.monotonic() - float(start)
    for send in sends:
        send.wait()
    if r:
        seconds.append(took)
print(json.dumps(seconds), flush=True)
dist.barrier()
dist.destroy_process_group()
""".replace("PORT", str(PORT))


def pair(args: argparse.Namespace) -> None:
    sizes = [int(float(mb) * 1e6) // 4 * 4 for mb in args.megabytes.split(",")]
    rounds = json.loads(
        on_hosts(args.network, 2, PAIR, [str(args.rounds), ",".join(map(str, sizes))])[0]
    )
    print(f"{args.network}: ms per exchange, median of {args.rounds} (rounds >= 1.6 x one way)")
    for size in sizes:
        took = {
            mode: [r["seconds"] for r in rounds if r["size"] == size and r["mode"] == mode]
            for mode in ("one way", "sends first", "receives first")
        }
        alone = median(took["one way"])
        cells = [f"one way {alone * 1e3:.1f}"]
        for mode in ("sends first", "receives first"):
            slow = sum(s >= 1.6 * alone for s in took[mode])
            cells.append(f"{mode} {median(took[mode]) * 1e3:.1f} ({slow}/{len(took[mode])})")
        print(f"  {size / 1e6:6.2f} MB: " + ", ".join(cells))


def shards_of(args: argparse.Namespace) -> list[float]:
    if args.shards:
        return [float(mb) * 1e6 for mb in args.shards.split(",")]
    if not (args.store and args.model and args.workers):
        raise SystemExit("exchange: all-to-all needs --shards, or --store, --model and --workers")
    profile = find_profile(args.store, args.model)
    shards = profile.shard_bytes(args.workers) if profile else None
    if not shards:
        raise SystemExit(f"exchange: no profile of {args.model} with tensor sizes in {args.store}")
    return shards


def all_to_all(args: argparse.Namespace) -> None:
    shards = [s // 4 * 4 for s in shards_of(args)]
    rate = parse_network(args.network).rate_bit_s
    if rate is None:
        raise SystemExit("exchange: --network needs a rate")
    began = time.monotonic()
    outputs = on_hosts(
        args.network, len(shards), ALL_TO_ALL, [str(args.rounds), json.dumps(shards)]
    )
    print(f"{args.network}, {len(shards)} hosts ({time.monotonic() - began:.0f} s):")
    n = len(shards)
    for rank, (shard, out) in enumerate(zip(shards, outputs, strict=True)):
        seconds = json.loads(out)
        fluid = (n - 1) * shard / (rate / 8)
        each = " ".join(f"{s * 1e3:.0f}" for s in seconds)
        print(
            f"  rank {rank}: {shard / 1e6:.2f} MB x {n - 1} in,"
            f" median {median(seconds) * 1e3:.0f} ms (rounds {each}),"
            f" bytes in / rate {fluid * 1e3:.0f} ms"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pattern", choices=("pair", "all-to-all"))
    parser.add_argument("--network", default="bandwidth=100mbit,queue=fair")
    parser.add_argument("--megabytes", default="0.74,2,3", help="pair: message sizes")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--shards", help="all-to-all: each unit's shard, MB, comma-separated")
    parser.add_argument("--store", help="all-to-all: a store with the model's profile")
    parser.add_argument("--model", help="all-to-all: the profile's model")
    parser.add_argument("--workers", type=int, help="all-to-all: hosts (the shards' count)")
    args = parser.parse_args()
    if args.pattern == "pair":
        pair(args)
    else:
        all_to_all(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
