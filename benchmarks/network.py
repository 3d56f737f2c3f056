"""All-reduce bus bandwidth under a shaped link, against the configured rate.

    sudo python benchmarks/network.py                  # 100mbit and 1gbit, 2 hosts
    sudo python benchmarks/network.py --rates 1gbit --hosts 4 --json
    sudo python benchmarks/network.py --extra mtu=9000      # jumbo frames

For each rate it builds an emulated network (``distbench.netem``: one namespace per host,
veth links shaped with ``tc tbf`` in both directions) and runs this file with ``--worker``
on every host. Rank 0 times ``dist.all_reduce`` (gloo, float32) for messages of 1 KB to
64 MB, after a barrier, median over repeats, and prints

    algbw = bytes / time,   busbw = algbw * 2(N-1)/N   (NCCL-tests' definition)

next to the configured rate. A ring all-reduce moves ``2(N-1)/N`` of the message over
every link, so ``busbw`` should approach the link rate minus TCP/IP framing (about 4 % at
a 1500-byte MTU) for large messages; small ones are latency-bound.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

KIB = 1024
SIZES = [KIB * 4**k for k in range(9)]  # 1 KiB, 4 KiB, ..., 64 MiB
RESULT_MARK = "ALLREDUCE "


def repeats_for(size: int) -> int:
    return 20 if size <= 256 * KIB else 5 if size <= 4 * KIB * KIB else 3


def time_all_reduce(size: int, repeats: int) -> float:
    import torch
    import torch.distributed as dist

    tensor = torch.ones(size // 4, dtype=torch.float32)
    dist.all_reduce(tensor)  # warm-up: connections, buffers, TCP slow start
    times = []
    for _ in range(repeats):
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(tensor)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def worker(rank: int, world: int, max_bytes: int) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    rows = []
    for size in (s for s in SIZES if s <= max_bytes):
        seconds = time_all_reduce(size, repeats_for(size))
        algbw = size / seconds
        rows.append(
            {
                "bytes": size,
                "seconds": seconds,
                "algbw_bytes_s": algbw,
                "busbw_bytes_s": algbw * 2 * (world - 1) / world,
            }
        )
    if rank == 0:
        print(RESULT_MARK + json.dumps(rows), flush=True)
    dist.barrier()
    dist.destroy_process_group()


def measure(
    rate: str, hosts: int, max_bytes: int, timeout: float, extra: str = ""
) -> list[dict[str, Any]]:
    """Build a ``hosts``-host network at ``rate`` and run the all-reduce sweep on it."""
    from distbench.netem import emulated_network, parse_network, run_on_hosts

    argv = [
        sys.executable,
        __file__,
        "--worker",
        "--world",
        str(hosts),
        "--max-bytes",
        str(max_bytes),
    ]
    text = ",".join(p for p in (f"bandwidth={rate}" if rate != "unshaped" else "", extra) if p)
    spec = parse_network(text) if text else None
    with emulated_network(spec, hosts) as net:
        results = run_on_hosts(
            net,
            lambda host: [*argv, "--rank", str(host.index)],
            {**os.environ, "OMP_NUM_THREADS": "1"},
            timeout,
        )
    for code, output in results:
        if code != 0:
            raise SystemExit(f"rate {rate}: a host failed (exit {code}):\n{output[-2000:]}")
    line = next(x for x in results[0][1].splitlines() if x.startswith(RESULT_MARK))
    rows: list[dict[str, Any]] = json.loads(line.removeprefix(RESULT_MARK))
    rate_bytes = spec.rate_bit_s / 8 if spec is not None and spec.rate_bit_s else None
    for row in rows:
        row.update(
            rate=rate + (f",{extra}" if extra else ""),
            hosts=hosts,
            busbw_of_rate=row["busbw_bytes_s"] / rate_bytes if rate_bytes else None,
        )
    return rows


def human_bytes(size: int) -> str:
    return f"{size // KIB // KIB} MiB" if size >= KIB * KIB else f"{size // KIB} KiB"


def print_table(rows: list[dict[str, Any]]) -> None:
    width = max(len("rate"), *(len(r["rate"]) for r in rows))
    print(
        f"{'rate':>{width}} {'hosts':>5} {'size':>8} {'time (s)':>10} {'algbw Mbit/s':>13} "
        f"{'busbw Mbit/s':>13} {'busbw/rate':>10}"
    )
    for r in rows:
        share = f"{r['busbw_of_rate']:.1%}" if r["busbw_of_rate"] is not None else "-"
        print(
            f"{r['rate']:>{width}} {r['hosts']:>5} {human_bytes(r['bytes']):>8} "
            f"{r['seconds']:>10.5f} {r['algbw_bytes_s'] * 8 / 1e6:>13.1f} "
            f"{r['busbw_bytes_s'] * 8 / 1e6:>13.1f} {share:>10}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rates",
        default="100mbit,1gbit",
        help="comma-separated tc rates, or 'unshaped' (default 100mbit,1gbit)",
    )
    parser.add_argument("--hosts", type=int, default=2, help="emulated hosts, one rank each")
    parser.add_argument("--max-bytes", type=int, default=SIZES[-1])
    parser.add_argument(
        "--extra",
        default="",
        metavar="KEY=VALUE,...",
        help="more --network keys for every rate, e.g. mtu=9000",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="per rate, seconds")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--world", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.rank, args.world, args.max_bytes)
        return 0
    rows = [
        row
        for rate in args.rates.split(",")
        for row in measure(rate.strip(), args.hosts, args.max_bytes, args.timeout, args.extra)
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
