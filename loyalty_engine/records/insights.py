"""What a member's insights read besides their snapshots (records/member_figures.
snapshots_in_force): the programs they are enrolled in by an instant."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select

from loyalty_engine.store import tables

_enrolments = tables.enrolments


def enrolled_by(conn: Connection, member_id: str, as_of: datetime) -> dict[str, datetime]:
    """program -> when the member was enrolled in it, for enrolments made by as_of, by
    program id."""
    return {program_id: at for program_id, at in conn.execute(
        select(_enrolments.c.program_id, _enrolments.c.enrolled_at)
        .where(_enrolments.c.member_id == member_id, _enrolments.c.enrolled_at <= as_of)
        .order_by(_enrolments.c.program_id))}
