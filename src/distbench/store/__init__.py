"""Results store: SQLite with a versioned schema (``db.py``) and CSV / JSON exports
(``export.py``)."""

from distbench.store.db import ResultStore, open_store

__all__ = ["ResultStore", "open_store"]
