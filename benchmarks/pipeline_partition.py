"""Does the profiled partition beat equal block counts on an unbalanced model? A real run.

Runs a pipeline of 2 workers (``pipeline-gpipe`` by default) with ``--partition uniform``
and ``profiled`` alternately (the profiled planner may also run copies of a 1-stage
pipeline: the printed plan says) (rounds spread machine noise over both), on
``unbalanced_model.py:Unbalanced`` by default, and prints per partition: the plan, each
stage's measured compute per step (forward + backward, wall and CPU seconds), the slowest
stage, the median step time; then the ratios uniform / profiled (above 1: profiled is
faster).

Which figure to believe depends on the host. On a dedicated host, wall time is the answer.
On a host whose cores are shared with other jobs, wall time includes the time a stage was
descheduled, and a balanced plan keeps *both* stages busy at once, so it competes harder
for the same cores; the stage's CPU time (``forward_cpu_s + backward_cpu_s``) is what its
compute costs without that contention, and the slowest stage's *share* of the total
compute is unchanged by a machine-wide slowdown (1/S for a perfect balance).

    python benchmarks/pipeline_partition.py [--model M] [--rounds 3] [--steps 10]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

from distbench.config import RunConfig
from distbench.harness.session import run_benchmarks
from distbench.store.result import RunResult

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL = f"{HERE / 'unbalanced_model.py'}:Unbalanced"
PARTITIONS = ("uniform", "profiled")


def run_once(partition: str, args: argparse.Namespace, db: Path) -> RunResult:
    cfg = RunConfig(
        model=args.model,
        strategy=args.strategy,
        workers=2,
        batch_size=args.batch_size,
        microbatches=args.microbatches,
        partition=partition,
        steps=args.steps,
        warmup=args.warmup,
        threads=args.threads,
        timeout=900,
    )
    [row] = run_benchmarks([cfg], db)
    if not row.ok:
        raise SystemExit(f"{partition} run failed: {row.error}")
    return row


def stage_compute(row: RunResult, clock: str) -> list[float]:
    """Forward + backward seconds per step, per stage; ``clock`` is "" (wall) or "_cpu"."""
    return [s[f"forward{clock}_s"] + s[f"backward{clock}_s"] for s in row.extra["per_stage"]]


def summarize(rows: list[RunResult]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "plan": rows[0].extra["plan_text"],
        "step": statistics.median(r.step_time_median or 0.0 for r in rows),
        "bubble": statistics.median(r.extra["bubble_measured"] for r in rows),
    }
    for clock, label in (("", "wall"), ("_cpu", "cpu")):
        per_run = [stage_compute(r, clock) for r in rows]
        out[f"{label}_stages"] = [statistics.median(c) for c in zip(*per_run, strict=True)]
        out[f"{label}_slowest"] = statistics.median(max(c) for c in per_run)
        out[f"{label}_share"] = statistics.median(max(c) / sum(c) for c in per_run)
    return out


def report_lines(res: dict[str, Any]) -> str:
    lines = [res["plan"]]
    for label in ("wall", "cpu"):
        stages = ", ".join(f"{1e3 * t:.1f}" for t in res[f"{label}_stages"])
        lines.append(
            f"  measured compute per stage, {label} (ms/step): {stages}; slowest "
            f"{1e3 * res[f'{label}_slowest']:.1f} (share {res[f'{label}_share']:.2f})"
        )
    lines.append(f"  step {1e3 * res['step']:.1f} ms (median); bubble {res['bubble']:.2f}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--strategy", default="pipeline-gpipe")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--microbatches", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    rows: dict[str, list[RunResult]] = {p: [] for p in PARTITIONS}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for partition in PARTITIONS:
                rows[partition].append(run_once(partition, args, Path(tmp) / "r.db"))
    results = {p: summarize(rows[p]) for p in PARTITIONS}
    for res in results.values():
        print(report_lines(res))
    uni, pro = results["uniform"], results["profiled"]
    for key, text in (
        ("cpu_slowest", "slowest stage compute, CPU time"),
        ("wall_slowest", "slowest stage compute, wall time"),
        ("wall_share", "slowest stage share of compute (wall)"),
        ("step", "step time (wall)"),
    ):
        print(f"uniform / profiled, {text + ':':40s} {uni[key] / pro[key]:.2f}")
    print(
        f"({args.rounds} rounds, medians; {args.strategy}, 2 stages, batch "
        f"{args.batch_size}, {args.microbatches} micro-batches, {args.steps} steps after "
        f"{args.warmup} warm-up, {args.threads} thread(s) per stage)"
    )


if __name__ == "__main__":
    main()
