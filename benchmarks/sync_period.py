"""A synchronous parameter-server run's stored step time against the iteration period its
central server recorded.

    python benchmarks/sync_period.py emulated.db

For every stored ok ps-sync-* run with a central server, the server unit's ``transfers``
(in its rank's records under the run directory) give the start of every pull; the first
pull of each iteration is one every N pulls, and their spacing is the iteration period.
The printed ratio ``stored / period`` is how far the stored step time departs from the
iteration. Results stored before the step time became the mean over workers (it was the
slowest worker's step) overstate it by 2–35 %; since, the ratio is within a few per cent
of 1 (docs/emulation.md).
"""

from __future__ import annotations

import json
import sqlite3
import sys
from itertools import pairwise
from pathlib import Path
from statistics import median
from typing import Any


def find_transfers(obj: Any) -> list[dict[str, Any]] | None:
    if isinstance(obj, dict):
        if "transfers" in obj:
            return list(obj["transfers"])
        children = list(obj.values())
    elif isinstance(obj, list):
        children = obj
    else:
        return None
    for child in children:
        found = find_transfers(child)
        if found:
            return found
    return None


def server_transfers(run_dir: Path, server_rank: int) -> list[dict[str, Any]] | None:
    records = run_dir / f"rank{server_rank}.jsonl"
    if not records.exists():
        return None
    for line in records.open():
        if '"transfers"' in line:
            return find_transfers(json.loads(line))
    return None


def iteration_period(transfers: list[dict[str, Any]], workers: int) -> float | None:
    pulls = sorted(t["start"] for t in transfers if t["direction"] == "pull")
    firsts = pulls[::workers]
    spacings = [b - a for a, b in pairwise(firsts)]
    if len(spacings) < 3:
        return None
    return median(spacings[2:] if len(spacings) > 4 else spacings)  # past the warm-up


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python benchmarks/sync_period.py RESULTS.db", file=sys.stderr)
        return 2
    db = sqlite3.connect(sys.argv[1])
    rows = db.execute(
        "select model, strategy, workers, run_dir, step_time_median, config from runs "
        "where strategy like 'ps-sync%' and status = 'ok' order by model, strategy, workers"
    )
    for model, strategy, workers, run_dir, step, config in rows:
        if json.loads(config).get("servers", "central") != "central":
            continue
        transfers = server_transfers(Path(run_dir), workers)  # the server is rank N
        period = iteration_period(transfers, workers) if transfers else None
        if period is None:
            continue
        print(
            f"{model.split(':')[-1]:12} {strategy:13} x{workers:<3} stored step {step:8.3f} s"
            f"  server period {period:8.3f} s  stored / period {step / period:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
