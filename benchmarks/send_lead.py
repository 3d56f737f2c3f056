"""How far ahead of its delivery does a gloo send return? Two hosts, one connection.

    sudo python benchmarks/send_lead.py                          # 1 Gbit/s, fair queue
    sudo python benchmarks/send_lead.py --network bandwidth=100mbit,queue=fair

Two emulated hosts, one gloo process each. For every size in ``--megabytes``, ``--rounds``
times: rank 1 posts its receive, both meet at a barrier, rank 0 sends the message and
notes when ``send`` returned (gloo's send returns once the kernel holds the rest), rank 1
notes when the last byte arrived. Both read the same clock (the hosts are namespaces of
one machine). It prints, per size, the median lead (delivery minus return) and the bytes
that lead stands for at the link's rate: what the kernel's send buffer held when the send
returned, which the simulator needs to know when a parameter-server unit's semaphore lets
the next worker in (``engine.send_buffer``; docs/emulation.md, "what each unit does").
"""

from __future__ import annotations

import argparse
import json
import sys
from statistics import median

from distbench.netem.spec import parse_network
from pair_order import on_two_hosts  # a sibling benchmark: run as python benchmarks/send_lead.py

PORT = 5607

RANK = """
import json, sys, time
import torch, torch.distributed as dist
rank, master, rounds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
sizes = [int(s) for s in sys.argv[4].split(",")]
dist.init_process_group(
    "gloo", init_method=f"tcp://{master}:PORT", rank=rank, world_size=2
)
out = []
for size in sizes:
    buffer = torch.ones(size // 4)
    for _ in range(rounds + 1):  # the first round sizes the buffers: left out
        pending = dist.irecv(buffer, src=0) if rank == 1 else None
        dist.barrier()
        if rank == 0:
            dist.send(buffer, dst=1)
            mark = time.time()
        else:
            pending.wait()
            mark = time.time()
        marks = [torch.zeros(1, dtype=torch.float64) for _ in range(2)]
        dist.all_gather(marks, torch.tensor([mark], dtype=torch.float64))
        out.append({"size": size, "returned": float(marks[0]), "delivered": float(marks[1])})
if rank == 0:
    print(json.dumps(out), flush=True)
dist.barrier()
dist.destroy_process_group()
""".replace("PORT", str(PORT))


def run_rounds(network: str, sizes: list[int], rounds: int) -> list[dict[str, float]]:
    outputs = on_two_hosts(network, RANK, [str(rounds), ",".join(map(str, sizes))])
    return list(json.loads(outputs[0]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", default="bandwidth=1gbit,queue=fair")
    parser.add_argument("--megabytes", default="0.5,1,2,3,4,8,16")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rate_bits = parse_network(args.network).rate_bit_s
    if rate_bits is None:
        print("send_lead: --network needs a rate", file=sys.stderr)
        return 2
    rate = rate_bits / 8
    sizes = [int(float(mb) * 1e6) // 4 * 4 for mb in args.megabytes.split(",")]
    marks = run_rounds(args.network, sizes, args.rounds)
    print(
        f"{'MB':>6} {'alone ms':>9} {'lead ms':>8} {'held MB':>8}"
        f" {'min':>6} {'max':>6}  (median, min and max of {args.rounds})"
    )
    for size in sizes:
        rows = [m for m in marks if m["size"] == size][1:]
        held = sorted(max(0.0, m["delivered"] - m["returned"]) * rate / 1e6 for m in rows)
        lead = median(m["delivered"] - m["returned"] for m in rows)
        print(
            f"{size / 1e6:6.2f} {size / rate * 1e3:9.1f} {lead * 1e3:8.1f}"
            f" {max(0.0, lead) * rate / 1e6:8.2f} {held[0]:6.2f} {held[-1]:6.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
