"""Affinity groups: operators' verifications, eligibility, and its lapse at review."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, and_, select

from loyalty_engine.domain.errors import NotFoundError, VerificationError
from loyalty_engine.domain.periods import add_months
from loyalty_engine.engine.catalog import VersionInForce
from loyalty_engine.records.events import Event, record_events
from loyalty_engine.services.programs import load_catalog
from loyalty_engine.store import tables
from loyalty_engine.store.locks import lock_member
from loyalty_engine.store.unit_of_work import read_use_case, write_use_case

_verifications = tables.group_verifications
_memberships = tables.club_memberships
_members = tables.members


@write_use_case
def verify_member(conn: Connection, member_id: str, group_id: str, until: datetime,
                  evidence: str, at: datetime, now: datetime,
                  program_id: str | None = None) -> dict[str, Any]:
    """Record that an operator saw evidence the member belongs to a group, valid until a
    date. A re-verification replaces the previous one (and revives a lapsed one)."""
    if until <= at:
        raise VerificationError(f"--until {until.isoformat()} is not after "
                                f"{at.isoformat()}; a verification must expire in the future")
    if not evidence.strip() or len(evidence) > 200:
        raise VerificationError("--evidence must name what was seen (a document reference), "
                                "in at most 200 characters")

    version = _program_with_group(conn, group_id, program_id, at)
    group = version.program.groups[group_id]
    if not group.verified:
        raise VerificationError(
            f"group {group_id!r} is decided by the {group.age_attribute!r} attribute, "
            "not by verification; set the attribute with `loyalty members enrol`")
    latest = add_months(at.date(), group.max_months)
    if until.date() > latest:
        raise VerificationError(
            f"a verification for {group_id!r} may be valid for at most "
            f"{group.max_months} months (until {latest}); --until "
            f"{until.date()} is later")
    if not lock_member(conn, member_id):
        raise NotFoundError(f"there is no member {member_id!r}; enrol them first "
                            "(`loyalty members enrol`)")
    key = and_(_verifications.c.member_id == member_id,
               _verifications.c.program_id == version.program_id,
               _verifications.c.group_id == group_id)
    values = {"evidence": evidence, "verified_at": at, "verified_until": until,
              "status": "active", "lapsed_at": None, "updated_at": now}
    if conn.execute(select(_verifications.c.group_id).where(key)).first() is None:
        conn.execute(_verifications.insert().values(
            member_id=member_id, program_id=version.program_id, group_id=group_id,
            **values))
    else:
        conn.execute(_verifications.update().where(key).values(**values))
    return verification_json(conn.execute(select(_verifications).where(key)).one(),
                             group.reverify_days)


def _program_with_group(conn: Connection, group_id: str, program_id: str | None,
                        at: datetime) -> VersionInForce:
    found = [v for v in load_catalog(conn).all_in_force(at)
             if group_id in v.program.groups
             and (program_id is None or v.program_id == program_id)]
    if not found:
        raise NotFoundError(f"no program in force defines group {group_id!r}")
    if len(found) > 1:
        raise VerificationError(f"group {group_id!r} exists in several programs "
                                f"({', '.join(v.program_id for v in found)}); name one "
                                "with --program")
    return found[0]


def eligible(conn: Connection, version: VersionInForce, member_id: str, group_id: str,
             at: datetime) -> bool:
    """Whether the member is in the group at `at`: a verification valid then, or the age
    attribute's rule on the program's local date."""
    group = version.program.groups[group_id]
    if group.verified and conn.execute(select(_verifications.c.group_id).where(
        _verifications.c.member_id == member_id,
        _verifications.c.program_id == version.program_id,
        _verifications.c.group_id == group_id, _verifications.c.status == "active",
        _verifications.c.verified_until > at)).first() is not None:
        return True
    if group.age_attribute is None:
        return False
    attributes = conn.execute(select(_members.c.attributes).where(
        _members.c.member_id == member_id)).scalar()
    return group.eligible_by_age(dict(attributes or {}),
                                 at.astimezone(version.program.timezone).date())


class EligibilityLapsed(NamedTuple):
    """What recording lapsed eligibility did: verifications, and memberships with them."""

    verifications: int
    memberships: int


def lapse_eligibility(conn: Connection, version: VersionInForce, as_of: datetime,
                      now: datetime) -> EligibilityLapsed:
    """Verifications past their date lapse; affinity memberships whose member is no longer
    in the group lapse with them. This records what already happened: the benefits
    stopped at the verification's end (engine.standing), whenever this runs."""
    program = version.program
    v = _verifications
    expired = conn.execute(v.update().where(
        v.c.program_id == version.program_id, v.c.status == "active",
        v.c.verified_until <= as_of).values(status="lapsed", lapsed_at=as_of, updated_at=now))
    lapsed_memberships = 0
    m = _memberships
    for club in program.clubs.values():
        if club.kind != "affinity" or club.group is None:
            continue
        group = program.groups[club.group]
        rows = conn.execute(select(m.c.member_id, _members.c.attributes)
                            .join(_members, _members.c.member_id == m.c.member_id)
                            .where(m.c.program_id == version.program_id,
                                   m.c.club_id == club.club_id,
                                   m.c.status == "active")).all()
        if not rows:
            continue
        verified = {r.member_id for r in conn.execute(select(v.c.member_id).where(
            v.c.program_id == version.program_id, v.c.group_id == club.group,
            v.c.status == "active"))} if group.verified else set()
        today = as_of.astimezone(program.timezone).date()
        gone = [r.member_id for r in rows if r.member_id not in verified
                and not group.eligible_by_age(dict(r.attributes or {}), today)]
        if gone:
            conn.execute(m.update().where(
                m.c.program_id == version.program_id, m.c.club_id == club.club_id,
                m.c.member_id.in_(gone)).values(status="lapsed", ended_at=as_of,
                                                updated_at=now))
            lapsed_memberships += len(gone)
            record_events(conn, [Event(
                f"lapsed:{version.program_id}:{club.club_id}:{member_id}:{as_of.isoformat()}",
                "membership_lapsed", member_id, version.program_id, as_of,
                {"club": club.club_id, "why": f"no longer in group {club.group}"})
                for member_id in gone], now)
    return EligibilityLapsed(expired.rowcount, lapsed_memberships)


def verification_rows(conn: Connection, member_id: str,
                      catalog_days: dict[tuple[str, str], int]) -> list[dict[str, Any]]:
    """A member's verifications, with the date re-verification falls due."""
    return [verification_json(r, catalog_days.get((r.program_id, r.group_id), 30))
            for r in conn.execute(select(_verifications).where(
                _verifications.c.member_id == member_id)
                .order_by(_verifications.c.program_id, _verifications.c.group_id))]


def verification_json(row: Any, reverify_days: int) -> dict[str, Any]:
    """A verification as plain data, with when to re-verify."""
    return {"member_id": row.member_id, "program_id": row.program_id,
            "group_id": row.group_id, "evidence": row.evidence,
            "verified_at": row.verified_at, "verified_until": row.verified_until,
            "reverify_from": row.verified_until - timedelta(days=reverify_days),
            "status": row.status, "lapsed_at": row.lapsed_at}


@read_use_case
def reverifications_due(conn: Connection, as_of: datetime, *,
                        versions: list[VersionInForce] | None = None) -> list[dict[str, Any]]:
    """Verifications whose re-verification has fallen due by as_of and that have not lapsed
    yet (verified_until - reverify_days <= as_of < verified_until), soonest lapse first.
    versions: the programs' versions whose re-verification days apply (else all in force)."""
    found = []
    days = {(v.program_id, g.group_id): g.reverify_days
            for v in (load_catalog(conn).all_in_force(as_of) if versions is None else versions)
            for g in v.program.groups.values()}
    for row in conn.execute(select(_verifications).where(
            _verifications.c.status == "active", _verifications.c.verified_until > as_of)
            .order_by(_verifications.c.verified_until, _verifications.c.member_id)):
        data = verification_json(row, days.get((row.program_id, row.group_id), 30))
        if data["reverify_from"] <= as_of:
            found.append(data)
    return found
