"""Does the README's first command give the same answer twice? Run it twice and compare.

Runs ``distbench run`` (the default suite) twice in a row into two fresh databases and
prints, per configuration, both medians with their intervals over rounds and whether each
median lies inside the other run's interval, then whether every speedup interval of one
run overlaps the other's. Agreement is what the default suite's rounds and steps are
chosen for (docs/measurement.md).

    python benchmarks/default_suite_agreement.py [--extra "--rounds 7"]
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from distbench.measurement.rounds import rerun_agreement


def run_suite(db: Path, extra: list[str]) -> tuple[list[dict[str, Any]], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "distbench", "run", "--db", str(db), "--json", *extra],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"distbench run failed ({done.returncode}): {done.stderr[-800:]}")
    return json.loads(done.stdout), time.monotonic() - started


def label(row: dict[str, Any]) -> str:
    return f"{row['model']} {row['strategy']} x{row['workers']}"


def inside(value: float, low: float | None, high: float | None) -> bool:
    return low is not None and high is not None and low <= value <= high


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extra", default="", help="flags added to both `distbench run`s")
    args = parser.parse_args()
    extra = shlex.split(args.extra)
    with tempfile.TemporaryDirectory() as tmp:
        first, t1 = run_suite(Path(tmp) / "first.db", extra)
        second, t2 = run_suite(Path(tmp) / "second.db", extra)
    print(f"pass 1: {t1:.0f} s, pass 2: {t2:.0f} s")
    agree = overlap = total = 0
    for a, b in zip(first, second, strict=True):
        total += 1
        both = inside(a["throughput_median"], b["throughput_ci_low"], b["throughput_ci_high"]) and (
            inside(b["throughput_median"], a["throughput_ci_low"], a["throughput_ci_high"])
        )
        agree += both
        sa, sb = a.get("speedup_ci"), b.get("speedup_ci")
        speedups = sa is None or sb is None or (sa[0] <= sb[1] and sb[0] <= sa[1])
        overlap += speedups
        print(
            f"{label(a):28s} {a['throughput_median']:9.1f} "
            f"({a['throughput_ci_low'] or 0:.1f}-{a['throughput_ci_high'] or 0:.1f})  "
            f"{b['throughput_median']:9.1f} "
            f"({b['throughput_ci_low'] or 0:.1f}-{b['throughput_ci_high'] or 0:.1f})  "
            f"medians inside: {'yes' if both else 'NO'}  "
            f"speedup {a.get('speedup') or 0:.2f} / {b.get('speedup') or 0:.2f} "
            f"intervals overlap: {'yes' if speedups else 'NO'}"
        )
    print(f"medians inside the other run's interval: {agree}/{total}")
    print(f"speedup intervals overlapping: {overlap}/{total}")
    rounds = min(len(row.get("rounds") or []) for row in [*first, *second])
    if 1 <= rounds <= 10:
        # what a perfectly steady machine would give: rounds exchangeable between the runs
        _, chance = rerun_agreement(rounds)
        print(
            f"expected with {rounds} exchangeable rounds: {chance * total:.1f}/{total} medians "
            f"inside (each {chance:.0%}); all {total} with probability {chance**total:.0%}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
