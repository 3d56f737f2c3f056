"""Shared fixtures. Multi-process tests pin one thread per rank so they behave the same on
any core count, and every test has a timeout (pytest-timeout, see pyproject.toml)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "results.db"
