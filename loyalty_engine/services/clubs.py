"""Clubs: joining, leaving and upgrading, and the time-driven membership step (renewal
charges, grace, lapse, eligibility lapse), each with an explicit instant."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, select

from loyalty_engine.domain.errors import ClubError, NotFoundError
from loyalty_engine.domain.money import format_money
from loyalty_engine.engine.catalog import VersionInForce
from loyalty_engine.records.events import Event, record_events
from loyalty_engine.records.fee_points import refund_fee_points
from loyalty_engine.records.memberships import (
    CHARGE_KEY,
    LIVE,
    add_household_row,
    charge_json,
    close_ended_households,
    end_household_row,
    ensure_member,
    fee_due_event,
    find_club,
    live_household,
    membership,
    membership_json,
    new_charge,
    new_to_club,
    open_charges,
    prorated,
    save_membership,
    set_charge,
    spend_before,
    term_end,
)
from loyalty_engine.rules.compiled_membership import ClubStep, CompiledClub
from loyalty_engine.services.groups import eligible, lapse_eligibility
from loyalty_engine.services.programs import load_catalog, versions_in_force
from loyalty_engine.store import tables
from loyalty_engine.store.bulk import insert_if_absent
from loyalty_engine.store.locks import lock_member, lock_members
from loyalty_engine.store.unit_of_work import write_use_case

_memberships = tables.club_memberships
_charges = tables.fee_charges


@dataclass(slots=True)
class ClubOutcome:
    """What a club request did: the membership after it, and any charge it created."""

    membership: dict[str, Any]
    charge: dict[str, Any] | None = None
    refunded: dict[str, Any] | None = None
    message: str = ""

    def as_json(self) -> dict[str, Any]:
        """Plain data for --json and the API."""
        return {"membership": self.membership, "charge": self.charge,
                "refunded": self.refunded, "message": self.message}


@write_use_case
def join_club(conn: Connection, member_id: str, club_id: str, at: datetime, now: datetime,
              program_id: str | None = None, level: str | None = None) -> ClubOutcome:
    """Join a club. Open clubs start at once; affinity clubs once the member is eligible;
    fee clubs are pending until the joining charge is paid (or waived)."""

    catalog = load_catalog(conn)
    version, club = find_club(catalog, club_id, program_id, at)
    ensure_member(conn, member_id, version.program_id, at, now)
    lock_member(conn, member_id)
    current = membership(conn, member_id, version.program_id, club_id)
    if current is not None and current.status in LIVE:
        raise ClubError(f"member {member_id!r} is already in club {club_id!r} "
                        f"({current.status}"
                        + (f", level {current.level}" if current.level else "")
                        + ")" + ("; use `loyalty clubs upgrade` for a higher level"
                                 if club.kind == "fee" else ""))
    if club.kind == "fee":
        for row in live_household(conn, version.program_id, club_id, secondary=member_id):
            raise ClubError(f"member {member_id!r} shares the membership of "
                            f"{row.primary_member_id!r} in club {club_id!r} as a household "
                            f"member; remove them with `loyalty clubs remove-member "
                            f"{row.primary_member_id} {club_id} {member_id}` first")
        return _join_fee_club(conn, member_id, version, club, level, at, now)
    if level is not None:
        raise ClubError(f"club {club_id!r} has no levels; leave out --level")
    if club.kind == "affinity":
        assert club.group is not None
        if not eligible(conn, version, member_id, club.group, at):
            raise ClubError(
                f"member {member_id!r} is not eligible for group {club.group!r} "
                f"({version.program.groups[club.group].name}), which club "
                f"{club_id!r} is limited to" + _how_to_qualify(version, club.group,
                                                                member_id))
    save_membership(conn, member_id, version.program_id, club_id, now, level="",
                    status="active", source="explicit", joined_at=at,
                    term_start=None, term_end=None, auto_renew=False, ended_at=None)
    return ClubOutcome(_membership(conn, member_id, version, club_id),
                       message=f"joined {club.name}")


def _how_to_qualify(version: VersionInForce, group_id: str, member_id: str) -> str:
    group = version.program.groups[group_id]
    ways = []
    if group.verified:
        ways.append(f"record a verification with `loyalty members verify {member_id} "
                    f"{group_id} --until DATE --evidence REF`")
    if group.age_attribute is not None:
        bounds = []
        if group.at_least is not None:
            bounds.append(f"at least {group.at_least}")
        if group.under is not None:
            bounds.append(f"under {group.under}")
        ways.append(f"members aged {' and '.join(bounds)} by their {group.age_attribute!r} "
                    "attribute qualify")
    return ": " + "; or ".join(ways)


def _join_fee_club(conn: Connection, member_id: str, version: VersionInForce,
                   club: CompiledClub, level_id: str | None, at: datetime,
                   now: datetime) -> ClubOutcome:
    level = club.levels[0] if level_id is None else club.level(level_id)
    if level is None:
        levels = ", ".join(lv.level_id for lv in club.levels)
        raise ClubError(f"club {club.club_id!r} has no level {level_id!r} (levels: {levels})")
    end = term_end(club, at, version.program.timezone)
    waived = _waiver(conn, member_id, version, club, at)
    new = new_to_club(conn, member_id, version.program_id, club.club_id)
    if new and waived is None and level.trial_months is not None:
        return _start_trial(conn, member_id, version, club, level, at, now)
    status = "waived" if waived is not None else "due"
    # A member new to the club pays the introductory fee for the first paid term.
    amount = level.first_fee() if new else level.fee_minor
    detail = waived if amount == level.fee_minor else {
        **(waived or {}), "intro_fee_minor": amount, "fee_minor": level.fee_minor}
    row = new_charge(conn, member_id, version, club, level.level_id, "join", amount,
                     at, end, at, now, status=status, detail=detail)
    if row is None:
        raise ClubError(f"member {member_id!r} already has a joining charge of club "
                        f"{club.club_id!r} at {at.isoformat()}; join at another instant")
    if waived is not None:
        save_membership(conn, member_id, version.program_id, club.club_id, now,
                        level=level.level_id, status="active", source="explicit",
                        joined_at=at, term_start=at, term_end=end,
                        auto_renew=club.auto_renew, ended_at=None)
        message = f"joined {club.name} ({level.name}); the fee is waived"
    else:
        save_membership(conn, member_id, version.program_id, club.club_id, now,
                        level=level.level_id, status="pending", source="explicit",
                        joined_at=at, term_start=None, term_end=None,
                        auto_renew=club.auto_renew, ended_at=None)
        message = (f"membership of {club.name} ({level.name}) is pending until charge "
                   f"{row.id} is paid")
    return ClubOutcome(_membership(conn, member_id, version, club.club_id), charge_json(row),
                       message=message)


def _start_trial(conn: Connection, member_id: str, version: VersionInForce,
                 club: CompiledClub, level: ClubStep, at: datetime,
                 now: datetime) -> ClubOutcome:
    """A new member's trial term: a free one starts at once (its charge is waived); a
    discounted one is pending until its charge is paid, and runs from the payment. At its
    end the renewal (at the introductory fee, if any) carries the membership on."""
    assert level.trial_months is not None
    months = level.trial_months
    end = term_end(club, at, version.program.timezone, months)
    free = level.trial_fee_minor == 0
    row = new_charge(conn, member_id, version, club, level.level_id, "trial",
                     level.trial_fee_minor, at, end, at, now,
                     status="waived" if free else "due",
                     detail={"trial_months": months, **({"waived": "free trial"}
                                                         if free else {})})
    if row is None:
        raise ClubError(f"member {member_id!r} already has a trial charge of club "
                        f"{club.club_id!r} at {at.isoformat()}; join at another instant")
    save_membership(conn, member_id, version.program_id, club.club_id, now,
                    level=level.level_id, status="active" if free else "pending",
                    source="explicit", joined_at=at, term_start=at if free else None,
                    term_end=end if free else None, auto_renew=club.auto_renew,
                    ended_at=None)
    if free:
        message = (f"joined {club.name} ({level.name}) on a free {months}-month trial "
                   f"until {end.isoformat()}")
    else:
        message = (f"the {months}-month trial of {club.name} ({level.name}) is pending "
                   f"until charge {row.id} is paid")
    return ClubOutcome(_membership(conn, member_id, version, club.club_id), charge_json(row),
                       message=message)


def _in_trial(conn: Connection, current: Any, at: datetime) -> Any:
    """The trial charge whose term runs at `at` in the current membership, or None."""
    c = _charges
    return conn.execute(select(c).where(
        c.c.member_id == current.member_id, c.c.program_id == current.program_id,
        c.c.club_id == current.club_id, c.c.kind == "trial",
        c.c.status.in_(("paid", "waived")), c.c.term_start >= current.joined_at,
        c.c.term_start <= at, c.c.term_end > at)).first()


def _waiver(conn: Connection, member_id: str, version: VersionInForce, club: CompiledClub,
            start: datetime) -> dict[str, Any] | None:
    """The waiver's evidence when the member's last 12 months of spend earn it."""
    if club.waiver_minor is None:
        return None
    spend = spend_before(conn, [member_id], version.program_id, version, start).get(
        member_id, 0)
    if spend < club.waiver_minor:
        return None
    return {"waived": "min_spend_last_year", "spend_minor": spend,
            "threshold_minor": club.waiver_minor}


@write_use_case
def leave_club(conn: Connection, member_id: str, club_id: str, at: datetime, now: datetime,
               program_id: str | None = None) -> ClubOutcome:
    """Leave a club. A fee club inside its cooling-off period is cancelled with the fee
    refunded; after it, the membership runs to the end of the paid term and is not renewed."""

    catalog = load_catalog(conn)
    version, club = find_club(catalog, club_id, program_id, at)
    if not lock_member(conn, member_id):
        raise NotFoundError(f"there is no member {member_id!r}")
    current = membership(conn, member_id, version.program_id, club_id)
    if current is None or current.status not in LIVE:
        raise ClubError(f"member {member_id!r} is not in club {club_id!r}"
                        + ("" if current is None else f" (it {current.status})"))
    if club.kind != "fee":
        save_membership(conn, member_id, version.program_id, club_id, now,
                        status="left", ended_at=at)
        return ClubOutcome(_membership(conn, member_id, version, club_id),
                           message=f"left {club.name}")
    return _cancel(conn, member_id, version, club, current, at, now)


def _cancel(conn: Connection, member_id: str, version: VersionInForce, club: CompiledClub,
            current: Any, at: datetime, now: datetime) -> ClubOutcome:
    outcome = _cancel_membership(conn, member_id, version, club, current, at, now)
    # A membership that ended now ends its household's benefits at the same instant.
    close_ended_households(conn, version.program_id, club.club_id, now, primary=member_id)
    return outcome


def _cancel_membership(conn: Connection, member_id: str, version: VersionInForce,
                       club: CompiledClub, current: Any, at: datetime,
                       now: datetime) -> ClubOutcome:
    program_id = version.program_id
    unpaid = open_charges(conn, member_id, program_id, club.club_id)
    for row in unpaid:  # nothing is owed for a membership that will not run
        set_charge(conn, row.id, now, status="waived",
                   detail={**row.detail, "waived": "cancelled"})
    if current.status == "pending":
        save_membership(conn, member_id, program_id, club.club_id, now, status="cancelled",
                        ended_at=at, auto_renew=False)
        return ClubOutcome(_membership(conn, member_id, version, club.club_id),
                           message="cancelled before the first payment; nothing is owed")
    if current.status == "grace":
        # The paid term is over and the renewal unpaid: the membership ends now.
        save_membership(conn, member_id, program_id, club.club_id, now, status="cancelled",
                        ended_at=at, auto_renew=False)
        return ClubOutcome(_membership(conn, member_id, version, club.club_id),
                           message="cancelled during grace; the unpaid renewal is not owed")
    paid = conn.execute(select(_charges).where(
        _charges.c.member_id == member_id, _charges.c.program_id == program_id,
        _charges.c.club_id == club.club_id, _charges.c.status == "paid",
        _charges.c.kind.in_(("join", "renewal")),
        _charges.c.term_start >= current.joined_at)
        .order_by(_charges.c.term_start.desc(), _charges.c.id.desc())).first()
    if paid is not None and paid.term_start > at:
        # A renewal paid ahead for a term that has not started: refund it, and the current
        # term runs to its end without renewing.
        if paid.points:
            refund_fee_points(conn, paid, at, now)
        set_charge(conn, paid.id, now, status="refunded", refunded_minor=paid.amount_minor)
        save_membership(conn, member_id, program_id, club.club_id, now, auto_renew=False,
                        term_end=paid.term_start)
        return ClubOutcome(_membership(conn, member_id, version, club.club_id),
                           refunded=charge_json(conn.execute(select(_charges).where(
                               _charges.c.id == paid.id)).one()),
                           message=f"the renewal paid ahead (charge {paid.id}) is refunded; "
                                   f"the membership ends on {paid.term_start.isoformat()}")
    cooling_ends = (None if paid is None
                    else paid.term_start + timedelta(days=club.cooling_off_days))
    if paid is not None and cooling_ends is not None and at < cooling_ends:
        # Inside the cooling-off period: the term's fee, and any upgrade paid in it, back.
        refunded = []
        for row in conn.execute(select(_charges).where(
            _charges.c.member_id == member_id, _charges.c.program_id == program_id,
            _charges.c.club_id == club.club_id, _charges.c.status == "paid",
            _charges.c.term_start >= paid.term_start)):
            if row.points:
                refund_fee_points(conn, row, at, now)
            set_charge(conn, row.id, now, status="refunded", refunded_minor=row.amount_minor)
            refunded.append(row.id)
        save_membership(conn, member_id, program_id, club.club_id, now, status="cancelled",
                        ended_at=at, auto_renew=False, term_end=at)
        last = conn.execute(select(_charges).where(_charges.c.id == paid.id)).one()
        return ClubOutcome(_membership(conn, member_id, version, club.club_id),
                           refunded=charge_json(last),
                           message=f"cancelled inside the {club.cooling_off_days}-day "
                                   f"cooling-off period; charge(s) "
                                   f"{', '.join(map(str, refunded))} refunded")
    save_membership(conn, member_id, program_id, club.club_id, now, auto_renew=False)
    if _in_trial(conn, current, at) is not None:
        # A trial has no cooling-off refund: it runs to its end and is not converted.
        return ClubOutcome(_membership(conn, member_id, version, club.club_id),
                           message=f"the trial ends on {current.term_end.isoformat()} and "
                                   "will not convert to a paid term; nothing is refunded")
    return ClubOutcome(_membership(conn, member_id, version, club.club_id),
                       message=f"will end on {current.term_end.isoformat()} at the end of the "
                               "paid term (the cooling-off period is over); it will not renew")


@write_use_case
def upgrade_club(conn: Connection, member_id: str, club_id: str, level_id: str, at: datetime,
                 now: datetime, program_id: str | None = None) -> ClubOutcome:
    """Move a paid membership up a level mid-term, for the prorated difference in fees; the
    new level applies once that charge is paid."""

    catalog = load_catalog(conn)
    version, club = find_club(catalog, club_id, program_id, at)
    if club.kind != "fee":
        raise ClubError(f"club {club_id!r} has no paid levels to upgrade between")
    if not lock_member(conn, member_id):
        raise NotFoundError(f"there is no member {member_id!r}")
    current = membership(conn, member_id, version.program_id, club_id)
    if current is None or current.status != "active":
        state = "not a member" if current is None else current.status
        hint = ("; pay the renewal first" if current is not None
                and current.status == "grace" else "")
        raise ClubError(f"member {member_id!r} has no active membership of club "
                        f"{club_id!r} to upgrade ({state}){hint}")
    if current.term_end is None or current.term_end <= at:
        raise ClubError(f"the paid term of member {member_id!r} in club {club_id!r} "
                        "has ended; pay the renewal first, then upgrade")
    target = club.level(level_id)
    if target is None:
        levels = ", ".join(lv.level_id for lv in club.levels)
        raise ClubError(f"club {club_id!r} has no level {level_id!r} "
                        f"(levels: {levels})")
    held = club.level(current.level)
    if current.level == level_id:
        raise ClubError(f"member {member_id!r} already holds level {level_id!r} of "
                        f"club {club_id!r}")
    if held is not None and target.rank < held.rank:
        raise ClubError(f"{level_id!r} is below {current.level!r}: a membership only "
                        "moves up mid-term; leave and join again at renewal to go "
                        "down")
    if _in_trial(conn, current, at) is not None:
        raise ClubError(f"member {member_id!r} is on a trial of level {current.level!r} of "
                        f"club {club_id!r} until {current.term_end.isoformat()}; upgrade "
                        "once the trial has converted to a paid term")
    if any(row.kind == "upgrade" for row in open_charges(
            conn, member_id, version.program_id, club_id)):
        raise ClubError(f"an upgrade of member {member_id!r} in club {club_id!r} "
                        "is already waiting for payment")
    old_fee = 0 if held is None else held.fee_minor
    difference = target.fee_minor - old_fee
    start, end, ahead = _paid_terms(conn, current, at)
    # The time left of the term running now (or all of it: full_difference), and every
    # term already paid ahead.
    full = club.upgrade_price == "full_difference"
    amount = (difference if full else prorated(difference, at, start, end)) \
        + difference * ahead
    row = new_charge(conn, member_id, version, club, level_id, "upgrade", amount, at,
                     current.term_end, at, now,
                     detail={"from_level": current.level, "to_level": level_id,
                             "fee_difference_minor": difference,
                             "term_start": start.isoformat(),
                             "term_end": end.isoformat(),
                             "terms_paid_ahead": ahead,
                             "upgrade_price": club.upgrade_price})
    if row is None:
        raise ClubError(f"an upgrade of member {member_id!r} in club {club_id!r} was "
                        f"already charged at {at.isoformat()}")
    if amount == 0:
        set_charge(conn, row.id, now, status="waived",
                   detail={**row.detail, "waived": "nothing left of the term"})
        save_membership(conn, member_id, version.program_id, club_id, now,
                        level=level_id)
    row = conn.execute(select(_charges).where(_charges.c.id == row.id)).one()
    return ClubOutcome(_membership(conn, member_id, version, club_id),
                       charge_json(row),
                       message=f"upgrade to {target.name} waits for charge {row.id} "
                               f"({format_money(amount, row.currency)}, "
                               + ("the full difference)" if full else "prorated)"))


@write_use_case
def add_household_member(conn: Connection, primary: str, club_id: str, secondary: str,
                         at: datetime, now: datetime,
                         program_id: str | None = None) -> ClubOutcome:
    """Add a secondary member (their own member id and card) to the primary's active
    fee-club membership: one fee, the membership's benefits from `at` while it lasts."""

    catalog = load_catalog(conn)
    version, club = find_club(catalog, club_id, program_id, at)
    if club.kind != "fee":
        raise ClubError(f"club {club_id!r} is not a fee club ({club.kind}): only fee clubs "
                        "share a membership with household members")
    if primary == secondary:
        raise ClubError(f"member {primary!r} cannot be a household member of their own "
                        "membership")
    ensure_member(conn, secondary, version.program_id, at, now)
    if primary not in lock_members(conn, [primary, secondary]):
        raise NotFoundError(f"there is no member {primary!r}")
    current = membership(conn, primary, version.program_id, club_id)
    if current is None or current.status not in ("active", "grace"):
        state = "not a member" if current is None else current.status
        raise ClubError(f"member {primary!r} has no active membership of club {club_id!r} "
                        f"to share ({state})")
    level = club.level(current.level)
    allowed = 0 if level is None else level.household_max
    if allowed == 0:
        raise ClubError(f"level {current.level!r} of club {club_id!r} has no household "
                        "members (the program file gives it no household: max_members)")
    own = membership(conn, secondary, version.program_id, club_id)
    if own is not None and own.status in LIVE:
        raise ClubError(f"member {secondary!r} has a membership of club {club_id!r} of "
                        f"their own ({own.status}); a household member shares someone "
                        "else's: they leave theirs first")
    for row in live_household(conn, version.program_id, club_id, secondary=secondary):
        raise ClubError(f"member {secondary!r} is already a household member of "
                        f"{row.primary_member_id!r}'s membership of club {club_id!r}; "
                        "a member shares one membership at a time")
    household = live_household(conn, version.program_id, club_id, primary=primary)
    if len(household) >= allowed:
        names = ", ".join(repr(r.member_id) for r in household)
        raise ClubError(f"the membership of {primary!r} in club {club_id!r} already has "
                        f"{len(household)} household member(s) ({names}), the most its "
                        f"level allows (max_members: {allowed}); remove one first")
    if at < current.joined_at:
        raise ClubError(f"--at {at.isoformat()} is before member {primary!r} joined club "
                        f"{club_id!r} ({current.joined_at.isoformat()})")
    add_household_row(conn, secondary, version.program_id, club_id, primary, at, now)
    return ClubOutcome(_membership(conn, primary, version, club_id),
                       message=f"{secondary} shares the {club.name} of "
                               f"{primary} from {at.isoformat()}")


@write_use_case
def remove_household_member(conn: Connection, primary: str, club_id: str, secondary: str,
                            at: datetime, now: datetime,
                            program_id: str | None = None) -> ClubOutcome:
    """Remove a secondary member from the primary's household: their benefits end at `at`."""

    catalog = load_catalog(conn)
    version, club = find_club(catalog, club_id, program_id, at)
    if primary not in lock_members(conn, [primary, secondary]):
        raise NotFoundError(f"there is no member {primary!r}")
    found = [r for r in live_household(conn, version.program_id, club_id, primary=primary)
             if r.member_id == secondary]
    if not found:
        raise ClubError(f"member {secondary!r} is not a household member of {primary!r}'s "
                        f"membership of club {club_id!r}")
    if at < found[0].added_at:
        raise ClubError(f"--at {at.isoformat()} is before {secondary!r} was added "
                        f"({found[0].added_at.isoformat()})")
    end_household_row(conn, found[0], at, now)
    return ClubOutcome(_membership(conn, primary, version, club_id),
                       message=f"{secondary} no longer shares the {club.name} "
                               f"of {primary} from {at.isoformat()}")


def _paid_terms(conn: Connection, current: Any, at: datetime) -> tuple[datetime, datetime, int]:
    """The paid (or waived) term of a membership running at `at`, and how many later
    terms are already paid for."""
    c = _charges
    terms = conn.execute(select(c.c.term_start, c.c.term_end).where(
        c.c.member_id == current.member_id, c.c.program_id == current.program_id,
        c.c.club_id == current.club_id, c.c.kind.in_(("join", "renewal")),
        c.c.status.in_(("paid", "waived")), c.c.term_start >= current.joined_at,
    ).order_by(c.c.term_start)).all()
    running = [t for t in terms if t.term_start <= at < t.term_end]
    ahead = sum(1 for t in terms if t.term_start > at)
    if running:
        return running[-1].term_start, running[-1].term_end, ahead
    return current.term_start, current.term_end, ahead


def _membership(conn: Connection, member_id: str, version: VersionInForce,
                club_id: str) -> dict[str, Any]:
    row = membership(conn, member_id, version.program_id, club_id)
    return membership_json(row)


@dataclass(slots=True)
class ClubStepResult:
    """What the time-driven membership step did, by count."""

    renewals: int = 0
    waived: int = 0
    grace: int = 0
    lapsed: int = 0
    ended: int = 0
    households_ended: int = 0
    eligibility_lapsed: int = 0
    memberships_lapsed_by_eligibility: int = 0
    charges: list[int] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """Plain data for --json."""
        return {"renewal_charges": self.renewals, "renewals_waived": self.waived,
                "entered_grace": self.grace, "lapsed": self.lapsed, "ended": self.ended,
                "verifications_lapsed": self.eligibility_lapsed,
                "memberships_lapsed_by_eligibility": self.memberships_lapsed_by_eligibility}


@write_use_case
def advance_clubs(conn: Connection, as_of: datetime, now: datetime,
                  program_id: str | None = None, *,
                  versions: list[VersionInForce] | None = None) -> ClubStepResult:
    """Run the membership clock up to as_of: renewal charges N days before a term ends
    (waived when last year's spend earns it), grace after an unpaid term ends, lapse after
    grace, the end of memberships cancelled at term end, and affinity eligibility that has
    lapsed. Set-based per club; safe to run again (charges have natural keys)."""
    result = ClubStepResult()
    for version in versions_in_force(conn, as_of, program_id, versions):
        for club in version.program.clubs.values():
            if club.kind == "fee":
                _renew(conn, version, club, as_of, now, result)
                _grace_and_lapse(conn, version, club, as_of, now, result)
                if club.has_households:
                    result.households_ended += close_ended_households(
                        conn, version.program_id, club.club_id, now)
        lapsed = lapse_eligibility(conn, version, as_of, now)
        result.eligibility_lapsed += lapsed.verifications
        result.memberships_lapsed_by_eligibility += lapsed.memberships
    return result


def _renew(conn: Connection, version: VersionInForce, club: CompiledClub, as_of: datetime,
           now: datetime, result: ClubStepResult) -> None:
    """Renewal charges for every membership whose term ends within the notice: one
    insert-if-absent for all of them (the natural key makes a second clock a no-op), and
    one update for the terms that waived renewals extend."""
    notice = timedelta(days=club.renewal_notice_days)
    m = _memberships
    due = conn.execute(select(m.c.member_id, m.c.level, m.c.term_end).where(
        m.c.program_id == version.program_id, m.c.club_id == club.club_id,
        m.c.status.in_(("active", "grace")), m.c.auto_renew.is_(True),
        m.c.term_end.is_not(None), m.c.term_end <= as_of + notice,
    ).order_by(m.c.member_id)).all()
    if not due:
        return
    spend = (spend_before(conn, [r.member_id for r in due], version.program_id, version,
                          as_of) if club.waiver_minor is not None else {})
    trials = _trials_ending(conn, version, club, [r.member_id for r in due])
    rows = []
    for row in due:
        level = club.level(row.level) or club.levels[0]
        start = row.term_end
        spent = spend.get(row.member_id, 0)
        waived = club.waiver_minor is not None and spent >= club.waiver_minor
        # The term after a trial is the member's first paid one: the introductory fee.
        converts = (row.member_id, row.term_end) in trials
        amount = level.first_fee() if converts else level.fee_minor
        detail: dict[str, Any] = {"after_trial": True, "fee_minor": level.fee_minor} \
            if converts else {}
        if waived:
            detail.update({"waived": "min_spend_last_year", "spend_minor": spent,
                           "threshold_minor": club.waiver_minor})
        rows.append({
            "member_id": row.member_id, "program_id": version.program_id,
            "club_id": club.club_id, "level": level.level_id, "kind": "renewal",
            "amount_minor": amount, "currency": version.program.currency,
            "term_start": start,
            "term_end": term_end(club, start, version.program.timezone), "due_at": start,
            "status": "waived" if waived else "due",
            "detail": detail,
            "created_at": now, "updated_at": now})
    inserted = insert_if_absent(conn, _charges, rows, CHARGE_KEY)
    result.renewals += len(inserted)
    result.charges.extend(sorted(r.id for r in inserted))
    result.waived += sum(1 for r in inserted if r.status == "waived")
    record_events(conn, [fee_due_event(r) for r in inserted if r.status == "due"], now)
    if any(r.status == "waived" for r in inserted):
        # A waived renewal extends the paid term at once (like a paid one).
        c = _charges
        extended = (select(c.c.term_end).where(
            c.c.member_id == m.c.member_id, c.c.program_id == m.c.program_id,
            c.c.club_id == m.c.club_id, c.c.kind == "renewal", c.c.status == "waived",
            c.c.term_start == m.c.term_end).scalar_subquery())
        conn.execute(m.update().where(
            m.c.program_id == version.program_id, m.c.club_id == club.club_id,
            m.c.status.in_(("active", "grace")), extended.is_not(None),
        ).values(term_end=extended, updated_at=now))


def _trials_ending(conn: Connection, version: VersionInForce, club: CompiledClub,
                   member_ids: list[str]) -> set[tuple[str, datetime]]:
    """(member, end) of the trial terms of these members: one read for the club."""
    if not member_ids or all(lv.trial_months is None for lv in club.levels):
        return set()
    c = _charges
    return {(r.member_id, r.term_end) for r in conn.execute(select(
        c.c.member_id, c.c.term_end).where(
        c.c.program_id == version.program_id, c.c.club_id == club.club_id,
        c.c.kind == "trial", c.c.status.in_(("paid", "waived")),
        c.c.member_id.in_(member_ids)))}


def _grace_and_lapse(conn: Connection, version: VersionInForce, club: CompiledClub,
                     as_of: datetime, now: datetime, result: ClubStepResult) -> None:
    m = _memberships
    mine = and_(m.c.program_id == version.program_id, m.c.club_id == club.club_id)
    grace = timedelta(days=club.grace_days)
    # Cancelled at term end (auto-renew off): the membership simply ends.
    ended = conn.execute(m.update().where(
        mine, m.c.status == "active", m.c.auto_renew.is_(False), m.c.term_end <= as_of,
    ).values(status="cancelled", ended_at=m.c.term_end, updated_at=now))
    result.ended += ended.rowcount
    if club.grace_days:
        graced = conn.execute(m.update().where(
            mine, m.c.status == "active", m.c.term_end <= as_of,
            m.c.term_end > as_of - grace,
        ).values(status="grace", updated_at=now))
        result.grace += graced.rowcount
    lapsing = [r.member_id for r in conn.execute(select(m.c.member_id).where(
        mine, m.c.status.in_(("active", "grace")), m.c.term_end <= as_of - grace))]
    if not lapsing:
        return
    conn.execute(m.update().where(mine, m.c.member_id.in_(lapsing)).values(
        status="lapsed", ended_at=as_of, updated_at=now))
    record_events(conn, [lapsed_event(version.program_id, club.club_id, member_id, as_of,
                                      "unpaid") for member_id in lapsing], now)
    # The renewal charges those members left unpaid are closed as failed.
    conn.execute(_charges.update().where(
        _charges.c.program_id == version.program_id, _charges.c.club_id == club.club_id,
        _charges.c.member_id.in_(lapsing), _charges.c.status == "due",
    ).values(status="failed", updated_at=now))
    result.lapsed += len(lapsing)


def lapsed_event(program_id: str, club_id: str, member_id: str, at: datetime,
                 why: str) -> Event:
    """The outbox event of a membership that lapsed."""
    return Event(f"lapsed:{program_id}:{club_id}:{member_id}:{at.isoformat()}",
                 "membership_lapsed", member_id, program_id, at,
                 {"club": club_id, "why": why})


def club_rows(conn: Connection, member_id: str) -> list[dict[str, Any]]:
    """Every club membership of a member."""
    m = _memberships
    return [membership_json(r) for r in conn.execute(
        select(m).where(m.c.member_id == member_id).order_by(m.c.program_id, m.c.club_id))]
