"""Tiers: the set-based review, members at risk of dropping, one member's tier, an
operator's manual tier (a floor), and the immediate downgrade a refund may cause."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, bindparam, func, not_, select

from loyalty_engine.domain.decisions import Standing, TierChange
from loyalty_engine.domain.errors import NotFoundError, TierError
from loyalty_engine.domain.money import currency_exponent, format_minor
from loyalty_engine.domain.periods import start_of_day
from loyalty_engine.engine.catalog import VersionInForce
from loyalty_engine.engine.standing import (
    credit_detail,
    credits_in,
    effective_tier,
    review_tier,
)
from loyalty_engine.records.standing import insert_history, write_tier_changes
from loyalty_engine.records.tier_reviews import (
    credit_query,
    fast_members,
    review_fast,
    shared_review,
)
from loyalty_engine.rules.compiled_membership import Credit, TierLadder, TierStep, Window
from loyalty_engine.services.programs import load_catalog, versions_in_force
from loyalty_engine.store import tables
from loyalty_engine.store.bulk import chunked
from loyalty_engine.store.errors import describe_failure
from loyalty_engine.store.locks import lock_member
from loyalty_engine.store.unit_of_work import read_use_case, write_use_case

_status = tables.tier_status
_history = tables.tier_history
_counters = tables.progress_counters


@dataclass(slots=True)
class ReviewResult:
    """What a tier review did, per program."""

    reviewed: dict[str, int] = field(default_factory=dict)  # program -> member reviews
    upgraded: dict[str, int] = field(default_factory=dict)
    downgraded: dict[str, int] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)
    floors_ended: dict[str, int] = field(default_factory=dict)
    review_days: dict[str, list[str]] = field(default_factory=dict)
    # (program, member, review day, reason) of members whose review failed: they keep
    # their state (their review stays due, so the next run retries them).
    failures: list[tuple[str, str, str, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """Plain data for --json."""
        return {"reviewed": self.reviewed, "upgraded": self.upgraded,
                "downgraded": self.downgraded, "held": self.held,
                "manual_floors_ended": self.floors_ended, "review_days": self.review_days,
                "failures": [{"program_id": p, "member_id": m, "review_day": d, "reason": r}
                             for p, m, d, r in self.failures]}


def _credits(conn: Connection, program_id: str, ladder: TierLadder, window: Window,
             member_ids: list[str] | None) -> dict[str, Credit]:
    """Qualifying credit per member and measure in a window: one GROUP BY (chunked by
    member if given)."""
    base = credit_query(ladder, program_id, window.start, window.end)

    def credit(row: Any) -> Credit:
        return tuple(int(v or 0) for v in row[1:])

    if member_ids is None:
        return {row[0]: credit(row) for row in conn.execute(base)}
    found: dict[str, Credit] = {}
    for part in chunked(member_ids):
        found.update({row[0]: credit(row) for row in conn.execute(
            base.where(_counters.c.member_id.in_(part)))})
    return found


def _none(ladder: TierLadder) -> Credit:
    return (0,) * len(ladder.measures)


def shown_credit(ladder: TierLadder, values: Credit, currency: str,
                 joiner: str = ", ") -> str:
    """Credit (or what is lacking) per measure for people: "3 nights or 12,000 points"."""
    exponent = currency_exponent(currency)
    parts = []
    for measure, value in zip(ladder.measures, values, strict=True):
        if measure.kind == "spend":
            parts.append(f"{format_minor(value, exponent)} {currency}")
            continue
        whole = Decimal(value) / measure.scale
        number = f"{whole:,.3f}".rstrip("0").rstrip(".") if whole % 1 else f"{int(whole):,}"
        unit = measure.unit or measure.name
        if whole == 1 and unit.endswith("s"):  # 1 night, 1 day, 1 point
            unit = unit[:-1]
        parts.append(f"{number} {unit}")
    return joiner.join(parts)


def shortfall(ladder: TierLadder, step: TierStep, credit: Credit, currency: str) -> str:
    """What a member lacks to reach (or keep) a tier: "3 nights or 12,000 points short"
    (any), "2 nights and 500 points short" (all: only the measures still short); '' when
    it is reached."""
    if ladder.reaches(step, credit):
        return ""
    lacking = ladder.lacking(step, credit)
    if ladder.combine == "all":
        short = tuple(lacking[m.name] for m in ladder.measures)
        names = [i for i, value in enumerate(short) if value > 0]
        sub = replace(ladder, measures=tuple(ladder.measures[i] for i in names))
        return shown_credit(sub, tuple(short[i] for i in names), currency, " and ") + " short"
    return shown_credit(ladder, tuple(lacking[m.name] for m in ladder.measures), currency,
                        " or ") + " short"


@write_use_case
def review_tiers(conn: Connection, as_of: datetime, now: datetime,
                 program_id: str | None = None, *,
                 versions: list[VersionInForce] | None = None) -> ReviewResult:
    """Review every member whose review day (1 January, their anniversary, or the 1st of
    the month for rolling windows) has come by as_of, in order: missed reviews are caught
    up one by one. Set-based: a GROUP BY of credit per review window, and bulk writes.
    Safe to run again: a member's review day is recorded, and a review's history entry
    has a natural key."""
    result = ReviewResult()
    for version in versions_in_force(conn, as_of, program_id, versions):
        if version.program.tiers is None:
            continue
        _review_program(conn, version, as_of, now, result)
    return result


def _review_program(conn: Connection, version: VersionInForce, as_of: datetime,
                    now: datetime, result: ReviewResult) -> None:
    ladder = version.program.tiers
    assert ladder is not None
    pid = version.program_id
    zone = version.program.timezone
    today = as_of.astimezone(zone).date()
    if conn.dialect.name == "postgresql":
        # A purchase upgrading a member waits for the review, and then sees its result.
        conn.execute(select(func.count()).select_from(
            select(_status.c.member_id).where(_status.c.program_id == pid)
            .order_by(_status.c.member_id).with_for_update().subquery()))
    # Most members (one shared review day due, nothing to replay) are judged in SQL by
    # review_fast below; the rest here, one by one.
    shared = shared_review(ladder, today, zone)
    query = select(_status).where(_status.c.program_id == pid).order_by(_status.c.member_id)
    if shared is not None:
        query = query.where(not_(fast_members(pid, shared)))
    rows = conn.execute(query).all()
    # Each member's review days still to apply, in order.
    due: dict[date, list[Any]] = defaultdict(list)
    state: dict[str, dict[str, Any]] = {}
    for row in rows:
        after = row.reviewed_on or row.enrolled_on
        days = ladder.reviews_between(after, today, row.enrolled_on)
        if not days:
            continue
        first_at = _midnight(days[0], zone)
        if row.manual_tier and row.manual_until is not None and row.manual_until < first_at:
            first_at = row.manual_until  # the floor's end is recorded with the tier then
        state[row.member_id] = {"tier": row.tier, "held": row.held_until,
                                "manual": row.manual_tier or "", "until": row.manual_until,
                                "enrolled": row.enrolled_on, "last": days[-1],
                                "first_at": first_at, "events": []}
        for day in days:
            due[day].append(row)
    _rewind(conn, pid, state)
    changes: list[tuple[str, TierChange, date, datetime]] = []
    refs: list[str | None] = []
    ended_floors: list[str] = []
    counts: defaultdict[str, int] = defaultdict(int)
    failed: dict[str, tuple[str, str]] = {}  # member -> (review day, reason)
    for review_day in sorted(due):
        members = due[review_day]
        review_at = _midnight(review_day, zone)
        windows: dict[Window, list[str]] = defaultdict(list)
        for row in members:
            windows[ladder.review_window(review_day, row.enrolled_on)].append(row.member_id)
        credit: dict[str, Credit] = {}
        for window, ids in windows.items():
            # Calendar and rolling windows are shared by everyone: one plain GROUP BY.
            scoped = None if ladder.window != "anniversary" else ids
            credit.update(_credits(conn, pid, ladder, window, scoped))
        for row in members:
            if row.member_id in failed:
                continue
            try:
                _review_member(ladder, pid, row, state[row.member_id], review_day, review_at,
                               credit.get(row.member_id, _none(ladder)), changes, refs,
                               ended_floors,
                               counts)
            except Exception as error:  # one member's bad data must not stop the review
                failed[row.member_id] = (review_day.isoformat(), describe_failure(error))
    if failed:
        # A failed member keeps its stored state: its review stays due and is retried.
        for member_id in failed:
            state.pop(member_id, None)
        kept = [(c, r) for c, r in zip(changes, refs, strict=True) if c[0] not in failed]
        changes = [c for c, _ in kept]
        refs = [r for _, r in kept]
        ended_floors = [m for m in ended_floors if m not in failed]
        result.failures.extend((pid, m, day, why) for m, (day, why) in sorted(failed.items()))
    for member in state.values():
        # Upgrades (and refunds) after the last review stand on top of its result.
        _replay_until(member, None)
    _write_review(conn, pid, state, changes, refs, ended_floors, now)
    if shared is not None:
        fast = review_fast(conn, ladder, pid, shared, now)
        for key in ("reviewed", "up", "down", "held"):
            counts[key] += fast[key]
        if fast["reviewed"]:
            due.setdefault(shared.day, [])
    result.reviewed[pid] = counts["reviewed"]
    result.upgraded[pid] = counts["up"]
    result.downgraded[pid] = counts["down"]
    result.held[pid] = counts["held"]
    result.floors_ended[pid] = len(ended_floors)
    result.review_days[pid] = [d.isoformat() for d in sorted(due)]


def _review_member(ladder: TierLadder, pid: str, row: Any, member: dict[str, Any],
                   review_day: date, review_at: datetime, got: Credit,
                   changes: list[tuple[str, TierChange, date, datetime]],
                   refs: list[str | None], ended_floors: list[str],
                   counts: defaultdict[str, int]) -> None:
    """One member's review on one review day (a floor that ended first), appended to the
    changes; `member` is its running state."""
    until = member["until"]
    if member["manual"] and until is not None and until <= review_at:
        _replay_until(member, until)
        floor = ladder.higher(member["manual"], member["tier"])
        changes.append((row.member_id, TierChange(
            pid, floor, member["tier"], "manual", member["held"],
            {"floor_ended": member["manual"], "until": until.isoformat()},
            up=False if floor != member["tier"] else None),
            row.enrolled_on, until))
        refs.append(f"floor-end:{until.isoformat()}")
        ended_floors.append(row.member_id)
        member["manual"] = ""
    _replay_until(member, review_at)  # purchases' upgrades before this review
    window = ladder.review_window(review_day, row.enrolled_on)
    new, held, why = review_tier(ladder, member["tier"], member["held"], got,
                                 review_day, row.enrolled_on)
    counts["reviewed"] += 1
    if why == "held":
        counts["held"] += 1
    if new != member["tier"]:
        counts["up" if ladder.rank(new) > ladder.rank(member["tier"]) else "down"] += 1
        changes.append((row.member_id, TierChange(
            pid, member["tier"], new, "review", held,
            {"review_day": review_day.isoformat(), "credit": credit_detail(ladder, got),
             "measure": ladder.measure, "policy": ladder.downgrade, "why": why,
             "window": [window.start.isoformat(), window.end.isoformat()]},
            up=ladder.rank(new) > ladder.rank(member["tier"])),
            row.enrolled_on, review_at))
        refs.append(f"review:{review_day.isoformat()}")
    member["tier"], member["held"] = new, held
    member["base"], member["base_held"] = new, held


def _write_review(conn: Connection, pid: str, state: dict[str, dict[str, Any]],
                  changes: list[tuple[str, TierChange, date, datetime]],
                  refs: list[str | None], ended_floors: list[str], now: datetime) -> None:
    if not state:
        return
    # Every reviewed member: the tier now, and the tier and hold the last review gave.
    conn.execute(
        _status.update().where(_status.c.program_id == pid,
                               _status.c.member_id == bindparam("m_id")),
        [{"m_id": m, "tier": s["tier"], "base_tier": s["base"], "held_until": s["held"],
          "base_held_until": s["base_held"], "reviewed_on": s["last"], "updated_at": now}
         for m, s in sorted(state.items())],
    )
    if ended_floors:
        for part in chunked(sorted(ended_floors)):
            conn.execute(_status.update().where(_status.c.program_id == pid,
                                                _status.c.member_id.in_(part))
                         .values(manual_tier=None, manual_until=None, manual_reason=None))
    insert_history(conn, [(m, c, at, ref) for (m, c, _, at), ref
                          in zip(changes, refs, strict=True)], now, once=True)


def _midnight(day: date, zone: Any) -> datetime:
    return start_of_day(day, zone)


def _rewind(conn: Connection, pid: str, state: dict[str, dict[str, Any]]) -> None:
    """Members' earned tier as it was at their first review still due.

    Purchases may have upgraded (or refunds lowered) a member after that review day but
    before the review runs (a late run, a catch-up). Those changes are taken out again and
    replayed in time order between the reviews, so that a review judges the tier held on
    its day and a later upgrade stands on top of it. One query for every member due."""
    if not state:
        return
    earliest = min(s["first_at"] for s in state.values())
    events: defaultdict[str, list[Any]] = defaultdict(list)
    for member_ids in chunked(sorted(state)):
        for row in conn.execute(
            select(_history.c.member_id, _history.c.from_tier, _history.c.to_tier,
                   _history.c.changed_at, _history.c.detail)
            .where(_history.c.program_id == pid, _history.c.member_id.in_(member_ids),
                   _history.c.reason.in_(("upgrade", "refund")),
                   _history.c.changed_at >= earliest)
            .order_by(_history.c.changed_at, _history.c.id)
        ):
            if row.changed_at >= state[row.member_id]["first_at"]:
                events[row.member_id].append(row)
    for member_id, found in events.items():
        member = state[member_id]
        first = found[0]
        member["tier"] = first.from_tier
        member["held"] = _date((first.detail or {}).get("held_before"))
        member["events"] = found


def _replay_until(member: dict[str, Any], before: datetime | None) -> None:
    """Apply a member's later tier changes that happened before an instant (all: None)."""
    events = member["events"]
    while events and (before is None or events[0].changed_at < before):
        event = events.pop(0)
        member["tier"] = event.to_tier
        member["held"] = _date((event.detail or {}).get("held_until"))


def _date(value: object) -> date | None:
    return date.fromisoformat(value) if isinstance(value, str) else None


# --- at risk ---------------------------------------------------------------------------------

@read_use_case
def at_risk(conn: Connection, as_of: datetime, program_id: str | None = None, *,
            versions: list[VersionInForce] | None = None) -> list[dict[str, Any]]:
    """Members who would drop at their next review if they earned no more credit, with
    what they lack to keep their tier. A manual floor lasting past the review, or a hold,
    protects a member. versions: those to look at (the scheduler's), else all in force."""
    found: list[dict[str, Any]] = []
    for version in versions_in_force(conn, as_of, program_id, versions):
        ladder = version.program.tiers
        if ladder is None:
            continue
        found.extend(_at_risk(conn, version, ladder, as_of))
    return found


def _per_measure(ladder: TierLadder, got: Credit, needs: Credit) -> dict[str, Any]:
    """A ladder of several measures: credit, needed and lacking by measure name (the
    single-measure figures stay credit, needed, lacks)."""
    if len(ladder.measures) == 1:
        return {}
    return {"credits": {m.name: v for m, v in zip(ladder.measures, got, strict=True)},
            "needs": {m.name: v for m, v in zip(ladder.measures, needs, strict=True)},
            "lacking": {m.name: max(0, n - v)
                        for m, v, n in zip(ladder.measures, got, needs, strict=True)}}


def _next_review(ladder: TierLadder, row: Any, today: date) -> date:
    after = max(row.reviewed_on or row.enrolled_on, today - timedelta(days=1))
    return ladder.next_review(after, row.enrolled_on)


def _at_risk(conn: Connection, version: VersionInForce, ladder: TierLadder,
             as_of: datetime) -> list[dict[str, Any]]:
    pid = version.program_id
    zone = version.program.timezone
    today = as_of.astimezone(zone).date()
    rows = conn.execute(select(_status).where(_status.c.program_id == pid,
                                              _status.c.tier != "")).all()
    by_window: dict[Window, list[Any]] = defaultdict(list)
    for row in rows:
        review = _next_review(ladder, row, today)
        by_window[ladder.review_window(review, row.enrolled_on)].append((row, review))
    found = []
    for window, members in by_window.items():
        ids = None if ladder.window != "anniversary" else [r.member_id for r, _ in members]
        credit = _credits(conn, pid, ladder, window, ids)
        for row, review in members:
            got = credit.get(row.member_id, _none(ladder))
            new, _, _ = review_tier(ladder, row.tier, row.held_until, got, review,
                                      row.enrolled_on)
            review_at = start_of_day(review, zone)
            floor = row.manual_tier if row.manual_tier and (
                row.manual_until is None or row.manual_until > review_at) else ""
            after = ladder.higher(floor, new) if floor else new
            before = ladder.higher(floor, row.tier) if floor else row.tier
            if ladder.rank(after) >= ladder.rank(before):
                continue
            step = ladder.step(row.tier)
            needs = _none(ladder) if step is None else step.needs
            currency = version.program.currency
            found.append({
                "member_id": row.member_id, "program_id": pid, "tier": before,
                "would_drop_to": after, "review_day": review, "measure": ladder.measure,
                "currency": currency,
                "credit": got[0], "needed": needs[0], "lacks": max(0, needs[0] - got[0]),
                **_per_measure(ladder, got, needs),
                "unit": ladder.measures[0].unit,
                "credit_shown": shown_credit(ladder, got, currency),
                "needed_shown": shown_credit(ladder, needs, currency,
                                             " and " if ladder.combine == "all" else " or "),
                "short": "" if step is None else shortfall(ladder, step, got, currency),
                "window": [window.start, window.end], "policy": ladder.downgrade,
            })
    found.sort(key=lambda r: (r["review_day"], r["member_id"]))
    return found


# --- one member --------------------------------------------------------------------------------

@read_use_case
def show_tiers(conn: Connection, member_id: str, as_of: datetime,
               program_id: str | None = None) -> list[dict[str, Any]]:
    """A member's tier per program: effective and earned tier, floor, hold, the current
    window's credit, what the next tier lacks, the next review and the history."""
    shown = []
    if conn.execute(select(tables.members.c.member_id).where(
            tables.members.c.member_id == member_id)).first() is None:
        raise NotFoundError(f"there is no member {member_id!r}")
    enrolled_in = set(conn.execute(select(tables.enrolments.c.program_id).where(
        tables.enrolments.c.member_id == member_id)).scalars())
    for version in load_catalog(conn).all_in_force(as_of):
        ladder = version.program.tiers
        if ladder is None or (program_id is not None and version.program_id != program_id):
            continue
        pid = version.program_id
        zone = version.program.timezone
        today = as_of.astimezone(zone).date()
        row = conn.execute(select(_status).where(_status.c.program_id == pid,
                                                 _status.c.member_id == member_id)).first()
        if row is None and pid not in enrolled_in:
            continue  # not a member of this program: no tier to show
        enrolled = row.enrolled_on if row is not None else today
        window = ladder.current_window(today, enrolled)
        progress = {(c, p): v for c, p, v in conn.execute(
            select(_counters.c.counter, _counters.c.period, _counters.c.value).where(
                _counters.c.member_id == member_id, _counters.c.program_id == pid,
                _counters.c.counter.in_(ladder.counters)))}
        credit = credits_in(progress, ladder, window)
        standing = Standing()
        if row is not None:
            standing = Standing(tier=row.tier, held_until=row.held_until,
                                manual_tier=row.manual_tier or "",
                                manual_until=row.manual_until, has_tier_row=True,
                                enrolled_on=row.enrolled_on)
        tier = effective_tier(ladder, standing, as_of)
        next_step = next((s for s in ladder.steps if s.rank > ladder.rank(standing.tier)),
                         None)
        review = None if row is None else _next_review(ladder, row, today)
        history = [
            {"from": h.from_tier, "to": h.to_tier, "reason": h.reason,
             "changed_at": h.changed_at, "detail": h.detail}
            for h in conn.execute(select(_history).where(
                _history.c.member_id == member_id, _history.c.program_id == pid)
                .order_by(_history.c.changed_at, _history.c.id))]
        shown.append({
            "program_id": pid, "tier": tier, "earned_tier": standing.tier,
            "manual_tier": standing.manual_tier or None,
            "manual_until": standing.manual_until,
            "held_until": standing.held_until, "measure": ladder.measure,
            "currency": version.program.currency,
            "window": [window.start, window.end], "credit": credit[0],
            "next_tier": None if next_step is None else next_step.tier_id,
            "next_tier_lacks": None if next_step is None
            else max(0, next_step.threshold - credit[0]),
            **_per_measure(ladder, credit, _none(ladder) if next_step is None
                           else next_step.needs),
            "unit": ladder.measures[0].unit,
            "credit_shown": shown_credit(ladder, credit, version.program.currency),
            "next_tier_short": None if next_step is None
            else shortfall(ladder, next_step, credit, version.program.currency),
            "next_review": review, "policy": ladder.downgrade,
            "history": history,
        })
    if program_id is not None and not shown:
        raise NotFoundError(f"program {program_id!r} has no tiers in force")
    return shown


# --- manual tier -----------------------------------------------------------------------------

@write_use_case
def set_manual_tier(conn: Connection, member_id: str, tier: str, until: datetime,
                    reason: str, at: datetime, now: datetime,
                    program_id: str | None = None) -> dict[str, Any]:
    """Set a tier by hand until a date. It is a floor: the member has at least this tier
    until then (earning more still upgrades them); afterwards the earned tier applies."""
    if until <= at:
        raise TierError(f"--until {until.isoformat()} is not after {at.isoformat()}; a "
                        "manual tier must expire in the future")
    if not reason.strip() or len(reason) > 200:
        raise TierError("--reason must say why, in at most 200 characters")

    versions = [v for v in load_catalog(conn).all_in_force(at)
                if v.program.tiers is not None
                and (program_id is None or v.program_id == program_id)]
    if not versions:
        raise NotFoundError("no program in force has tiers"
                            + (f" named {program_id!r}" if program_id else ""))
    if len(versions) > 1:
        raise TierError(f"several programs have tiers "
                        f"({', '.join(v.program_id for v in versions)}); name one "
                        "with --program")
    version = versions[0]
    ladder = version.program.tiers
    assert ladder is not None
    if ladder.step(tier) is None:
        raise TierError(f"program {version.program_id!r} has no tier {tier!r} "
                        f"(tiers: {', '.join(s.tier_id for s in ladder.steps)})")
    if not lock_member(conn, member_id):
        raise NotFoundError(f"there is no member {member_id!r}")
    pid = version.program_id
    row = conn.execute(select(_status).where(_status.c.program_id == pid,
                                             _status.c.member_id == member_id)).first()
    earned = "" if row is None else row.tier
    before = earned if row is None or not row.manual_tier else ladder.higher(
        row.manual_tier, earned)
    if row is None:
        today = at.astimezone(version.program.timezone).date()
        conn.execute(_status.insert().values(
            member_id=member_id, program_id=pid, tier="", base_tier="",
            held_until=None, enrolled_on=today, updated_at=now,
            manual_tier=tier, manual_until=until, manual_reason=reason))
    else:
        conn.execute(_status.update().where(
            _status.c.program_id == pid, _status.c.member_id == member_id).values(
            manual_tier=tier, manual_until=until, manual_reason=reason,
            updated_at=now))
    after = ladder.higher(tier, earned)
    insert_history(conn, [(member_id, TierChange(
        pid, before, after, "manual", None,
        {"manual_tier": tier, "until": until.isoformat(), "reason": reason,
         "earned_tier": earned},
        up=None if after == before else ladder.rank(after) > ladder.rank(before)),
        at, None)], now)
    return {"member_id": member_id, "program_id": pid, "manual_tier": tier,
            "until": until, "earned_tier": earned, "tier": after, "reason": reason}


# --- refunds -----------------------------------------------------------------------------------

def settle_refund(conn: Connection, version: VersionInForce, member_id: str, at: datetime,
                  now: datetime) -> TierChange | None:
    """After a refund took credit back: under `refunds: immediate`, drop the member to the
    tier the current window still qualifies for, but never below the last reviewed tier."""
    ladder = version.program.tiers
    if ladder is None or ladder.refunds != "immediate":
        return None
    pid = version.program_id
    query = select(_status).where(_status.c.program_id == pid,
                                  _status.c.member_id == member_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()  # a review running now finishes first
    row = conn.execute(query).first()
    if row is None:
        return None
    today = at.astimezone(version.program.timezone).date()
    if ladder.next_review(row.reviewed_on or row.enrolled_on, row.enrolled_on) <= today:
        # A review is due and has not run: its result is the floor a refund falls back
        # to, so the review decides (on the credit the refund left).
        return None
    window = ladder.current_window(today, row.enrolled_on)
    credit = _credits(conn, pid, ladder, window, [member_id]).get(member_id, _none(ladder))
    new = ladder.higher(row.base_tier, ladder.qualified(credit))
    if ladder.rank(new) >= ladder.rank(row.tier):
        return None
    if new == row.base_tier:
        held = row.base_held_until  # back to the reviewed tier, with its own hold
    else:  # a lower tier of this window's credit, reached in this period
        held = (ladder.held_until(today, row.enrolled_on)
                if ladder.downgrade == "hold_next_period" else None)
    change = TierChange(pid, row.tier, new, "refund", held,
                        {"credit": credit_detail(ladder, credit), "measure": ladder.measure,
                         "window": [window.start.isoformat(), window.end.isoformat()],
                         "floor": row.base_tier,
                         "held_before": None if row.held_until is None
                         else row.held_until.isoformat()}, up=False)
    write_tier_changes(conn, [(member_id, change, row.enrolled_on, at)], now)
    return change
