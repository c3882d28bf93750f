"""Members' standing for a batch: loading tiers, clubs, verifications and consents into the
planner's book, and writing the tier changes and club joins that planning decided."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, func, select

from loyalty_engine.domain.decisions import MemberView, Snapshot, TierChange
from loyalty_engine.engine.catalog import ProgramCatalog
from loyalty_engine.records.events import Event, record_events
from loyalty_engine.rules.compiled import CompiledProgram
from loyalty_engine.store import tables
from loyalty_engine.store.bulk import Converters, chunked, insert_rows, select_typed_by_keys

_status = tables.tier_status
_history = tables.tier_history
_memberships = tables.club_memberships
_households = tables.household_members
_verifications = tables.group_verifications
_consents = tables.member_consents
_enrolments = tables.enrolments
_snapshots = tables.rfm_snapshots

ACTIVE = ("active", "grace")  # club states whose benefits apply


@dataclass(frozen=True, slots=True)
class StandingNeeds:
    """Which parts of members' standing the programs in force for a batch read."""

    tiers: bool = False
    clubs: bool = False
    verifications: bool = False
    consents: bool = False
    enrolments: bool = False  # a program enrols explicitly: who is enrolled, who is known
    households: bool = False  # a fee club's level shares its membership with secondaries
    insights: bool = False  # a condition reads the RFM snapshot (member.segment, segments:)
    tenure: bool = False  # a condition reads member.tenure_days: the enrolment dates

    @property
    def any(self) -> bool:
        """Whether anything needs loading at all."""
        return (self.tiers or self.clubs or self.verifications or self.consents
                or self.enrolments or self.insights or self.tenure)

    @staticmethod
    def of(programs: Iterable[CompiledProgram]) -> StandingNeeds:
        """What these programs need."""
        found = list(programs)
        return StandingNeeds(
            # Membership years from the enrolment need the enrolment date, as tiers do.
            tiers=any(p.tiers is not None or p.membership_years for p in found),
            clubs=any(p.clubs for p in found),
            verifications=any(g.verified for p in found for g in p.groups.values()),
            consents=any(p.reads_consents for p in found),
            enrolments=any(p.enrolment == "explicit" for p in found),
            households=any(p.has_households for p in found),
            insights=any(p.reads_insights for p in found),
            tenure=any(p.reads_tenure for p in found))


def load_standings(conn: Connection, catalog: ProgramCatalog, member_ids: Sequence[str],
                   members: dict[str, MemberView], needs: StandingNeeds,
                   during: tuple[datetime, datetime] | None = None) -> None:
    """Fill members' standings and consents, as far as the programs need them; during:
    the first and last purchase instants of the batch (the RFM snapshots in force over
    them are loaded; None: every snapshot).

    One statement per table and chunk of members (joined against the keys, not an IN
    list), whatever the number of members."""
    zones = {pid: catalog.versions(pid)[-1].program.timezone for pid in catalog.program_ids}
    for part in chunked(list(member_ids)):
        keys = [(m,) for m in part]
        if needs.tiers:
            _load_tiers(conn, keys, members, zones)
        elif needs.tenure:
            _load_enrolment_dates(conn, keys, members, zones)
        if needs.insights:
            _load_snapshots(conn, part, members, during)
        if needs.clubs:
            _load_clubs(conn, keys, members)
            if needs.households:
                _load_households(conn, keys, members)
        if needs.verifications:
            # Lapsed ones too: the verification's own end decides what a purchase made
            # under it earns (a late-posted one), not whether the clubs job has run.
            for member_id, program_id, group_id, until in select_typed_by_keys(
                conn, _verifications, ("member_id",), keys,
                ("member_id", "program_id", "group_id", "verified_until"),
            ):
                standing = _view(members, member_id).standing(program_id)
                standing.verified = standing.verified | {group_id}
                standing.verified_until[group_id] = until
        if needs.enrolments:
            enrolled: dict[str, set[str]] = {}
            for member_id, program_id in select_typed_by_keys(
                    conn, _enrolments, ("member_id",), keys, ("member_id", "program_id")):
                enrolled.setdefault(member_id, set()).add(program_id)
            for member_id, programs in enrolled.items():
                _view(members, member_id).enrolled = frozenset(programs)
        if needs.consents:
            for member_id, flag, given, given_at, withdrawn_at in select_typed_by_keys(
                conn, _consents, ("member_id",), keys,
                ("member_id", "flag", "given", "given_at", "withdrawn_at"),
            ):
                view = _view(members, member_id)
                if given:  # from when it was (last) given
                    view.consent_spans[flag] = (given_at, None)
                elif given_at is not None and withdrawn_at is not None and (
                    given_at < withdrawn_at
                ):  # held from when it was given until it was withdrawn
                    view.consent_spans[flag] = (given_at, withdrawn_at)


def _load_tiers(conn: Connection, keys: list[tuple[str]], members: dict[str, MemberView],
                zones: dict[str, Any]) -> None:
    for (member_id, program_id, tier, held_until, manual_tier, manual_until,
         enrolled_on) in select_typed_by_keys(
        conn, _status, ("member_id",), keys,
        ("member_id", "program_id", "tier", "held_until", "manual_tier", "manual_until",
         "enrolled_on"),
    ):
        standing = _view(members, member_id).standing(program_id)
        standing.tier = tier
        standing.held_until = held_until
        standing.manual_tier = manual_tier or ""
        standing.manual_until = manual_until
        standing.has_tier_row = True
        standing.enrolled_on = enrolled_on
    _load_enrolment_dates(conn, keys, members, zones)


def _load_enrolment_dates(conn: Connection, keys: list[tuple[str]],
                          members: dict[str, MemberView], zones: dict[str, Any]) -> None:
    # Anniversaries (and tenure) count from the enrolment, for members without a tier row.
    for member_id, program_id, enrolled_at in select_typed_by_keys(
        conn, _enrolments, ("member_id",), keys, ("member_id", "program_id", "enrolled_at"),
    ):
        standing = _view(members, member_id).standing(program_id)
        zone = zones.get(program_id)
        if standing.enrolled_on is None and zone is not None:
            standing.enrolled_on = enrolled_at.astimezone(zone).date()


def _load_snapshots(conn: Connection, member_ids: Sequence[str],
                    members: dict[str, MemberView],
                    during: tuple[datetime, datetime] | None) -> None:
    """Members' RFM snapshots per program, oldest first, so that each purchase finds the one
    in force at its own time (Standing.snapshot_at). Only those a purchase of the batch can
    see: per member and program, the latest taken by the batch's first purchase and every
    later one taken by its last. One statement per chunk: an IN list of the chunk on the
    one column the primary key leads with (index probes), the correlated maximum on it too."""
    s = _snapshots
    query = select(s.c.member_id, s.c.program_id, s.c.taken_at, s.c.as_of_date, s.c.r,
                   s.c.f, s.c.m, s.c.segment, s.c.clv_minor, s.c.p_alive).where(
        s.c.member_id.in_(list(member_ids)))
    if during is not None:
        first, last = during
        older = _snapshots.alias("older")
        in_force = (select(func.max(older.c.taken_at))
                    .where(older.c.member_id == s.c.member_id,
                           older.c.program_id == s.c.program_id, older.c.taken_at <= first)
                    .scalar_subquery())
        query = query.where(s.c.taken_at <= last,
                            s.c.taken_at >= func.coalesce(in_force, first))
    rows = conn.execute(query.order_by(s.c.member_id, s.c.program_id, s.c.taken_at))
    for (member_id, program_id, taken_at, as_of_date, r, f, m, segment, clv_minor,
         p_alive) in rows:
        _view(members, member_id).standing(program_id).snapshots.append(Snapshot(
            taken_at, as_of_date, r, f, m, segment, clv_minor, p_alive))


def _load_clubs(conn: Connection, keys: list[tuple[str]],
                members: dict[str, MemberView]) -> None:
    for (member_id, program_id, club_id, level, status, joined_at, term_start,
         ended_at) in select_typed_by_keys(
        conn, _memberships, ("member_id",), keys,
        ("member_id", "program_id", "club_id", "level", "status", "joined_at", "term_start",
         "ended_at"),
    ):
        standing = _view(members, member_id).standing(program_id)
        standing.known_clubs = standing.known_clubs | {club_id}
        # Benefits from the join (a paid club: from the first paid term) until the end; a
        # membership that has ended still counts for purchases made while it ran.
        since = term_start if level else joined_at
        if status in ACTIVE or (ended_at is not None and since is not None):
            standing.clubs[club_id] = level
            if since is not None:
                standing.club_since[club_id] = since
            if status not in ACTIVE and ended_at is not None:
                standing.club_until[club_id] = ended_at


def _load_households(conn: Connection, keys: list[tuple[str]],
                     members: dict[str, MemberView]) -> None:
    """A household secondary holds the primary's membership (its level and benefits) from
    being added until removed or the primary's membership ends, whichever is first: the
    latest such stint of each club. Two statements per chunk, whatever the households."""
    stints: dict[tuple[str, str, str], tuple[Any, Any, str]] = {}
    for member_id, program_id, club_id, added_at, removed_at, primary in \
            select_typed_by_keys(conn, _households, ("member_id",), keys,
                                 ("member_id", "program_id", "club_id", "added_at",
                                  "removed_at", "primary_member_id")):
        key = (member_id, program_id, club_id)
        if key not in stints or added_at > stints[key][0]:
            stints[key] = (added_at, removed_at, primary)
    if not stints:
        return
    primaries = sorted({(primary,) for _, _, primary in stints.values()})
    memberships = {
        (member_id, program_id, club_id): (level, status, joined_at, term_start, ended_at)
        for member_id, program_id, club_id, level, status, joined_at, term_start, ended_at
        in select_typed_by_keys(
            conn, _memberships, ("member_id",), primaries,
            ("member_id", "program_id", "club_id", "level", "status", "joined_at",
             "term_start", "ended_at"))}
    for (member_id, program_id, club_id), (added_at, removed_at, primary) in stints.items():
        found = memberships.get((primary, program_id, club_id))
        if found is None:
            continue
        level, status, joined_at, term_start, ended_at = found
        if term_start is None or joined_at > added_at:
            continue  # never paid, or a later membership than the one they were added to
        if status not in ACTIVE and ended_at is None:
            continue
        ends = [e for e in (removed_at, None if status in ACTIVE else ended_at)
                if e is not None]
        since = max(added_at, term_start)
        standing = _view(members, member_id).standing(program_id)
        own = standing.club_since.get(club_id)
        if club_id in standing.clubs and own is not None and own > since:
            continue  # their own later membership of the club decides
        standing.clubs[club_id] = level
        standing.club_since[club_id] = since
        if ends:
            standing.club_until[club_id] = min(ends)
        else:
            standing.club_until.pop(club_id, None)


def _view(members: dict[str, MemberView], member_id: str) -> MemberView:
    found = members.get(member_id)
    if found is None:
        found = members[member_id] = MemberView(member_id)
    return found


def write_tier_changes(conn: Connection, changes: list[tuple[str, TierChange, date, datetime]],
                       now: datetime) -> None:
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
    insert_history(conn, [(member_id, change, at, None)
                          for member_id, change, _, at in changes], now)


def insert_history(conn: Connection,
                   entries: Sequence[tuple[str, TierChange, datetime, str | None]],
                   now: datetime, once: bool = False) -> None:
    """Append tier changes to the history: (member, change, when, natural key), and a
    tier_upgraded or tier_downgraded event for each move up or down. once: an entry whose
    key is already there is skipped (a review run twice records it once)."""
    record_events(conn, [
        Event(f"tier:{change.program_id}:{member_id}:{at.isoformat()}:{change.reason}:"
              f"{change.from_tier}>{change.to_tier}",
              "tier_upgraded" if change.up else "tier_downgraded", member_id,
              change.program_id, at,
              {"from": change.from_tier, "to": change.to_tier, "reason": change.reason,
               "held_until": None if change.held_until is None
               else change.held_until.isoformat()})
        for member_id, change, at, _ in entries
        if change.up is not None and change.from_tier != change.to_tier], now)
    convert = Converters(conn)
    insert_rows(
        conn, _history,
        ("member_id", "program_id", "from_tier", "to_tier", "reason", "changed_at", "detail",
         "ref"),
        [(member_id, change.program_id, change.from_tier, change.to_tier, change.reason,
          convert.when(at), convert.json(_detail(change)), ref)
         for member_id, change, at, ref in entries],
        on_conflict=["member_id", "program_id", "ref"] if once else None,
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
