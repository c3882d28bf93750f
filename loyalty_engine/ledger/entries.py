"""Appending ledger entries (the ledger is append-only: triggers refuse UPDATE and DELETE)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from loyalty_engine.store import tables
from loyalty_engine.store.bulk import Converters, insert_with_ids

_ledger = tables.ledger_entries

# Every entry's columns; `ref` is the natural key of entries other than a purchase's earnings.
LEDGER_COLUMNS = ("id", "member_id", "program_id", "program_version_id", "kind", "points",
                  "purchase_id", "rule_id", "occurred_at", "recorded_at", "reason", "ref")


@dataclass(frozen=True, slots=True)
class Entry:
    """One point change: points (signed) of a kind, dated when it happened, with its reason."""

    member_id: str
    program_id: str
    version_id: int
    kind: str
    points: int
    at: datetime
    reason: dict[str, Any] | str  # str: JSON text already (a purchase's awards carry theirs)
    ref: str | None = None
    rule_id: str = ""
    purchase_id: int | None = None


class Times:
    """Datetimes as the driver stores them, each converted once (a batch shares a few)."""

    def __init__(self, conn: Connection) -> None:
        self._convert = Converters(conn)
        self._seen: dict[datetime | None, Any] = {}

    def __call__(self, value: datetime | None) -> Any:
        """The stored form of value."""
        found = self._seen.get(value, self)
        if found is self:
            found = self._seen[value] = self._convert.when(value)
        return found


def as_json(reason: dict[str, Any] | str) -> str:
    """A reason as JSON text."""
    return reason if isinstance(reason, str) else Converters.json(reason)


def append(conn: Connection, entries: Sequence[Entry], now: datetime,
           times: Times | None = None) -> list[int]:
    """Insert the entries in one statement and return their ids, in order."""
    if not entries:
        return []
    when = times or Times(conn)
    recorded = when(now)
    # The ids come back from the insert on SQLite (no max(id) read).
    return insert_with_ids(conn, _ledger, LEDGER_COLUMNS[1:], [
        (e.member_id, e.program_id, e.version_id, e.kind, e.points, e.purchase_id,
         e.rule_id, when(e.at), recorded, as_json(e.reason), e.ref)
        for e in entries])
