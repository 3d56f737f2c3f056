"""The SQLite results store: one row per run, versioned schema, speedup on read.

Scalar fields are columns (so they can be filtered and sorted in SQL); nested data
(breakdown, per-rank summaries, strategy extras, config, environment) are JSON text.
Speedup and efficiency are not stored: they are computed when read, against the measured
one-worker baseline that exists at that time, and the row names the baseline it used.
"""

from __future__ import annotations

import json
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil

from distbench.config import BASELINE_KEYS, setting_field
from distbench.errors import UserError
from distbench.measurement.rounds import ratio_interval, verdict
from distbench.names import strategy_spellings
from distbench.store.result import RunResult

# "operators" and "resources" (schema 2): the governing rank's operator profile
# (--profile-ops) and every rank's resource timeline, compact, as JSON.
JSON_COLUMNS = (
    "breakdown",
    "per_rank",
    "extra",
    "config",
    "env",
    "operators",
    "resources",
    "rounds",
)

SCHEMA_V1 = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, status TEXT NOT NULL, error TEXT, created_at TEXT NOT NULL,
    duration_s REAL, model TEXT NOT NULL, dataset TEXT NOT NULL, strategy TEXT NOT NULL,
    framework TEXT NOT NULL, workers INTEGER NOT NULL, processes INTEGER,
    threads_per_worker INTEGER, global_batch INTEGER, local_batch INTEGER, scaling TEXT,
    steps INTEGER, warmup_steps INTEGER, throughput_median REAL, throughput_ci_low REAL,
    throughput_ci_high REAL, step_time_median REAL, step_time_p90 REAL, step_time_mean REAL,
    comm_total REAL, governing_rank INTEGER, final_loss REAL, peak_rss_bytes INTEGER,
    allocated_peak_bytes INTEGER, reserved_peak_bytes INTEGER, oversubscribed INTEGER,
    breakdown TEXT, per_rank TEXT, extra TEXT, config TEXT, env TEXT, run_dir TEXT
);
CREATE INDEX runs_selection ON runs (model, strategy, workers);
"""

# Schema 2: operator profiles and resource timelines of a run.
SCHEMA_V2 = """
ALTER TABLE runs ADD COLUMN operators TEXT;
ALTER TABLE runs ADD COLUMN resources TEXT;
"""

# Schema 3: one-worker calibration profiles (``distbench profile``). The key
# columns select a profile; ``data`` holds the whole profile (profiling/calibrate.py) as JSON.
SCHEMA_V3 = """
CREATE TABLE profiles (
    profile_id INTEGER PRIMARY KEY AUTOINCREMENT, created_at TEXT NOT NULL,
    model TEXT NOT NULL, dataset TEXT NOT NULL, batch_size INTEGER NOT NULL,
    threads INTEGER NOT NULL, data TEXT NOT NULL
);
CREATE INDEX profiles_selection ON profiles (model, dataset, batch_size, threads);
"""

# Schema 4: every round of a run (``store.result.Round``) as JSON; the row's median and
# interval are over these rounds.
SCHEMA_V4 = """
ALTER TABLE runs ADD COLUMN rounds TEXT;
"""

# Schema 5: the adapters' strategies renamed to one vocabulary (``names.STRATEGY_ALIASES``):
# stored runs take the new names, in their column and in their stored configuration.
SCHEMA_V5 = "\n".join(
    f"UPDATE runs SET strategy = '{new}', config = json_set(config, '$.strategy', '{new}') "
    f"WHERE framework = '{framework}' AND strategy = '{old}';"
    for framework, old, new in (
        ("tensorflow", "sync", "allreduce"),
        ("tensorflow", "async", "ps-async"),
        ("mxnet", "sync", "ps-sync-join"),
        ("mxnet", "async", "ps-async"),
        ("horovod", "sync", "allreduce"),
    )
)

# Version N is reached by applying MIGRATIONS[N-1]; never edit a released entry, append.
MIGRATIONS: list[str] = [SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5]
SCHEMA_VERSION = len(MIGRATIONS)


def statements(script: str) -> list[str]:
    """A migration script's SQL statements, one by one (``executescript`` would commit
    the transaction a migration runs in)."""
    out, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            out.append(pending.strip())
            pending = ""
    if pending.strip():
        out.append(pending.strip())
    return out


class ResultStore:
    """A connection to one results database."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self.connection = connection
        self.path = path
        self.connection.row_factory = sqlite3.Row

    def schema_version(self) -> int:
        return int(self.connection.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        """Bring the schema up to ``SCHEMA_VERSION``, under an exclusive lock and reading the
        version again inside it: processes that open a new database at once (the nodes of
        a multi-node run) must not both apply a migration."""
        self._check_version(self.schema_version())
        if self.schema_version() == SCHEMA_VERSION:
            return
        connection = self.connection
        previous, connection.isolation_level = connection.isolation_level, None
        try:
            connection.execute("BEGIN EXCLUSIVE")
            try:
                current = self.schema_version()
                self._check_version(current)
                for version in range(current, SCHEMA_VERSION):
                    for statement in statements(MIGRATIONS[version]):
                        connection.execute(statement)
                    connection.execute(f"PRAGMA user_version = {version + 1}")
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        finally:
            connection.isolation_level = previous

    def _check_version(self, current: int) -> None:
        if current > SCHEMA_VERSION:
            raise UserError(
                f"{self.path} was written by a newer distbench "
                f"(schema {current} > {SCHEMA_VERSION})"
            )

    def insert(self, result: RunResult) -> None:
        """Store ``result``, replacing an earlier state of the same run (``running``)."""
        row = result.to_row()
        values = {k: (json.dumps(v) if k in JSON_COLUMNS else v) for k, v in row.items()}
        columns = ", ".join(values)
        marks = ", ".join(f":{k}" for k in values)
        with self.connection:
            self.connection.execute(
                f"INSERT OR REPLACE INTO runs ({columns}) VALUES ({marks})", values
            )

    def mark_interrupted(self) -> list[str]:
        """Runs still ``running`` whose distbench process on this host is gone (killed with
        SIGKILL, or the machine rebooted) become ``failed``, saying so; returns their ids.
        A run of a distbench that is still alive, or of another host, is left alone."""
        cursor = self.connection.execute("SELECT * FROM runs WHERE status = 'running'")
        gone = [r for r in map(decode_row, cursor) if orchestrator_gone(r)]
        for result in gone:
            who = result.extra.get("orchestrator") or {}
            result.status = "failed"
            result.error = (
                f"interrupted: distbench (pid {who.get('pid')}) ended during the run "
                "without storing its result (killed with SIGKILL?)"
            )
            self.insert(result)
        return [r.run_id for r in gone]

    def query(
        self,
        model: str | None = None,
        strategy: str | None = None,
        workers: int | None = None,
        status: str | None = None,
        dataset: str | None = None,
        run_ids: list[str] | None = None,
    ) -> list[RunResult]:
        """Runs matching every given filter, oldest first; ``strategy`` may be any name a
        strategy answers to (``names.strategy_spellings``)."""
        clauses: list[str] = []
        params: list[str | int] = []
        if strategy is not None:
            either = []
            for framework, name in strategy_spellings(strategy):
                either.append(
                    "strategy = ?" if framework is None else "(framework = ? AND strategy = ?)"
                )
                params.extend([name] if framework is None else [framework, name])
            clauses.append(f"({' OR '.join(either)})")
        for column, value in (
            ("model", model),
            ("workers", workers),
            ("status", status),
            ("dataset", dataset),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if run_ids:
            clauses.append(f"run_id IN ({', '.join('?' for _ in run_ids)})")
            params.extend(run_ids)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        cursor = self.connection.execute(
            f"SELECT * FROM runs {where} ORDER BY created_at, run_id", params
        )
        return [decode_row(row) for row in cursor]

    def baseline_for(self, row: RunResult) -> RunResult | None:
        """The measured one-worker run this run's speedup is relative to, or None.

        Every setting that changes the time of a step and is not what the speedup compares
        agrees (``config.BASELINE_KEYS``: model, dataset, framework, input size, classes,
        data directory, device as resolved on its host, network, compute and the profile
        an emulated run replays: an emulated run is never the baseline of a real one, nor
        the other way round); per-worker batch equal for
        weak scaling, global batch equal for strong scaling. A sequential run is preferred,
        else a one-worker run of the same strategy; the most recent one wins.
        """
        batch = row.local_batch if row.scaling == "weak" else row.global_batch
        cursor = self.connection.execute(
            "SELECT * FROM runs WHERE status = 'ok' AND workers = 1 AND model = ? AND "
            "dataset = ? AND framework = ? AND local_batch = ? AND strategy IN ('sequential', ?)"
            " ORDER BY strategy = 'sequential' DESC, created_at DESC",
            (row.model, row.dataset, row.framework, batch, row.strategy),
        )
        return next((c for c in map(decode_row, cursor) if same_timing_settings(c, row)), None)

    def with_scaling(self, rows: list[RunResult]) -> list[RunResult]:
        """Copies with speedup, efficiency and the baseline they are relative to."""
        return [add_scaling(row, self.baseline_for(row) if row.ok else None) for row in rows]

    def save_profile(self, profile: dict[str, Any]) -> int:
        """Store a calibration profile (keys model, dataset, batch_size, threads, created_at)."""
        keys = {k: profile[k] for k in ("created_at", "model", "dataset", "batch_size", "threads")}
        with self.connection:
            cursor = self.connection.execute(
                "INSERT INTO profiles (created_at, model, dataset, batch_size, threads, data) "
                "VALUES (:created_at, :model, :dataset, :batch_size, :threads, :data)",
                {**keys, "data": json.dumps(profile)},
            )
        return int(cursor.lastrowid or 0)

    def load_profiles(
        self,
        model: str,
        dataset: str | None = None,
        batch_size: int | None = None,
        threads: int | None = None,
    ) -> list[dict[str, Any]]:
        """Stored profiles matching every given key, newest first, each with its id."""
        clauses = ["model = ?"]
        params: list[Any] = [model]
        for column, value in (
            ("dataset", dataset),
            ("batch_size", batch_size),
            ("threads", threads),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        cursor = self.connection.execute(
            f"SELECT profile_id, data FROM profiles WHERE {' AND '.join(clauses)} "
            "ORDER BY created_at DESC, profile_id DESC",
            params,
        )
        return [{**json.loads(row["data"]), "profile_id": row["profile_id"]} for row in cursor]

    def close(self) -> None:
        self.connection.close()


def orchestrator() -> dict[str, Any]:
    """Who runs a benchmark: this process (pid, host, start time), stored while it runs."""
    me = psutil.Process()
    return {"pid": me.pid, "host": socket.gethostname(), "started": me.create_time()}


def orchestrator_gone(result: RunResult) -> bool:
    who = result.extra.get("orchestrator") or {}
    if who.get("host") != socket.gethostname() or not who.get("pid"):
        return False  # another host's run: only that host can tell
    try:
        process = psutil.Process(int(who["pid"]))
    except psutil.NoSuchProcess:
        return True
    # a reused pid belongs to a process started later
    return bool(abs(process.create_time() - float(who.get("started", 0.0))) > 1.0)


def resolved_device(result: RunResult) -> str:
    """``cpu`` or ``cuda``: what ``--device auto`` became on the run's host."""
    device = str(result.config.get("device", "auto"))
    if device != "auto":
        return device
    return "cuda" if result.env.get("gpu") else "cpu"


def stored_setting(row: RunResult, key: str) -> Any:
    """A stored run's setting; a run stored before the setting existed had its default."""
    return row.config.get(key, setting_field(key).default)


def same_timing_settings(a: RunResult, b: RunResult) -> bool:
    keys = [k for k in BASELINE_KEYS if k != "device"]
    return resolved_device(a) == resolved_device(b) and all(
        stored_setting(a, k) == stored_setting(b, k) for k in keys
    )


NO_BASELINE = (
    "none: no measured one-worker run with the same model, dataset, framework, batch, "
    "input size, classes, data directory, device, network and compute (real or emulated)"
)


def add_scaling(row: RunResult, baseline: RunResult | None) -> RunResult:
    """A copy of ``row`` with its speedup over ``baseline``; without one, no speedup and
    ``baseline`` says why. The speedup's interval is a bootstrap over both runs' rounds
    (``measurement.rounds.ratio_interval``), and ``speedup_verdict`` says in words whether
    it differs from 1."""
    out = replace(
        row,
        speedup=None,
        efficiency=None,
        speedup_ci=None,
        efficiency_ci=None,
        speedup_verdict=None,
        baseline_run_id=None,
        baseline=None,
    )
    if row.ok and baseline is None:
        out.baseline = NO_BASELINE
    if baseline and baseline.throughput_median and row.throughput_median:
        out.speedup = row.throughput_median / baseline.throughput_median
        out.efficiency = out.speedup / row.workers
        out.baseline_run_id = baseline.run_id
        out.baseline = f"{baseline.strategy} x1, {row.scaling} scaling"
        if baseline.run_id == row.run_id:
            return out  # the baseline itself: 1 by definition, no interval
        mine, theirs = rounds_or_median(row), rounds_or_median(baseline)
        ratio = ratio_interval(mine, theirs)
        out.speedup_verdict = verdict(ratio)
        if ratio.n >= 2:
            out.speedup_ci = [ratio.low, ratio.high]
            out.efficiency_ci = [ratio.low / row.workers, ratio.high / row.workers]
    return out


def rounds_or_median(row: RunResult) -> list[float]:
    """A run's round throughputs; one stored before rounds existed counts as one round."""
    return row.round_throughputs() or [float(row.throughput_median or 0.0)]


def decode_row(row: sqlite3.Row) -> RunResult:
    data = dict(row)
    for key in JSON_COLUMNS:
        if data.get(key) is not None:
            data[key] = json.loads(data[key])
    data["oversubscribed"] = bool(data.get("oversubscribed"))
    return RunResult.from_row(data)


def open_store(path: str | Path) -> ResultStore:
    """Open (creating and migrating) a store; an unusable path is a ``UserError``."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"--db {path} is a directory, expected a database file")
    if not path.parent.is_dir():
        raise UserError(
            f"cannot create results database {path}: directory {path.parent} does not exist"
        )
    try:
        store = ResultStore(sqlite3.connect(path, timeout=30), path)
        store.migrate()
        with _write_probe(store.connection):
            pass
        store.mark_interrupted()
    except sqlite3.Error as exc:
        raise UserError(f"cannot write results database {path}: {exc}") from exc
    return store


@contextmanager
def _write_probe(connection: sqlite3.Connection) -> Iterator[None]:
    """Fail now, not after an hour of benchmarking, if the database is read-only."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        connection.execute("ROLLBACK")
