"""The audit trail: operators' acts on the books (adjustments, erasures), who did them and why."""

from __future__ import annotations

import getpass
import os
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from loyalty_engine.store import tables

_audit = tables.audit_records


def operator_name(given: str | None) -> str:
    """Who an operator at the command line is: `--by`, else the OS user (never empty)."""
    if given is not None and given.strip():
        return given.strip()[:100]
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name in a container, say
        user = os.environ.get("USER", "")
    return f"os:{user or 'unknown'}"[:100]


def record_audit(conn: Connection, at: datetime, actor: str, action: str,
                 member_id: str | None, program_id: str | None, reason: str,
                 details: dict[str, Any]) -> int:
    """Append an audit record in the caller's transaction; returns its id."""
    result = conn.execute(_audit.insert().values(
        at=at, actor=actor, action=action, member_id=member_id, program_id=program_id,
        reason=reason, details=details))
    key = result.inserted_primary_key
    return int(key[0]) if key else 0


def audit_rows(conn: Connection, member_id: str) -> list[dict[str, Any]]:
    """A member's audit records, oldest first."""
    return [dict(r._mapping) for r in conn.execute(
        select(_audit).where(_audit.c.member_id == member_id).order_by(_audit.c.id))]
