"""Processes that open a new results database at once (the nodes of a multi-node run, a
SLURM job's tasks) each find it migrated once: a migration holds an exclusive lock and
reads the schema version again inside it."""

from __future__ import annotations

import multiprocessing
import signal
from pathlib import Path

from distbench.store.db import SCHEMA_VERSION, open_store, statements


def _open(path: str) -> int:
    store = open_store(path)
    try:
        return store.schema_version()
    finally:
        store.close()


def _default_signals() -> None:
    # forked from the test process, a worker would inherit whatever SIGTERM handler it
    # has, and the pool ends its workers with SIGTERM
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def test_opening_a_new_database_at_once_migrates_it_once(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    with context.Pool(4, initializer=_default_signals) as pool:
        for attempt in range(8):
            path = str(tmp_path / f"r{attempt}.db")
            assert pool.map(_open, [path] * 4) == [SCHEMA_VERSION] * 4


def test_migration_scripts_split_into_statements() -> None:
    script = "CREATE TABLE t (a TEXT);\nALTER TABLE t ADD COLUMN b TEXT;\n"
    assert statements(script) == ["CREATE TABLE t (a TEXT);", "ALTER TABLE t ADD COLUMN b TEXT;"]
