"""Looking inside a SQLite file without an engine: its header's application id."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def application_id(path: Path) -> int | None:
    """The application id in a SQLite file's header (PRAGMA application_id), read only;
    None when the file is no SQLite database that can be read."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            mark = conn.execute("PRAGMA application_id").fetchone()[0]
    except sqlite3.Error:
        return None
    return int(mark)
