"""Re-aggregate stored synchronous runs from their rank records, into a copy of the store.

    python benchmarks/reaggregate.py RESULTS.db COPY.db

A synchronous run's step time was, until 2026-12-03, the slowest worker's step of each
iteration, which overstates a parameter server's iteration (docs/emulation.md); it is now
the mean over workers. For every ``ok`` one-round synchronous run whose rank records are
still on disk, this recomputes its figures with the current ``harness.aggregate`` and
writes them into ``COPY.db`` (the original is not touched), then prints old and new step
times. The measurements are the stored ones; only the arithmetic over them is new.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from pathlib import Path

from distbench.harness.aggregate import aggregate_run
from distbench.measurement.records import read_run_records
from distbench.registry import strategy_facts


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: python benchmarks/reaggregate.py RESULTS.db COPY.db", file=sys.stderr)
        return 2
    source, copy = Path(sys.argv[1]), Path(sys.argv[2])
    shutil.copyfile(source, copy)
    db = sqlite3.connect(copy)
    rows = db.execute(
        "select run_id, framework, strategy, workers, run_dir, rounds, step_time_median "
        "from runs where status = 'ok'"
    ).fetchall()
    for run_id, framework, strategy, workers, run_dir, rounds, old in rows:
        rounds_list = json.loads(rounds or "[]")
        if len(rounds_list) > 1 or not strategy_facts(framework, strategy).synchronous:
            continue
        if not run_dir or not Path(run_dir).is_dir():
            continue
        metrics = aggregate_run(read_run_records(Path(run_dir)), synchronous=True)
        for entry in rounds_list:
            entry["step_time_median"] = metrics.step_time_median
            entry["throughput"] = metrics.throughput_median
            entry["step_jitter"] = [metrics.step_jitter_low, metrics.step_jitter_high]
        db.execute(
            "update runs set step_time_median = ?, step_time_p90 = ?, throughput_median = ?, "
            "throughput_ci_low = ?, throughput_ci_high = ?, rounds = ? where run_id = ?",
            (
                metrics.step_time_median,
                metrics.step_time_p90,
                metrics.throughput_median,
                metrics.throughput_median,
                metrics.throughput_median,
                json.dumps(rounds_list),
                run_id,
            ),
        )
        print(
            f"{run_id} {strategy:14} x{workers:<3} step {old:9.4f} -> "
            f"{metrics.step_time_median:9.4f} s ({metrics.step_time_median / old - 1:+.1%})"
        )
    db.commit()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
