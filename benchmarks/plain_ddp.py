"""Uninstrumented DDP training: the baseline that distbench's harness is compared with.

Launched with torchrun by ``overhead.py``. It uses the same model builder, batch, threads,
optimizer and data pool size as ``distbench run --strategy ddp`` but no distbench harness:
no phase timer, no comm hook, no records. Prints the median step time (seconds) on rank 0.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from distbench.models import build_model, model_defaults


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo")
    size, channels = model_defaults(args.model)
    torch.manual_seed(0)
    model = DistributedDataParallel(build_model(args.model, 10, size, channels))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    pool_x = torch.randn(256, channels, size, size)
    pool_y = torch.randint(0, 10, (256,))
    times = []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        idx = torch.randint(0, 256, (args.batch_size,))
        x, y = pool_x[idx], pool_y[idx]
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    if dist.get_rank() == 0:
        print(f"median_step_time {statistics.median(times):.6f}", flush=True)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
