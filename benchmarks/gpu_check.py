"""The GPU check, for a machine with one CUDA device (≤ 5 minutes): profile a zoo model on
the GPU, run it sequential and as DDP x1 on NCCL, record the GPU memory, then emulate 8
such GPUs behind 10 Gbit/s links with ``--compute`` set from the measured gradient time.

    python benchmarks/gpu_check.py                      # resnet18, batch 32, 10gbit, 8 workers
    sudo python benchmarks/gpu_check.py --model mobilenetv2 --workers 8

It drives the ``distbench`` command (each step is what a user would type, printed before it
runs) into a fresh results database and prints every figure it read back: step time and its
forward/backward split, throughput, allocated and reserved peak GPU memory, and for the
emulated cluster the step time beside one measured GPU's, with the wait error of the
emulation. The emulated step needs root (network namespaces); without it, that step is
reported as skipped. Exits 1 when no CUDA device is visible.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

MIB = 2**20


def distbench(args: list[str], db: Path, timeout: float) -> dict[str, Any] | None:
    """One ``distbench run`` with ``--json``; its one result, or None when it failed."""
    command = ["distbench", "run", *args, "--db", str(db), "--json"]
    print("$", " ".join(command), flush=True)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"  timed out after {timeout:.0f} s")
        return None
    if done.returncode != 0:
        print(f"  failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
        return None
    rows = json.loads(done.stdout)
    return rows[0] if rows else None


def show(name: str, row: dict[str, Any] | None) -> None:
    if row is None:
        print(f"{name}: no result")
        return
    phases = row.get("breakdown") or {}
    memory = {
        key: f"{(row.get(key) or 0) / MIB:.0f} MiB"
        for key in ("allocated_peak_bytes", "reserved_peak_bytes", "peak_rss_bytes")
    }
    print(
        f"{name}: {row['status']}, step {row['step_time_median'] * 1e3:.1f} ms, "
        f"{row['throughput_median']:.1f} samples/s, forward {phases.get('forward', 0) * 1e3:.1f}"
        f" ms, backward {phases.get('backward', 0) * 1e3:.1f} ms, "
        + ", ".join(f"{k.removesuffix('_bytes')} {v}" for k, v in memory.items())
    )
    emulation = (row.get("extra") or {}).get("compute")
    if emulation:
        print(
            f"  emulation: wait error {emulation.get('wait_error', 0) * 100:.2f} %, "
            f"cpu {emulation.get('cpu_cores')} cores, saturated {emulation.get('cpu_saturated')}"
        )


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=8, help="emulated GPUs (8)")
    parser.add_argument("--rate", default="10gbit", help="each emulated host's link (10gbit)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds per step (90)")
    args = parser.parse_args()
    if not cuda_available():
        print("no CUDA device visible: nothing to check", file=sys.stderr)
        return 1
    import torch

    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    common = ["--model", args.model, "--batch-size", str(args.batch_size)]
    common += ["--steps", str(args.steps)]
    with tempfile.TemporaryDirectory(prefix="distbench-gpu-") as tmp:
        db = Path(tmp) / "gpu.db"
        sequential = distbench(
            [*common, "--strategy", "sequential", "--device", "cuda"], db, args.timeout
        )
        show("sequential on cuda", sequential)
        ddp = distbench(
            [*common, "--strategy", "ddp", "--workers", "1", "--device", "cuda"], db, args.timeout
        )
        show("ddp x1 on nccl", ddp)
        if sequential is None:
            return 1
        phases = sequential.get("breakdown") or {}
        gradient = float(phases.get("forward", 0.0)) + float(phases.get("backward", 0.0))
        print(f"measured gradient time per batch on the GPU: {gradient * 1e3:.2f} ms")
        if os.geteuid() != 0:
            print("emulated cluster: skipped (needs root for the emulated network)")
            return 0
        emulated = distbench(
            [
                *common,
                "--strategy",
                "ddp",
                "--workers",
                str(args.workers),
                "--device",
                "cpu",
                "--compute",
                f"{gradient:.6f}",
                "--network",
                f"bandwidth={args.rate}",
            ],
            db,
            args.timeout * 3,
        )
        show(f"ddp x{args.workers} emulated GPUs behind {args.rate}", emulated)
        if emulated is not None:
            ratio = emulated["step_time_median"] / sequential["step_time_median"]
            print(f"emulated x{args.workers} step / one GPU's step: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
