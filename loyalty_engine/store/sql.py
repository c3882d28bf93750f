"""Small SQL helpers shared by services: dialect-aware upserts and chunked IN lists."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

T = TypeVar("T")

# SQLite allows 32,766 bound parameters per statement; stay well below for multi-column keys.
IN_CHUNK = 4000


def insert_for(conn: Connection, table: Table) -> Any:
    """An INSERT that knows ON CONFLICT for this connection's dialect."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def chunked(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """Consecutive slices of items, each at most size long."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
