"""Club membership and fee charge rows: finding the club a member means, reading and
writing memberships and charges inside the caller's transaction."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, func, select

from loyalty_engine.domain.errors import ClubError, MemberErasedError, NotFoundError
from loyalty_engine.domain.periods import add_months
from loyalty_engine.engine.catalog import ProgramCatalog, VersionInForce
from loyalty_engine.records.events import Event, record_events
from loyalty_engine.rules.compiled_membership import SPEND_COUNTER, CompiledClub
from loyalty_engine.store import tables
from loyalty_engine.store.bulk import (
    Converters,
    chunked,
    insert_if_absent,
    insert_rows,
    select_typed_by_keys,
)

_members = tables.members
_enrolments = tables.enrolments
_memberships = tables.club_memberships
_charges = tables.fee_charges
_counters = tables.progress_counters

LIVE = ("pending", "active", "grace")  # a membership that has not ended
CHARGE_KEY = ("member_id", "program_id", "club_id", "kind", "term_start")  # one per term
MEMBER_ID = re.compile(r"[^\x00-\x1f\x7f]{1,64}")


def find_club(catalog: ProgramCatalog, club_id: str, program_id: str | None,
              at: datetime) -> tuple[VersionInForce, CompiledClub]:
    """The program version in force at `at` that defines the club (one must, uniquely)."""
    found = []
    for version in catalog.all_in_force(at):
        if program_id is not None and version.program_id != program_id:
            continue
        club = version.program.clubs.get(club_id)
        if club is not None:
            found.append((version, club))
    if not found:
        known = sorted({f"{c} ({v.program_id})" for v in catalog.all_in_force(at)
                        for c in v.program.clubs})
        where = f" in program {program_id!r}" if program_id else ""
        raise NotFoundError(f"no club {club_id!r}{where} in the programs in force at "
                            f"{at.isoformat()} (clubs: {', '.join(known) or 'none'})")
    if len(found) > 1:
        programs = ", ".join(v.program_id for v, _ in found)
        raise ClubError(f"club {club_id!r} exists in several programs ({programs}); "
                        "name one with --program")
    return found[0]


def ensure_member(conn: Connection, member_id: str, program_id: str, at: datetime,
                  now: datetime) -> None:
    """Create the member and their enrolment in the program if they are new."""
    if not MEMBER_ID.fullmatch(member_id) or member_id != member_id.strip():
        raise ClubError(f"{member_id!r} is not a member id: 1 to 64 printable characters "
                        "without surrounding spaces")
    refuse_erased(conn, member_id)
    convert = Converters(conn)
    insert_rows(conn, _members, ("member_id", "created_at", "attributes"),
                [(member_id, convert.when(now), "{}")], on_conflict=["member_id"])
    insert_rows(conn, _enrolments, ("member_id", "program_id", "enrolled_at", "source"),
                [(member_id, program_id, convert.when(at), "explicit")],
                on_conflict=["member_id", "program_id"])


def refuse_erased(conn: Connection, member_id: str) -> None:
    """Raise MemberErasedError if the member's personal data was erased (services/privacy.py):
    the id is not given new enrolments, attributes or consents."""
    erased_at = conn.execute(select(_members.c.erased_at).where(
        _members.c.member_id == member_id)).scalar()
    if erased_at is not None:
        raise MemberErasedError(f"member {member_id!r} was erased on "
                                f"{erased_at.date().isoformat()}; the id takes no new "
                                "enrolment or personal data")


def membership(conn: Connection, member_id: str, program_id: str, club_id: str) -> Any:
    """The member's membership row of a club, or None."""
    return conn.execute(select(_memberships).where(
        _memberships.c.member_id == member_id, _memberships.c.program_id == program_id,
        _memberships.c.club_id == club_id)).first()


def save_membership(conn: Connection, member_id: str, program_id: str, club_id: str,
                    now: datetime, **values: Any) -> None:
    """Insert the membership or change the given columns of it."""
    existing = membership(conn, member_id, program_id, club_id)
    values["updated_at"] = now
    if existing is None:
        row = {"member_id": member_id, "program_id": program_id, "club_id": club_id,
               "level": "", "status": "active", "source": "explicit", "joined_at": now,
               "auto_renew": False, **values}
        conn.execute(_memberships.insert().values(**row))
    else:
        conn.execute(_memberships.update().where(
            _memberships.c.member_id == member_id, _memberships.c.program_id == program_id,
            _memberships.c.club_id == club_id).values(**values))


def term_end(club: CompiledClub, start: datetime, zone: ZoneInfo,
             months: int | None = None) -> datetime:
    """The end of a term that starts at `start`: the same wall time in program time, N
    months later (a year from 28 February 23:30 UTC is 1 March in Berlin, not 29 Feb).
    months: a term of another length than the club's (a trial)."""
    local = start.astimezone(zone)
    shifted = add_months(local.date(), club.term_months if months is None else months)
    return datetime.combine(shifted, local.time(), zone).astimezone(start.tzinfo)


def new_charge(conn: Connection, member_id: str, version: VersionInForce, club: CompiledClub,
               level: str, kind: str, amount_minor: int, start: datetime, end: datetime,
               due_at: datetime, now: datetime, status: str = "due",
               detail: dict[str, Any] | None = None) -> Any:
    """Insert a charge and return its row; None if the member already has the charge of
    that kind for that term (the natural key: two clocks never raise it twice)."""
    values = {
        "member_id": member_id, "program_id": version.program_id, "club_id": club.club_id,
        "level": level, "kind": kind, "amount_minor": amount_minor,
        "currency": version.program.currency, "term_start": start, "term_end": end,
        "due_at": due_at, "status": status, "detail": detail or {}, "created_at": now,
        "updated_at": now,
    }
    inserted = insert_if_absent(conn, _charges, [values], CHARGE_KEY)
    if not inserted:
        return None
    row = inserted[0]
    if status == "due":
        record_events(conn, [fee_due_event(row)], now)
    return row


def new_to_club(conn: Connection, member_id: str, program_id: str, club_id: str) -> bool:
    """Whether the member never had a membership of the club (nor a charge of it, nor a
    place in a household of it): only such a member gets a level's trial and introductory
    fee."""
    if membership(conn, member_id, program_id, club_id) is not None:
        return False
    if conn.execute(select(_charges.c.id).where(
            _charges.c.member_id == member_id, _charges.c.program_id == program_id,
            _charges.c.club_id == club_id).limit(1)).first() is not None:
        return False
    h = tables.household_members
    return conn.execute(select(h.c.member_id).where(
        h.c.member_id == member_id, h.c.program_id == program_id,
        h.c.club_id == club_id).limit(1)).first() is None


def fee_due_event(row: Any) -> Event:
    """The outbox event of a charge raised and due."""
    return Event(f"fee_due:{row.id}", "fee_due", row.member_id, row.program_id, row.due_at,
                 {"charge_id": row.id, "club": row.club_id, "level": row.level,
                  "kind": row.kind, "amount_minor": row.amount_minor,
                  "currency": row.currency, "due_at": row.due_at.isoformat()})


def charge(conn: Connection, charge_id: int, lock: bool = False) -> Any:
    """A charge by id (NotFoundError if there is none)."""
    if not 0 < charge_id < 2**63:  # beyond the column's range: no such charge
        raise NotFoundError(f"there is no fee charge {charge_id}")
    query = select(_charges).where(_charges.c.id == charge_id)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise NotFoundError(f"there is no fee charge {charge_id}")
    return row


def open_charges(conn: Connection, member_id: str, program_id: str, club_id: str) -> list[Any]:
    """The unpaid charges (due or failed) of the member's current membership of a club,
    oldest first. Charges of an earlier membership that lapsed are closed: they are not
    owed again after the member rejoins."""
    current = membership(conn, member_id, program_id, club_id)
    if current is None:
        return []
    return list(conn.execute(select(_charges).where(
        _charges.c.member_id == member_id, _charges.c.program_id == program_id,
        _charges.c.club_id == club_id, _charges.c.status.in_(("due", "failed")),
        _charges.c.term_start >= current.joined_at)
        .order_by(_charges.c.id)))


def set_charge(conn: Connection, charge_id: int, now: datetime, **values: Any) -> None:
    """Change a charge's columns."""
    conn.execute(_charges.update().where(_charges.c.id == charge_id)
                 .values(updated_at=now, **values))


def spend_before(conn: Connection, member_ids: list[str], program_id: str,
                 version: VersionInForce, end: datetime) -> dict[str, int]:
    """Eligible spend of members in the 12 months up to `end`'s local day, by member."""
    zone = version.program.timezone
    last = end.astimezone(zone).date()  # its spend so far counts too
    first = add_months(last, -12) + timedelta(days=1)
    if not member_ids:
        return {}
    rows = conn.execute(
        select(_counters.c.member_id, func.sum(_counters.c.value))
        .where(_counters.c.program_id == program_id, _counters.c.counter == SPEND_COUNTER,
               _counters.c.period >= first.isoformat(), _counters.c.period <= last.isoformat(),
               _counters.c.member_id.in_(member_ids))
        .group_by(_counters.c.member_id))
    return {member_id: int(total or 0) for member_id, total in rows}


def prorated(amount_minor: int, at: datetime, start: datetime, end: datetime) -> int:
    """amount x (time left of the term / the whole term), rounded half up to a minor unit."""
    whole = (end - start) / timedelta(seconds=1)
    left = min(whole, max(0.0, (end - at) / timedelta(seconds=1)))  # never more than a term
    if whole <= 0:
        return 0
    # Integer arithmetic on whole seconds: money is never a float.
    numerator = amount_minor * int(left)
    denominator = int(whole)
    quotient, remainder = divmod(numerator, denominator)
    return quotient + (1 if 2 * remainder >= denominator else 0)


def charge_json(row: Any) -> dict[str, Any]:
    """A charge as plain data."""
    return {
        "charge_id": row.id, "member_id": row.member_id, "program_id": row.program_id,
        "club_id": row.club_id, "level": row.level, "kind": row.kind,
        "amount_minor": row.amount_minor, "currency": row.currency,
        "term_start": row.term_start, "term_end": row.term_end, "due_at": row.due_at,
        "status": row.status, "paid_at": row.paid_at, "paid_via": row.paid_via,
        "paid_ref": row.paid_ref, "points": row.points, "refunded_minor": row.refunded_minor,
        "detail": row.detail,
    }


def membership_json(row: Any) -> dict[str, Any]:
    """A membership as plain data."""
    return {
        "member_id": row.member_id, "program_id": row.program_id, "club_id": row.club_id,
        "level": row.level, "status": row.status, "source": row.source,
        "joined_at": row.joined_at, "term_start": row.term_start, "term_end": row.term_end,
        "auto_renew": bool(row.auto_renew), "ended_at": row.ended_at,
    }


# --- households: secondary members sharing a primary's fee-club membership --------------

_households = tables.household_members
_INSTANT = timedelta(microseconds=1)  # the smallest step of a stored instant


def live_household(conn: Connection, program_id: str, club_id: str, *,
                   primary: str | None = None, secondary: str | None = None) -> list[Any]:
    """Household rows not removed whose primary's membership is still the one they were
    added to and has not ended (pending, active or grace, joined before the row)."""
    h, m = _households, _memberships
    query = select(h).join(m, (m.c.member_id == h.c.primary_member_id)
                           & (m.c.program_id == h.c.program_id)
                           & (m.c.club_id == h.c.club_id)).where(
        h.c.program_id == program_id, h.c.club_id == club_id, h.c.removed_at.is_(None),
        m.c.status.in_(LIVE), m.c.joined_at <= h.c.added_at)
    if primary is not None:
        query = query.where(h.c.primary_member_id == primary)
    if secondary is not None:
        query = query.where(h.c.member_id == secondary)
    return list(conn.execute(query.order_by(h.c.added_at, h.c.member_id)))


def add_household_row(conn: Connection, secondary: str, program_id: str, club_id: str,
                      primary: str, at: datetime, now: datetime) -> None:
    """A new stint of a secondary in a primary's household, from `at`."""
    conn.execute(_households.insert().values(
        member_id=secondary, program_id=program_id, club_id=club_id, added_at=at,
        primary_member_id=primary, removed_at=None, updated_at=now))


def end_household_row(conn: Connection, row: Any, at: datetime, now: datetime) -> None:
    """End a secondary's stint at `at`."""
    h = _households
    conn.execute(h.update().where(
        h.c.member_id == row.member_id, h.c.program_id == row.program_id,
        h.c.club_id == row.club_id, h.c.added_at == row.added_at,
    ).values(removed_at=at, updated_at=now))


def close_ended_households(conn: Connection, program_id: str, club_id: str,
                           now: datetime, primary: str | None = None) -> int:
    """Close, at the primary's end, the household rows of memberships that have ended
    (lapsed, cancelled): one statement for the club. Benefits already stop at the
    primary's end when purchases are judged; this records it, so a primary who joins
    again starts with an empty household."""
    h, m = _households, _memberships
    primary_of = ((m.c.member_id == h.c.primary_member_id) & (m.c.program_id == h.c.program_id)
                  & (m.c.club_id == h.c.club_id))
    ended = select(m.c.ended_at).where(primary_of).scalar_subquery()
    query = h.update().where(
        h.c.program_id == program_id, h.c.club_id == club_id, h.c.removed_at.is_(None),
        select(m.c.member_id).where(primary_of, m.c.status.not_in(LIVE),
                                    m.c.ended_at.is_not(None)).exists())
    if primary is not None:
        query = query.where(h.c.primary_member_id == primary)
    return conn.execute(query.values(removed_at=ended, updated_at=now)).rowcount


def household_owners(conn: Connection, program_id: str, rows: Sequence[Any],
                     period_of: Any) -> list[tuple[str, str, int]]:
    """Rebate spend (member, period, spend) with each secondary's spend moved to the
    primary whose household of this program they were in during that period (a stint from
    added_at up to, not including, removed_at, in period keys from period_of(instant)),
    summed per (member, period) and in (period, member) order. Programs without households
    come back as they were."""
    found = [(str(r[0]), str(r[1]), int(r[2])) for r in rows]
    members = sorted({member for member, _, _ in found})
    if not members:
        return found
    h = _households
    stints: dict[str, list[tuple[datetime, str, str | None, str]]] = {}
    for part in chunked(members):
        for secondary, added_at, removed_at, primary in select_typed_by_keys(
                conn, h, ("program_id", "member_id"), [(program_id, m) for m in part],
                ("member_id", "added_at", "removed_at", "primary_member_id")):
            # The stint's last instant is just before its removal: removed at 1 February
            # 00:00, none of February is the household's.
            last = None if removed_at is None else period_of(removed_at - _INSTANT)
            stints.setdefault(secondary, []).append(
                (added_at, period_of(added_at), last, primary))
    if not stints:
        return found
    totals: dict[tuple[str, str], int] = {}
    for member, period, value in found:
        owner = member
        # In the order they began: the latest stint reaching into the period owns it.
        for _, first, last, primary in sorted(stints.get(member, []), key=lambda s: s[0]):
            if first <= period and (last is None or period <= last):
                owner = primary
        totals[(owner, period)] = totals.get((owner, period), 0) + value
    return [(member, period, value) for (member, period), value
            in sorted(totals.items(), key=lambda item: (item[0][1], item[0][0]))]


def household_spend(conn: Connection, program_id: str, counter: str, period: str,
                    member_id: str, period_of: Any) -> tuple[str, int]:
    """Whose rebate a member's spend of a period counts for (the primary of the household
    they were in then, or themselves) and that owner's whole spend of the period: their
    own and every household member's that the period moves to them."""
    [(owner, _, _)] = household_owners(conn, program_id, [(member_id, period, 0)],
                                       period_of)
    h, c = _households, tables.progress_counters
    members = {owner, *(r.member_id for r in conn.execute(
        select(h.c.member_id).where(h.c.program_id == program_id,
                                    h.c.primary_member_id == owner)))}
    rows = conn.execute(select(c.c.member_id, c.c.period, c.c.value).where(
        c.c.program_id == program_id, c.c.counter == counter, c.c.period == period,
        c.c.member_id.in_(sorted(members)))).all()
    spend = sum(value for who, _, value in household_owners(conn, program_id, rows, period_of)
                if who == owner)
    return owner, spend


def household_rows(conn: Connection, member_id: str) -> list[dict[str, Any]]:
    """Household stints a member is in, as the secondary or the primary, oldest first."""
    h = _households
    return [{"primary_member_id": r.primary_member_id, "member_id": r.member_id,
             "program_id": r.program_id, "club_id": r.club_id, "added_at": r.added_at,
             "removed_at": r.removed_at}
            for r in conn.execute(select(h).where(
                (h.c.member_id == member_id) | (h.c.primary_member_id == member_id))
                .order_by(h.c.added_at, h.c.member_id))]
