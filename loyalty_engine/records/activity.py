"""Which months each member bought in, as of an instant, and the groups retention is split
by: one grouped pass over a program's counted purchases, and one read per grouping."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Connection, and_, func, or_, select

from loyalty_engine.records.counted_purchases import counted_purchases
from loyalty_engine.records.member_figures import snapshot_segments
from loyalty_engine.records.standing import ACTIVE
from loyalty_engine.rules.compiled import CompiledProgram
from loyalty_engine.store import tables

_tiers = tables.tier_status
_clubs = tables.club_memberships


@dataclass(frozen=True, slots=True)
class MemberMonths:
    """A member's counted purchases by local month ('YYYY-MM' -> purchases), their first
    and last purchase days (local) and distinct purchase days."""

    member_id: str
    months: dict[str, int]
    first_day: date
    last_day: date
    days: int

    @property
    def first_month(self) -> str:
        """The month of the first counted purchase: the member's cohort."""
        return self.first_day.isoformat()[:7]

    @property
    def purchases(self) -> int:
        return sum(self.months.values())


def member_months(conn: Connection, program: CompiledProgram,
                  as_of: datetime) -> dict[str, MemberMonths]:
    """Every member with a counted purchase by as_of: one GROUP BY member and local month
    over records/counted_purchases (a refunded purchase is not there; exclusions apply).
    Distinct days add up over months, since a day lies in one month."""
    counted = counted_purchases(conn, program, as_of)
    month = func.substr(counted.c.local_day, 1, 7)
    rows = conn.execute(
        select(counted.c.member_id, month.label("month"), func.count().label("purchases"),
               func.count(counted.c.local_day.distinct()).label("days"),
               func.min(counted.c.local_day).label("first_day"),
               func.max(counted.c.local_day).label("last_day"))
        .group_by(counted.c.member_id, month)
    ).all()
    found: dict[str, tuple[dict[str, int], list[str], list[str], list[int]]] = {}
    for member_id, month_key, purchases, days, first_day, last_day in rows:
        months, firsts, lasts, day_counts = found.setdefault(member_id, ({}, [], [], []))
        months[month_key] = int(purchases)
        firsts.append(first_day)
        lasts.append(last_day)
        day_counts.append(int(days))
    return {member_id: MemberMonths(member_id, months, date.fromisoformat(min(firsts)),
                                    date.fromisoformat(max(lasts)), sum(day_counts))
            for member_id, (months, firsts, lasts, day_counts) in found.items()}


def tier_groups(conn: Connection, program_id: str) -> dict[str, tuple[str, ...]]:
    """member -> (their stored earned tier,): tier_status.tier as the last purchase, review
    or refund left it; an operator's manual floor is not applied, and members below the
    lowest tier are in no group."""
    return {member_id: (tier,) for member_id, tier in conn.execute(
        select(_tiers.c.member_id, _tiers.c.tier)
        .where(_tiers.c.program_id == program_id, _tiers.c.tier != ""))}


def club_groups(conn: Connection, program_id: str,
                as_of: datetime) -> dict[str, tuple[str, ...]]:
    """member -> the clubs whose membership ran at as_of: joined by then and not ended by
    then (a membership still active or in grace, or one that has since ended after as_of).
    Household secondaries are not counted in the primary's club."""
    found: dict[str, list[str]] = {}
    running = or_(
        and_(_clubs.c.status.in_(ACTIVE),
             or_(_clubs.c.ended_at.is_(None), _clubs.c.ended_at > as_of)),
        and_(_clubs.c.status.not_in(ACTIVE), _clubs.c.ended_at > as_of))
    for member_id, club_id in conn.execute(
        select(_clubs.c.member_id, _clubs.c.club_id)
        .where(_clubs.c.program_id == program_id, _clubs.c.joined_at <= as_of, running)
        .order_by(_clubs.c.member_id, _clubs.c.club_id)
    ):
        found.setdefault(member_id, []).append(club_id)
    return {member_id: tuple(clubs) for member_id, clubs in found.items()}


def segment_groups(conn: Connection, program_id: str,
                   as_of: datetime) -> dict[str, tuple[str, ...]]:
    """member -> (the segment of their RFM snapshot in force at as_of: the latest taken by
    then,)."""
    return {member_id: (segment,)
            for member_id, segment in snapshot_segments(conn, program_id, as_of).items()}
