"""The program :func:`distbench.netem.probe.measure_link` runs on each of two hosts.

``python -m distbench.netem.linkprobe --rank R --bytes N`` with ``MASTER_ADDR``/``MASTER_PORT``
set (``multihost.run_on_hosts`` does): gloo point-to-point ping-pong for latency, then
timed one-way transfers of ``N`` bytes acknowledged by a 1-element tensor. Rank 0 prints
one ``LINK {json}`` line. Kept apart from ``probe.py``, which the package imports, so that
``-m`` does not run an already-imported module.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from distbench.netem.probe import RESULT_MARK


def _transfer(rank: int, size: int) -> float:
    import torch
    import torch.distributed as dist

    payload, ack = torch.zeros(size, dtype=torch.uint8), torch.zeros(1)
    start = time.perf_counter()
    if rank == 0:
        dist.send(payload, 1)
        dist.recv(ack, 1)
    else:
        dist.recv(payload, 0)
        dist.send(ack, 0)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    import torch.distributed as dist

    from distbench.profiling.calibrate import pingpong

    parser = argparse.ArgumentParser(description="one side of the 2-host link probe")
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--bytes", type=int, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pings", type=int, default=20)
    args = parser.parse_args(argv)
    dist.init_process_group("gloo", rank=args.rank, world_size=2)
    latency = pingpong(args.rank, 4, args.pings)  # its first two round trips connect
    _transfer(args.rank, args.bytes)  # warm-up: slow start, buffers
    times = [_transfer(args.rank, args.bytes) for _ in range(args.repeats)]
    seconds = max(statistics.median(times) - 2 * latency, 1e-9)
    if args.rank == 0:
        print(
            RESULT_MARK
            + json.dumps(
                {
                    "bandwidth_bytes_per_s": args.bytes / seconds,
                    "latency_s": latency,
                    "bytes": args.bytes,
                    "times_s": times,
                }
            ),
            flush=True,
        )
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
