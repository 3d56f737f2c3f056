"""distbench's ps-async against a minimal RPC parameter server, written the tutorial way.

    python benchmarks/ps_reference.py [--models resnet18,lenet5] [--workers 2] [--rounds 3]
                                      [--batch-size 32] [--steps 20] [--warmup 3]
                                      [--threads 1] [--input-size PX]

The reference (``--reference``, started here under torchrun) follows PyTorch's RPC
parameter-server tutorials ("Implementing Batch RPC Processing Using Asynchronous
Executions"), without batching so that it is asynchronous: rank 0 is the server holding the
model and an SGD optimizer behind a lock; it starts every trainer with ``rpc_async``; each
trainer computes gradients on its copy and calls ``update_and_fetch_model`` (gradients in,
the updated model back), i.e. Downpour SGD with push and pull in one RPC. Same model
builder, batch, learning rate and threads as ``distbench run --strategy ps-async``, random
inputs from a fixed pool; nothing from the distbench harness.

Both report throughput the same way: the median over every measured step of every worker
of ``batch * workers / step time`` (what distbench's aggregation does for async runs).
The two run alternately, ``--rounds`` times each, and the ratio of medians
distbench / reference is printed per model; above 1.0 means distbench is faster.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
RESULT_MARK = "REFERENCE_THROUGHPUT "


# -- the reference: tutorial-style torch.distributed.rpc parameter server ---------------------
class ParameterServer:
    """Holds the model and the optimizer; applies each worker's gradients as they arrive."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import torch

        from distbench.models import build_model

        torch.manual_seed(0)
        self.model = build_model(spec["model"], 10, spec["size"], spec["channels"])
        self.lock = threading.Lock()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=spec["lr"])

    def get_model(self) -> Any:
        return self.model

    @staticmethod
    def update_and_fetch_model(ps_rref: Any, grads: list[Any]) -> Any:
        self = ps_rref.local_value()
        with self.lock:
            for param, grad in zip(self.model.parameters(), grads, strict=True):
                param.grad = grad
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            return self.model


def run_trainer(ps_rref: Any, spec: dict[str, Any]) -> list[float]:
    """One trainer: compute gradients, push them and pull the model in one RPC; step times."""
    import torch
    from torch import nn
    from torch.distributed import rpc

    torch.set_num_threads(spec["threads"])
    generator = torch.Generator().manual_seed(spec["rank"])
    pool_x = torch.rand(256, spec["channels"], spec["size"], spec["size"], generator=generator)
    pool_y = torch.randint(0, 10, (256,), generator=generator)
    loss_fn = nn.CrossEntropyLoss()
    model = ps_rref.rpc_sync().get_model()
    times = []
    for step in range(spec["warmup"] + spec["steps"]):
        start = time.perf_counter()
        idx = torch.randint(0, 256, (spec["batch_size"],), generator=generator)
        loss_fn(model(pool_x[idx]), pool_y[idx]).backward()
        grads = [p.grad for p in model.parameters()]
        model = rpc.rpc_sync(
            ps_rref.owner(), ParameterServer.update_and_fetch_model, args=(ps_rref, grads)
        )
        if step >= spec["warmup"]:
            times.append(time.perf_counter() - start)
    return times


def reference_main(spec: dict[str, Any]) -> None:
    """Run under torchrun: rank 0 serves and drives, ranks 1..N train."""
    import torch
    from torch.distributed import rpc

    torch.set_num_threads(spec["threads"])
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    options = rpc.TensorPipeRpcBackendOptions(num_worker_threads=16, rpc_timeout=600)
    name = "ps" if rank == 0 else f"trainer{rank}"
    rpc.init_rpc(name, rank=rank, world_size=world, rpc_backend_options=options)
    if rank == 0:
        ps_rref = rpc.RRef(ParameterServer(spec))
        futures = [
            rpc.rpc_async(f"trainer{r}", run_trainer, args=(ps_rref, {**spec, "rank": r}))
            for r in range(1, world)
        ]
        times = [t for future in futures for t in future.wait()]
        workers = world - 1
        rates = [spec["batch_size"] * workers / t for t in times]
        print(RESULT_MARK + json.dumps(statistics.median(rates)), flush=True)
    rpc.shutdown()


# -- the comparison ---------------------------------------------------------------------------
def model_spec(model: str, args: argparse.Namespace) -> dict[str, Any]:
    from distbench.models import model_defaults

    size, channels = model_defaults(model)
    return {
        "model": model,
        "size": args.input_size or size,
        "channels": channels,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "warmup": args.warmup,
        "threads": args.threads,
        "lr": 0.01,
    }


def reference(spec: dict[str, Any], workers: int) -> float:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={workers + 1}",
            str(HERE),
            "--reference",
            json.dumps(spec),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
        env={**os.environ, "OMP_NUM_THREADS": str(spec["threads"])},
    ).stdout
    return float(out.split(RESULT_MARK)[1].split()[0])


def distbench(spec: dict[str, Any], workers: int, db: Path) -> float:
    command = [
        sys.executable,
        "-m",
        "distbench.cli.main",
        "run",
        "--model",
        spec["model"],
        "--strategy",
        "ps-async",
        "--workers",
        str(workers),
        "--batch-size",
        str(spec["batch_size"]),
        "--steps",
        str(spec["steps"]),
        "--warmup",
        str(spec["warmup"]),
        "--threads",
        str(spec["threads"]),
        "--input-size",
        str(spec["size"]),
        "--lr",
        str(spec["lr"]),
        "--timeout",
        "1800",
        "--db",
        str(db),
        "--json",
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=1900).stdout
    return float(json.loads(out)[0]["throughput_median"])


def compare(model: str, args: argparse.Namespace, db: Path) -> dict[str, Any]:
    spec = model_spec(model, args)
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(args.rounds):
        ours.append(distbench(spec, args.workers, db))
        theirs.append(reference(spec, args.workers))
    ratio = statistics.median(ours) / statistics.median(theirs)
    return {
        "model": model,
        "input_size": spec["size"],
        "distbench": ours,
        "reference": theirs,
        "ratio": ratio,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", metavar="SPEC", help=argparse.SUPPRESS)
    parser.add_argument("--models", default="resnet18,lenet5")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--input-size",
        type=int,
        default=None,
        help="input height = width (default: the model's own)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    if args.reference:
        reference_main(json.loads(args.reference))
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            result = compare(model, args, Path(tmp) / "ps_reference.db")
            results.append(result)
            if not args.json:
                print(
                    f"{model} (input {result['input_size']}, {args.workers} workers, batch "
                    f"{args.batch_size}): distbench ps-async "
                    f"{statistics.median(result['distbench']):.1f} samples/s, RPC reference "
                    f"{statistics.median(result['reference']):.1f} samples/s, ratio "
                    f"{result['ratio']:.3f}",
                    flush=True,
                )
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
