"""Row locks that serialise writers of one member: always taken in member-id order."""

from __future__ import annotations

from sqlalchemy import Connection, select

from loyalty_engine.store import tables

_members = tables.members


def lock_member(conn: Connection, member_id: str) -> bool:
    """Lock the member's row until the transaction ends (PostgreSQL; SQLite's write lock
    already excludes other writers). False if there is no such member. Writers of several
    members lock them in member-id order (store/bulk.lock_rows), so none waits in a cycle."""
    query = select(_members.c.member_id).where(_members.c.member_id == member_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).first() is not None
