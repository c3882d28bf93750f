"""Member events appended to the outbox under their natural key: once, whoever records them
and however often (`services/outbox.py` lists them for CRMs)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection

from loyalty_engine.store import tables
from loyalty_engine.store.bulk import Converters, insert_rows

_events = tables.member_events


class Event(NamedTuple):
    """One event to record: its natural key, kind, member, program, when, and data."""

    key: str
    kind: str
    member_id: str
    program_id: str
    occurred_at: datetime
    data: dict[str, Any]


def record_events(conn: Connection, events: Sequence[Event], now: datetime) -> int:
    """Append events in the caller's transaction; one already recorded (same key) is
    skipped. Returns how many were new."""
    if not events:
        return 0
    convert = Converters(conn)
    # One statement may not hit the same key twice; a key too long for the column is kept
    # as its digest (still unique, still natural).
    unique = {_fit(e.key): e for e in events}
    return insert_rows(
        conn, _events,
        ("key", "kind", "member_id", "program_id", "occurred_at", "data", "recorded_at"),
        [(key, e.kind, e.member_id, e.program_id, convert.when(e.occurred_at),
          convert.json(e.data), convert.when(now)) for key, e in unique.items()],
        on_conflict=["key"],
    )


KEY_LENGTH = 240  # the key column's size


def _fit(key: str) -> str:
    return key if len(key) <= KEY_LENGTH else "sha256:" + hashlib.sha256(key.encode()).hexdigest()
