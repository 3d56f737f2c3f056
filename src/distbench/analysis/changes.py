"""Two sets of runs compared configuration by configuration, in the manner of ``asv compare``.

A *run set* is every stored run of one database file, or the runs of ``--db`` whose
environment matches ``KEY=VALUE`` (``commit=`` a distbench commit prefix, ``host=`` a
hostname, or any key of the stored environment: ``torch=2.13``, ``python=3.11``; values
match as prefixes). Runs are matched by configuration (model, dataset, strategy,
framework, workers, batch and every other setting that changes the time of a step); of
several runs of one configuration in a set the most recent wins. For each configuration
the ratio of throughputs ``B / A`` carries a bootstrap interval over both runs' rounds, and
the verdict is ``faster`` or ``slower`` only when that interval excludes 1.

Nothing here prints; ``cli/results.py`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from distbench.config import TIMING_KEYS
from distbench.errors import UserError
from distbench.measurement.rounds import ratio_interval, verdict
from distbench.store import open_store
from distbench.store.db import resolved_device, rounds_or_median, stored_setting
from distbench.store.result import RunResult

#: Short names for environment keys a user selects run sets by.
ENV_ALIASES = {"commit": "distbench_commit", "host": "hostname"}


@dataclass(frozen=True)
class Change:
    """One configuration measured in both sets."""

    config: str
    a_run_id: str
    b_run_id: str
    a_throughput: float
    b_throughput: float
    ratio: float  # B / A throughput
    ratio_low: float | None
    ratio_high: float | None
    rounds: int  # the fewer of the two runs' rounds
    verdict: str  # faster, slower, no measurable difference, 1 round: no interval

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def configuration_key(row: RunResult) -> tuple[Any, ...]:
    """What must agree for two runs to measure the same thing."""
    settings = tuple(
        (key, repr(stored_setting(row, key))) for key in TIMING_KEYS if key not in ("device",)
    )
    return (resolved_device(row), row.global_batch, *settings)


def describe_configuration(row: RunResult) -> str:
    framework = "" if row.framework == "torch" else f" ({row.framework})"
    return f"{row.model} {row.strategy}{framework} x{row.workers} batch {row.global_batch}"


def load_run_set(selector: str, db: str | Path) -> list[RunResult]:
    """The ok runs a selector names: a database file, or ``KEY=VALUE`` over ``db``."""
    if "=" not in selector:
        path = Path(selector)
        if not path.is_file():
            raise UserError(
                f"--compare {selector}: neither a results database nor KEY=VALUE "
                "(commit=, host=, torch=, ...)"
            )
        rows = _ok_runs(path)
        if not rows:
            raise UserError(f"--compare {selector}: no ok run stored in it")
        return rows
    key, _, value = selector.partition("=")
    key = ENV_ALIASES.get(key.strip(), key.strip())
    if not Path(db).is_file():
        raise UserError(f"no results database at {db} to select {selector} from")
    rows = _ok_runs(Path(db))
    if rows and all(key not in row.env for row in rows):
        known = ", ".join(sorted({*ENV_ALIASES, *rows[0].env}))
        raise UserError(f"--compare {selector}: unknown key '{key}' (known: {known})")
    chosen = [row for row in rows if str(row.env.get(key, "")).startswith(value.strip())]
    if not chosen:
        raise UserError(f"--compare {selector}: no stored run matches")
    return chosen


def _ok_runs(path: Path) -> list[RunResult]:
    store = open_store(path)
    try:
        return store.query(status="ok")
    finally:
        store.close()


def latest_by_configuration(rows: Sequence[RunResult]) -> dict[tuple[Any, ...], RunResult]:
    latest: dict[tuple[Any, ...], RunResult] = {}
    for row in rows:  # oldest first: a later run replaces an earlier one
        latest[configuration_key(row)] = row
    return latest


def compare_run_sets(a: Sequence[RunResult], b: Sequence[RunResult]) -> list[Change]:
    """Every configuration present in both sets, in A's order."""
    a_by, b_by = latest_by_configuration(a), latest_by_configuration(b)
    shared = [key for key in a_by if key in b_by]
    if not shared:
        raise UserError("the two run sets share no configuration (model, strategy, workers, ...)")
    changes = []
    for key in shared:
        old, new = a_by[key], b_by[key]
        ratio = ratio_interval(rounds_or_median(new), rounds_or_median(old))
        has_interval = ratio.n >= 2
        changes.append(
            Change(
                config=describe_configuration(old),
                a_run_id=old.run_id,
                b_run_id=new.run_id,
                a_throughput=float(old.throughput_median or 0.0),
                b_throughput=float(new.throughput_median or 0.0),
                ratio=ratio.median,
                ratio_low=ratio.low if has_interval else None,
                ratio_high=ratio.high if has_interval else None,
                rounds=ratio.n,
                verdict=verdict(ratio),
            )
        )
    return changes


def regressions(changes: Sequence[Change], fail_above_percent: float) -> list[Change]:
    """Configurations measurably slower in B by more than the threshold."""
    limit = 1 - fail_above_percent / 100
    return [c for c in changes if c.verdict == "slower" and c.ratio < limit]
