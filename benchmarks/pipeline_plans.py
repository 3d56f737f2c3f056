"""How close is a pipeline plan's prediction to the run? Reads stored pipeline runs.

For every pipeline run in a results database (``pipeline-gpipe``, ``pipeline-1f1b``,
``pipeline-pipedream``, ``model-parallel``) it prints the plan's shape (stages x replicas),
the planner's predicted step beside the measured median step and their ratio, and per
stage the predicted compute per micro-batch beside the measured one (the stage's forward
and backward per step over the micro-batches it ran). The prediction comes from the block
profile and the two-rank link probe the run took before training, never from the run's
own steps. With emulated compute (``--compute``) the stages wait the very block times the
planner used, so the ratio checks the schedule and communication model alone.

    python benchmarks/pipeline_plans.py RESULTS.db [--strategy S]
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

from distbench.store import open_store


def stage_rows(extra: dict[str, Any]) -> list[str]:
    m = int(extra["microbatches"])
    plan_stages = extra["plan"]["stages"]
    lines = []
    for stage in plan_stages:
        figures = [f for f in extra["per_stage"] if f["stage"] == stage["index"]]
        # a replica (or copy) runs its share of the step's micro-batches
        runs = m / stage["replicas"]
        measured = statistics.fmean(f["forward_s"] + f["backward_s"] for f in figures) / runs
        predicted = stage.get("compute_s")
        ratio = f"{measured / predicted:.2f}" if predicted else "-"
        lines.append(
            f"    stage {stage['index']} x{stage['replicas']}: compute per micro-batch "
            f"predicted {1e3 * (predicted or 0):.1f} ms, measured {1e3 * measured:.1f} ms "
            f"(measured / predicted {ratio})"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db")
    parser.add_argument("--strategy", default=None)
    args = parser.parse_args()
    store = open_store(args.db)
    ratios = []
    for row in store.query(strategy=args.strategy, status="ok"):
        extra = row.extra or {}
        if "plan" not in extra:
            continue
        predicted, measured = extra.get("predicted_step_s"), row.step_time_median
        shape = " | ".join(f"{len(s['blocks'])}x{s['replicas']}" for s in extra["plan"]["stages"])
        compute = row.config.get("compute", "real")
        head = f"{row.model} {row.strategy} x{row.workers} (compute {compute}; "
        head += f"blocks x replicas {shape})"
        if predicted and measured:
            ratios.append(measured / predicted)
            head += (
                f": step predicted {1e3 * predicted:.0f} ms, measured {1e3 * measured:.0f} ms, "
                f"measured / predicted {measured / predicted:.2f}"
            )
        print(head)
        print("\n".join(stage_rows(extra)))
    if ratios:
        errors = sorted(abs(r - 1) for r in ratios)
        print(
            f"{len(ratios)} runs: median |error| {100 * statistics.median(errors):.1f} %, "
            f"max {100 * errors[-1]:.1f} %"
        )


if __name__ == "__main__":
    main()
