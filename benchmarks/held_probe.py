"""How much does what a send buffer holds vary: between sends on one connection, between
connections of the same two hosts, and so between two profiles' probes?

    sudo python benchmarks/held_probe.py                                  # 1 Gbit/s
    sudo python benchmarks/held_probe.py --network bandwidth=100mbit,queue=fair

Two emulated hosts, one gloo process each. For every size in ``--megabytes``, ``--probes``
times over: open ``--connections`` fresh connections (two-rank gloo groups), send the
message on each for ``--warm-seconds`` untimed, then time ``--repeats`` sends with
``primitives.held_per_connection``, the probe the profile runs. It prints each
connection's median held bytes, then how far apart two probes land: the spread of one
connection's median against the spread of the mean over ``--connections``
(``primitives.send_held``'s reading; ``--connections 1 --warm-seconds 0`` is the probe
of one fresh connection).
"""

from __future__ import annotations

import argparse
import json
import sys
from statistics import median

from distbench.profiling.primitives import HELD_PROBE_CONNECTIONS, HELD_PROBE_WARM_SECONDS
from pair_order import on_two_hosts  # a sibling benchmark: run as python benchmarks/held_probe.py

PORT = 5608

RANK = """
import json, sys
import torch.distributed as dist
from distbench.profiling.primitives import held_per_connection
rank, master = int(sys.argv[1]), sys.argv[2]
sizes = [int(s) for s in sys.argv[3].split(",")]
probes, connections, repeats = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
warm = float(sys.argv[7])
dist.init_process_group("gloo", init_method=f"tcp://{master}:PORT", rank=rank, world_size=2)
out = {
    size: [held_per_connection(rank, size, repeats, connections, warm) for _ in range(probes)]
    for size in sizes
}
if rank == 0:
    print(json.dumps(out), flush=True)
dist.barrier()
dist.destroy_process_group()
""".replace("PORT", str(PORT))


def spread(values: list[float]) -> str:
    return f"{min(values) / 1e6:.2f}-{max(values) / 1e6:.2f} MB"


def report(size: int, probes: list[list[list[float]]]) -> None:
    print(f"{size / 1e6:.2f} MB message")
    for k, probe in enumerate(probes):
        per_connection = " ".join(f"{median(c) / 1e6:5.2f}" for c in probe)
        within = max(max(c) - min(c) for c in probe)
        print(
            f"  probe {k}: each connection's median {per_connection} MB;"
            f" within one connection up to {within / 1e6:.2f} MB apart"
        )
    one = [median(c) for probe in probes for c in probe]
    averaged = [sum(median(c) for c in probe) / len(probe) for probe in probes]
    print(f"  one connection's median: {spread(one)} over {len(one)} connections")
    print(
        f"  mean of {len(probes[0])} connections' medians (the profile's probe):"
        f" {spread(averaged)} over {len(averaged)} probes"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", default="bandwidth=1gbit,queue=fair")
    parser.add_argument("--megabytes", default="2.9,8.39")
    parser.add_argument("--probes", type=int, default=4)
    parser.add_argument("--connections", type=int, default=HELD_PROBE_CONNECTIONS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--warm-seconds",
        type=float,
        default=HELD_PROBE_WARM_SECONDS,
        help="seconds of untimed sends of the message on each connection before its timed ones",
    )
    args = parser.parse_args()
    if min(args.probes, args.connections, args.repeats) < 1 or args.warm_seconds < 0:
        print(
            "held_probe: --probes, --connections and --repeats must be at least 1,"
            " --warm-seconds at least 0",
            file=sys.stderr,
        )
        return 2
    sizes = [int(float(mb) * 1e6) // 4 * 4 for mb in args.megabytes.split(",")]
    argv = [
        ",".join(map(str, sizes)),
        str(args.probes),
        str(args.connections),
        str(args.repeats),
        str(args.warm_seconds),
    ]
    held = json.loads(on_two_hosts(args.network, RANK, argv)[0])
    for size in sizes:
        report(size, held[str(size)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
