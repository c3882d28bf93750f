"""Members' standing for a batch: loading tiers, clubs, verifications and consents into the
planner's book, and writing the tier changes and club joins that planning decided."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, select

from loyalty_engine.domain.decisions import MemberView, TierChange
from loyalty_engine.engine.catalog import ProgramCatalog
from loyalty_engine.store import tables
from loyalty_engine.store.bulk import Converters, chunked, insert_rows

_status = tables.tier_status
_history = tables.tier_history
_memberships = tables.club_memberships
_verifications = tables.group_verifications
_consents = tables.member_consents
_enrolments = tables.enrolments

ACTIVE = ("active", "grace")  # club states whose benefits apply


def load_standings(conn: Connection, catalog: ProgramCatalog, member_ids: Sequence[str],
                   members: dict[str, MemberView]) -> None:
    """Fill members' standings (for every program with tiers, clubs or groups) and consents.

    A few chunked queries per table, whatever the number of members."""
    zones = {pid: catalog.versions(pid)[-1].program.timezone for pid in catalog.program_ids}
    for part in chunked(list(member_ids)):
        for row in conn.execute(select(_status).where(_status.c.member_id.in_(part))):
            standing = _view(members, row.member_id).standing(row.program_id)
            standing.tier = row.tier
            standing.held_until = row.held_until
            standing.manual_tier = row.manual_tier or ""
            standing.manual_until = row.manual_until
            standing.has_tier_row = True
            standing.enrolled_on = row.enrolled_on
        for row in conn.execute(
            select(_enrolments.c.member_id, _enrolments.c.program_id, _enrolments.c.enrolled_at)
            .where(_enrolments.c.member_id.in_(part))
        ):
            standing = _view(members, row.member_id).standing(row.program_id)
            zone = zones.get(row.program_id)
            if standing.enrolled_on is None and zone is not None:
                standing.enrolled_on = row.enrolled_at.astimezone(zone).date()
        for row in conn.execute(
            select(_memberships.c.member_id, _memberships.c.program_id, _memberships.c.club_id,
                   _memberships.c.level, _memberships.c.status, _memberships.c.joined_at,
                   _memberships.c.term_start, _memberships.c.ended_at)
            .where(_memberships.c.member_id.in_(part))
        ):
            standing = _view(members, row.member_id).standing(row.program_id)
            standing.known_clubs = standing.known_clubs | {row.club_id}
            # Benefits from the join (a paid club: from the first paid term) until the end;
            # a membership that has ended still counts for purchases made while it ran.
            since = row.term_start if row.level else row.joined_at
            if row.status in ACTIVE or (row.ended_at is not None and since is not None):
                standing.clubs[row.club_id] = row.level
                if since is not None:
                    standing.club_since[row.club_id] = since
                if row.status not in ACTIVE and row.ended_at is not None:
                    standing.club_until[row.club_id] = row.ended_at
        for row in conn.execute(
            select(_verifications.c.member_id, _verifications.c.program_id,
                   _verifications.c.group_id)
            .where(_verifications.c.member_id.in_(part), _verifications.c.status == "active")
        ):
            standing = _view(members, row.member_id).standing(row.program_id)
            standing.verified = standing.verified | {row.group_id}
        for row in conn.execute(
            select(_consents.c.member_id, _consents.c.flag, _consents.c.given,
                   _consents.c.given_at, _consents.c.withdrawn_at)
            .where(_consents.c.member_id.in_(part))
        ):
            view = _view(members, row.member_id)
            if row.given:  # from when it was (last) given
                view.consent_spans[row.flag] = (row.given_at, None)
            elif row.given_at is not None and row.withdrawn_at is not None and (
                row.given_at < row.withdrawn_at
            ):  # held from when it was given until it was withdrawn
                view.consent_spans[row.flag] = (row.given_at, row.withdrawn_at)


def _view(members: dict[str, MemberView], member_id: str) -> MemberView:
    found = members.get(member_id)
    if found is None:
        found = members[member_id] = MemberView(member_id)
    return found


def write_tier_changes(conn: Connection, changes: list[tuple[str, TierChange, date, datetime]],
                       now: datetime, ref: str | None = None) -> None:
    """Store tier changes: (member, change, enrolled_on, at). The status row keeps the
    last change of each member and program; the history keeps every one."""
    if not changes:
        return
    convert = Converters(conn)
    # In the order they happened (a batch is stored in key order, not time order), so that
    # the status row ends at the member's latest tier.
    changes = sorted(changes, key=lambda change: change[3])
    last: dict[tuple[str, str], tuple[TierChange, date, datetime]] = {}
    for member_id, change, enrolled_on, at in changes:
        last[(member_id, change.program_id)] = (change, enrolled_on, at)
    stamp = convert.when(now)
    # A new row's base (what a refund may fall back to) is what enrolment guarantees.
    base = {(m, c.program_id): c.base for m, c, _, _ in changes if c.base is not None}
    insert_rows(
        conn, _status,
        ("member_id", "program_id", "tier", "base_tier", "held_until", "base_held_until",
         "enrolled_on", "updated_at"),
        [(member_id, program_id, change.to_tier,
          base.get((member_id, program_id), change.to_tier), change.held_until,
          None, enrolled_on, stamp)
         for (member_id, program_id), (change, enrolled_on, _) in sorted(last.items())],
        on_conflict=["member_id", "program_id"],
        # An upgrade keeps base_tier: what a refund may fall back to is the reviewed tier.
        update={"tier": "excluded.tier", "held_until": "excluded.held_until",
                "updated_at": "excluded.updated_at"},
    )
    insert_rows(
        conn, _history,
        ("member_id", "program_id", "from_tier", "to_tier", "reason", "changed_at", "detail",
         "ref"),
        [(member_id, change.program_id, change.from_tier, change.to_tier, change.reason,
          convert.when(at), convert.json(_detail(change)), ref)
         for member_id, change, _, at in changes],
    )


def _detail(change: TierChange) -> dict[str, Any]:
    detail = dict(change.detail)
    if change.held_until is not None:
        detail["held_until"] = change.held_until.isoformat()
    return detail


def write_club_joins(conn: Connection, joins: list[tuple[str, str, str, datetime]],
                     now: datetime) -> None:
    """Open clubs joined by a first purchase: (member, program, club, at); never twice."""
    if not joins:
        return
    convert = Converters(conn)
    first: dict[tuple[str, str, str], datetime] = {}
    for member_id, program_id, club_id, at in joins:
        key = (member_id, program_id, club_id)
        if key not in first or at < first[key]:
            first[key] = at
    stamp = convert.when(now)
    insert_rows(
        conn, _memberships,
        ("member_id", "program_id", "club_id", "level", "status", "source", "joined_at",
         "auto_renew", "updated_at"),
        [(m, p, c, "", "active", "purchase", convert.when(at), False, stamp)
         for (m, p, c), at in sorted(first.items())],
        on_conflict=["member_id", "program_id", "club_id"],
    )
