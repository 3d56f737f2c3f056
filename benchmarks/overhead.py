"""Does distbench slow down what it measures? Compare with an uninstrumented DDP script.

Runs ``plain_ddp.py`` (torchrun) and ``distbench run --strategy ddp`` alternately with the
same model, batch, threads, workers and steps, several rounds each, and prints the ratio of
median step times distbench / plain per model. Alternating spreads machine noise over both.

    python benchmarks/overhead.py [--models resnet18,lenet5] [--rounds 3] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def plain(model: str, args: argparse.Namespace) -> float:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={args.workers}",
            str(HERE / "plain_ddp.py"),
            "--model",
            model,
            "--batch-size",
            str(args.batch_size),
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
            "--threads",
            str(args.threads),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
        env={"OMP_NUM_THREADS": str(args.threads), **_env()},
    ).stdout
    return float(out.split("median_step_time")[1].split()[0])


def instrumented(model: str, args: argparse.Namespace, db: Path) -> float:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "distbench",
            "run",
            "--model",
            model,
            "--strategy",
            "ddp",
            "--workers",
            str(args.workers),
            "--batch-size",
            str(args.batch_size),
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
            "--threads",
            str(args.threads),
            "--db",
            str(db),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
        env=_env(),
    ).stdout
    return float(json.loads(out)[0]["step_time_median"])


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,lenet5")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "overhead.db"
        for model in args.models.split(","):
            ours, theirs = [], []
            for round_ in range(args.rounds):
                theirs.append(plain(model, args))
                ours.append(instrumented(model, args, db))
                print(
                    f"{model} round {round_ + 1}: plain {theirs[-1] * 1e3:.2f} ms, "
                    f"distbench {ours[-1] * 1e3:.2f} ms",
                    file=sys.stderr,
                    flush=True,
                )
            ratio = statistics.median(ours) / statistics.median(theirs)
            print(
                f"{model}: median step distbench {statistics.median(ours) * 1e3:.2f} ms / "
                f"plain {statistics.median(theirs) * 1e3:.2f} ms = ratio {ratio:.3f}"
            )


if __name__ == "__main__":
    main()
