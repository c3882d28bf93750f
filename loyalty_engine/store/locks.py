"""Row locks that serialise writers of one member: always taken in member-id order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVarTuple

from sqlalchemy import Connection, Row, Select, select

from loyalty_engine.store import tables
from loyalty_engine.store.bulk import lock_rows

_members = tables.members
_Ts = TypeVarTuple("_Ts")


def lock_member(conn: Connection, member_id: str) -> bool:
    """Lock the member's row until the transaction ends (PostgreSQL; SQLite's write lock
    already excludes other writers). False if there is no such member. Writers of several
    members lock them in member-id order (store/bulk.lock_rows), so none waits in a cycle."""
    query = select(_members.c.member_id).where(_members.c.member_id == member_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).first() is not None


def read_with_members_locked(conn: Connection,
                             query: Select[*_Ts]) -> Sequence[Row[*_Ts]]:
    """The rows of a job's query (which has a member_id column), read again after their
    members' row locks are taken (PostgreSQL): a refund that holds a member's lock while it
    lowers a counter commits before the job decides on that member, or waits for the job
    and then sees what it wrote. Read once only, a job would decide on counters a refund
    was changing and neither would see the other (SQLite's write lock already excludes
    this)."""
    rows = conn.execute(query).all()
    if conn.dialect.name != "postgresql" or not rows:
        return rows
    lock_rows(conn, _members, "member_id", sorted({r.member_id for r in rows}))
    return conn.execute(query).all()


def lock_members(conn: Connection, member_ids: Sequence[str]) -> set[str]:
    """Lock these members' rows in member-id order until the transaction ends (PostgreSQL),
    as every writer of several members does, so two such writers wait for each other rather
    than deadlock; the ids that exist."""
    query = (select(_members.c.member_id).where(_members.c.member_id.in_(sorted(set(member_ids))))
             .order_by(_members.c.member_id))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return {row.member_id for row in conn.execute(query)}
