"""Enrolling members explicitly, with attributes, and recording consent flags; a member's
clubs, fee charges and group verifications at a glance."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, select

from loyalty_engine.domain.errors import MemberError, NotFoundError
from loyalty_engine.records.memberships import (
    MEMBER_ID,
    charge_json,
    ensure_member,
    household_rows,
    refuse_erased,
)
from loyalty_engine.services.clubs import club_rows
from loyalty_engine.services.groups import verification_rows
from loyalty_engine.services.programs import load_catalog
from loyalty_engine.store import tables
from loyalty_engine.store.bulk import Converters, insert_rows
from loyalty_engine.store.locks import lock_member
from loyalty_engine.store.unit_of_work import read_use_case, write_use_case

_members = tables.members
_consents = tables.member_consents
_charges = tables.fee_charges

FLAG = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


@write_use_case
def enrol_member(conn: Connection, member_id: str, attributes: dict[str, Any],
                 consents: dict[str, bool], at: datetime, now: datetime,
                 program_id: str | None = None) -> dict[str, Any]:
    """Create a member (or update one; `created` in the result tells): attributes are merged
    in, consents recorded with their time. With a program, the member is also enrolled in
    it (open clubs that enrol on a first purchase still wait for that purchase)."""
    if not MEMBER_ID.fullmatch(member_id) or member_id != member_id.strip():
        raise MemberError(f"{member_id!r} is not a member id: 1 to 64 printable characters "
                          "without surrounding spaces")
    for flag in consents:
        _check_flag(flag)
    refuse_erased(conn, member_id)
    convert = Converters(conn)
    existed = conn.execute(select(_members.c.member_id).where(
        _members.c.member_id == member_id)).first() is not None
    if program_id is not None:
        if load_catalog(conn).in_force(program_id, at) is None:
            raise NotFoundError(f"program {program_id!r} is not in force at "
                                f"{at.isoformat()}")
        ensure_member(conn, member_id, program_id, at, now)
    else:
        insert_rows(conn, _members, ("member_id", "created_at", "attributes"),
                    [(member_id, convert.when(now), "{}")], on_conflict=["member_id"])
    lock_member(conn, member_id)
    current = conn.execute(select(_members.c.attributes).where(
        _members.c.member_id == member_id)).scalar()
    merged = {**dict(current or {}), **attributes}
    conn.execute(_members.update().where(_members.c.member_id == member_id)
                 .values(attributes=merged))
    for flag, given in sorted(consents.items()):
        _record_consent(conn, member_id, flag, given, at)
    return {**_member_data(conn, member_id), "created": not existed}


@write_use_case
def set_consent(conn: Connection, member_id: str, flag: str, given: bool, at: datetime
                ) -> dict[str, Any]:
    """Record a consent given or withdrawn at an instant (conditions see it at once)."""
    _check_flag(flag)
    if not lock_member(conn, member_id):
        raise NotFoundError(f"there is no member {member_id!r}")
    refuse_erased(conn, member_id)
    _record_consent(conn, member_id, flag, given, at)
    return _member_data(conn, member_id)


def _check_flag(flag: str) -> None:
    if not FLAG.match(flag):
        raise MemberError(f"{flag!r} is not a consent flag: lower-case letters, digits, '-' "
                          "and '_', starting with a letter (e.g. marketing)")


def _record_consent(conn: Any, member_id: str, flag: str, given: bool, at: datetime) -> None:
    key = and_(_consents.c.member_id == member_id, _consents.c.flag == flag)
    values: dict[str, Any] = {"given": given, "changed_at": at}
    values["given_at" if given else "withdrawn_at"] = at
    if conn.execute(select(_consents.c.flag).where(key)).first() is None:
        conn.execute(_consents.insert().values(member_id=member_id, flag=flag, **values))
    else:
        conn.execute(_consents.update().where(key).values(**values))


def _member_data(conn: Any, member_id: str) -> dict[str, Any]:
    row = conn.execute(select(_members).where(_members.c.member_id == member_id)).one()
    consents = [{"flag": c.flag, "given": bool(c.given), "given_at": c.given_at,
                 "withdrawn_at": c.withdrawn_at}
                for c in conn.execute(select(_consents).where(
                    _consents.c.member_id == member_id).order_by(_consents.c.flag))]
    return {"member_id": member_id, "created_at": row.created_at,
            "attributes": dict(row.attributes or {}), "consents": consents}


@read_use_case
def member_clubs(conn: Connection, member_id: str, as_of: datetime) -> dict[str, Any]:
    """A member's club memberships, fee charges (newest first), group verifications and
    household stints (as the secondary, or of their secondaries as the primary)."""
    if conn.execute(select(_members.c.member_id).where(
            _members.c.member_id == member_id)).first() is None:
        raise NotFoundError(f"there is no member {member_id!r}")
    days = {(v.program_id, g.group_id): g.reverify_days
            for v in load_catalog(conn).all_in_force(as_of)
            for g in v.program.groups.values()}
    charges = [charge_json(r) for r in conn.execute(
        select(_charges).where(_charges.c.member_id == member_id)
        .order_by(_charges.c.id.desc()))]
    return {"member_id": member_id, "clubs": club_rows(conn, member_id),
            "charges": charges, "verifications": verification_rows(conn, member_id, days),
            "households": household_rows(conn, member_id)}
