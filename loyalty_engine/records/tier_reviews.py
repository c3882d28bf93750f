"""A tier review's common case in set-based SQL: members of a calendar-year or rolling
ladder with exactly one review day due, no manual floor ending and no tier change since
that day are judged by CASE expressions over one GROUP BY of their credit, and updated
with one statement; only the members whose tier changes come back to Python, for their
history and events. review_tier (engine/standing.py) is the rule this mirrors; the slow
path in services/tiers.py handles everyone else with it, and a test holds the two equal."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    Date,
    MetaData,
    String,
    Table,
    and_,
    case,
    exists,
    false,
    func,
    literal,
    not_,
    null,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from loyalty_engine.domain.periods import start_of_day
from loyalty_engine.records.events import KEY_LENGTH, Event, record_events
from loyalty_engine.rules.compiled_membership import TierLadder
from loyalty_engine.store import tables
from loyalty_engine.store.types import UTCDateTime

_status = tables.tier_status
_history = tables.tier_history
_events = tables.member_events
_counters = tables.progress_counters

_temp = MetaData()
_decision = Table("review_decision", _temp,
                  Column("member_id", String(64), primary_key=True),
                  Column("credit", BigInteger), Column("credit_1", BigInteger),
                  Column("credit_2", BigInteger), Column("credit_3", BigInteger),
                  Column("old_tier", String(64)),
                  Column("new_tier", String(64)), Column("new_held", Date),
                  Column("why", String(32)), prefixes=["TEMPORARY"])


@dataclass(frozen=True, slots=True)
class SharedReview:
    """The review day everyone of a calendar or rolling ladder shares (the latest by
    today), the one before it, and its instant."""

    previous: date
    day: date
    at: datetime


def shared_review(ladder: TierLadder, today: date, zone: Any) -> SharedReview | None:
    """The shared review day due by today; None for anniversary ladders (each member has
    their own day)."""
    if ladder.window == "anniversary":
        return None
    day = ladder.review_on_or_before(today)
    previous = ladder.review_on_or_before(day - timedelta(days=1))
    return SharedReview(previous, day, start_of_day(day, zone))


def fast_members(pid: str, review: SharedReview) -> ColumnElement[bool]:
    """Who the set-based review may judge: exactly this review day due (their last review,
    or enrolment, falls in [previous, day)), no manual floor ending by it, and no upgrade
    or refund since it (those need the replay of services/tiers.py)."""
    s = _status.c
    # "The last review, or else the enrolment, falls in [previous, day)", spelled out by
    # column rather than over a COALESCE: PostgreSQL then estimates from the columns'
    # statistics how many are due (all of them, usually) and hashes its joins, where a
    # range over an expression is guessed at 0.5% and joined row by row.
    # (IS NOT NULL first: false, not unknown, for those never reviewed, so that the slow
    # path's NOT(...) takes everyone this leaves out.)
    after = or_(and_(s.reviewed_on.is_not(None), s.reviewed_on >= review.previous,
                     s.reviewed_on < review.day),
                and_(s.reviewed_on.is_(None), s.enrolled_on >= review.previous,
                     s.enrolled_on < review.day))
    floor_ends = and_(s.manual_tier.is_not(None), s.manual_tier != "",
                      s.manual_until.is_not(None), s.manual_until <= review.at)
    moved = exists().where(_history.c.program_id == pid, _history.c.member_id == s.member_id,
                           _history.c.reason.in_(("upgrade", "refund")),
                           _history.c.changed_at >= review.at)
    return and_(s.program_id == pid, after, not_(floor_ends), not_(moved))


def credit_names(ladder: TierLadder) -> list[str]:
    """The credit columns, one per measure: credit, credit_1, ..."""
    return ["credit" if i == 0 else f"credit_{i}" for i in range(len(ladder.measures))]


def credit_query(ladder: TierLadder, pid: str, start: date, end: date) -> Any:
    """Every member's credit per measure in [start, end): one GROUP BY of the counters.
    A day of a days measure counts while its purchases are not all refunded (above 0)."""
    c = _counters.c
    window = (c.program_id == pid, c.period >= start.isoformat(), c.period < end.isoformat())
    only = ladder.measures[0]
    if len(ladder.measures) == 1 and only.kind != "days":
        # The single summed measure as it always was (the benchmark's query).
        return (select(c.member_id, func.sum(c.value).label("credit"))
                .where(c.counter == only.counter, *window).group_by(c.member_id))
    columns = []
    for name, measure in zip(credit_names(ladder), ladder.measures, strict=True):
        if measure.kind == "days":
            value: Any = case((and_(c.counter == measure.counter, c.value > 0), 1), else_=0)
        else:
            value = case((c.counter == measure.counter, c.value), else_=0)
        columns.append(func.sum(value).label(name))
    return (select(c.member_id, *columns)
            .where(c.counter.in_(ladder.counters), *window).group_by(c.member_id))


def _rank(ladder: TierLadder, tier: ColumnElement[Any]) -> ColumnElement[int]:
    return case({step.tier_id: step.rank for step in ladder.steps}, value=tier, else_=-1)


def review_fast(conn: Connection, ladder: TierLadder, pid: str, review: SharedReview,
                now: datetime) -> dict[str, int]:
    """Review every fast member on the shared day; returns the counts (reviewed, up, down,
    held)."""
    window = ladder.review_window(review.day, review.day)
    postgres = conn.dialect.name == "postgresql"
    if postgres:
        # Room to hash and sort a whole program's members in memory (this transaction only).
        conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")
    credit = credit_query(ladder, pid, window.start, window.end).subquery("review_credit")
    decisions = _decisions(ladder, pid, review, credit)
    if postgres and not _long_keys_possible(ladder, pid, review):
        # One statement: the decisions, the update, history and events as data-modifying
        # CTEs over one materialised GROUP BY (no temporary table written and read back).
        d = decisions.cte("decision")
        statement = _counts_of(ladder, d).add_cte(
            _update(pid, review, d, now).cte("updated"),
            _history_insert(conn, ladder, pid, review, window, d).cte("history"),
            _events_insert(conn, ladder, pid, review, d, now).cte("events"))
        return _counted(conn.execute(statement).one())
    _decision.drop(conn, checkfirst=True)
    _decision.create(conn)
    conn.execute(_decision.insert().from_select(
        ["member_id", *credit_names(ladder), "old_tier", "new_tier", "new_held", "why"],
        decisions))
    counts = _counted(conn.execute(_counts_of(ladder, _decision)).one())
    if counts["reviewed"]:
        _record(conn, ladder, pid, review, window, now)
        conn.execute(_update(pid, review, _decision, now))
    # Not in a `finally`: after an error the transaction rolls back, and the table with it
    # (a DROP then would only hide the error behind "transaction aborted").
    _decision.drop(conn)
    return counts


def _update(pid: str, review: SharedReview, source: Any, now: datetime) -> Any:
    """Every reviewed member's new tier and hold, and the review day applied."""
    d = source.c
    return _status.update().where(
        _status.c.program_id == pid, _status.c.member_id == d.member_id,
    ).values(tier=d.new_tier, base_tier=d.new_tier, held_until=d.new_held,
             base_held_until=d.new_held, reviewed_on=review.day, updated_at=now)


def _long_keys_possible(ladder: TierLadder, pid: str, review: SharedReview) -> bool:
    """Whether some member's event key could exceed its column (member ids are at most
    64 characters): those are kept as digests, in Python, by the other path."""
    longest_tier = max(len(step.tier_id) for step in ladder.steps)
    return len(_key_text(pid, review, "", "", "")) + 64 + 2 * longest_tier > KEY_LENGTH


def _key_text(pid: str, review: SharedReview, member_id: str, old: str, new: str) -> str:
    return f"tier:{pid}:{member_id}:{review.at.isoformat()}:review:{old}>{new}"


def _decisions(ladder: TierLadder, pid: str, review: SharedReview, credits: Any) -> Any:
    """member_id, credit, old tier, new tier, new hold, why: review_tier as CASEs."""
    s = _status.c
    ids = [step.tier_id for step in ladder.steps]
    names = credit_names(ladder)
    got = [func.coalesce(credits.c[name], 0) for name in names]
    joined = or_ if ladder.combine == "any" else and_

    def reaches(step: Any) -> ColumnElement[bool]:
        if len(got) == 1:
            found: ColumnElement[bool] = got[0] >= step.threshold
            return found
        return joined(*[have >= need for have, need in zip(got, step.needs, strict=True)])

    qualified = case(*[(reaches(step), literal(step.tier_id))
                       for step in reversed(ladder.steps)], else_=literal(""))
    inner = (select(s.member_id, *[have.label(name) for have, name in zip(got, names,
                                                                          strict=True)],
                    s.tier, s.held_until,
                    case((s.tier.in_(ids), s.tier), else_=literal("")).label("cur"),
                    qualified.label("q"))
             .select_from(_status.outerjoin(credits, credits.c.member_id == s.member_id))
             .where(fast_members(pid, review))).subquery()
    cur, q = inner.c.cur, inner.c.q
    hold = ladder.downgrade == "hold_next_period"
    held_if_qualified: Any = (
        case((q != "", literal(ladder.held_until(review.day - timedelta(days=1), review.day),
                               Date)), else_=null()) if hold else null())
    up_or_level = _rank(ladder, q) >= _rank(ladder, cur)
    still_held = (and_(inner.c.held_until.is_not(None), inner.c.held_until > review.day)
                  if hold else false())
    if ladder.downgrade == "one_level":
        below = case({ids[i]: ids[i - 1] for i in range(1, len(ids))}, value=cur,
                     else_=literal(""))
        down: Any = case((_rank(ladder, q) >= _rank(ladder, below), q), else_=below)
        down_held: Any = null()
        down_why = "one level down"
    else:
        down, down_held, down_why = q, held_if_qualified, "not requalified"
    return select(
        inner.c.member_id, *[inner.c[name] for name in names], inner.c.tier.label("old_tier"),
        case((up_or_level, q), (still_held, cur), else_=down).label("new_tier"),
        case((up_or_level, held_if_qualified), (still_held, inner.c.held_until),
             else_=down_held).label("new_held"),
        case((up_or_level, case((q == cur, literal("qualified")),
                                else_=literal("qualified higher"))),
             (still_held, literal("held")), else_=literal(down_why)).label("why"))


def _counts_of(ladder: TierLadder, source: Any) -> Any:
    """Reviewed, held, up and down among the decisions."""
    d = source.c
    up = _rank(ladder, d.new_tier) > _rank(ladder, d.old_tier)
    changed = d.new_tier != d.old_tier
    return select(
        func.count(), *(func.coalesce(func.sum(case((condition, 1), else_=0)), 0)
                        for condition in (d.why == "held", and_(changed, up),
                                          and_(changed, not_(up))))).select_from(source)


def _counted(row: Any) -> dict[str, int]:
    reviewed, held, ups, downs = row
    return {"reviewed": int(reviewed), "held": int(held), "up": int(ups), "down": int(downs)}


def _record(conn: Connection, ladder: TierLadder, pid: str, review: SharedReview,
            window: Any, now: datetime) -> None:
    """History and events of the members whose tier changed, each one INSERT ... SELECT
    (the JSON built by the database), in the shape records/standing.insert_history
    writes."""
    conn.execute(_history_insert(conn, ladder, pid, review, window, _decision))
    conn.execute(_events_insert(conn, ladder, pid, review, _decision, now))
    d = _decision.c
    key = (literal(f"tier:{pid}:") + d.member_id
           + literal(f":{review.at.isoformat()}:review:") + d.old_tier + literal(">")
           + d.new_tier)
    # A key too long for its column is kept as a digest, as record_events does.
    long_keys = conn.execute(select(d.member_id, d.old_tier, d.new_tier, d.new_held)
                             .where(d.new_tier != d.old_tier,
                                    func.length(key) > KEY_LENGTH)).all()
    record_events(conn, [Event(
        _key_text(pid, review, r.member_id, r.old_tier, r.new_tier),
        "tier_upgraded" if ladder.rank(r.new_tier) > ladder.rank(r.old_tier)
        else "tier_downgraded", r.member_id, pid, review.at,
        {"from": r.old_tier, "to": r.new_tier, "reason": "review",
         "held_until": None if r.new_held is None else r.new_held.isoformat()})
        for r in long_keys], now)


def _history_insert(conn: Connection, ladder: TierLadder, pid: str, review: SharedReview,
                    window: Any, source: Any) -> Any:
    """The history entries of the members whose tier changed (natural key: the review)."""
    d = source.c
    postgres = conn.dialect.name == "postgresql"
    obj = func.json_build_object if postgres else func.json_object
    array = func.json_build_array if postgres else func.json_array
    held_text = func.cast(d.new_held, String) if postgres else d.new_held
    at = literal(review.at, UTCDateTime)
    changed = d.new_tier != d.old_tier
    credit: Any = d.credit
    if len(ladder.measures) > 1:
        credit = obj(*[part for m, name in zip(ladder.measures, credit_names(ladder),
                                               strict=True) for part in (m.name, d[name])])
    fields: list[Any] = [
        "review_day", review.day.isoformat(), "credit", credit, "measure", ladder.measure,
        "policy", ladder.downgrade, "why", d.why,
        "window", array(window.start.isoformat(), window.end.isoformat())]
    detail = case((d.new_held.is_(None), obj(*fields)),
                  else_=obj(*fields, "held_until", held_text))
    history = (pg_insert if postgres else sqlite_insert)(_history).from_select(
        ["member_id", "program_id", "from_tier", "to_tier", "reason", "changed_at",
         "detail", "ref"],
        select(d.member_id, literal(pid), d.old_tier, d.new_tier, literal("review"), at,
               detail, literal(f"review:{review.day.isoformat()}"))
        .where(changed))
    return history.on_conflict_do_nothing(index_elements=["member_id", "program_id", "ref"])


def _events_insert(conn: Connection, ladder: TierLadder, pid: str, review: SharedReview,
                   source: Any, now: datetime) -> Any:
    """The outbox events of the members whose tier changed, whose key fits its column."""
    d = source.c
    postgres = conn.dialect.name == "postgresql"
    obj = func.json_build_object if postgres else func.json_object
    held_text = func.cast(d.new_held, String) if postgres else d.new_held
    at = literal(review.at, UTCDateTime)
    changed = d.new_tier != d.old_tier
    key = (literal(f"tier:{pid}:") + d.member_id
           + literal(f":{review.at.isoformat()}:review:") + d.old_tier + literal(">")
           + d.new_tier)
    up = _rank(ladder, d.new_tier) > _rank(ladder, d.old_tier)
    data = obj("from", d.old_tier, "to", d.new_tier, "reason", "review",
               "held_until", held_text)
    events = (pg_insert if postgres else sqlite_insert)(_events).from_select(
        ["key", "kind", "member_id", "program_id", "occurred_at", "data", "recorded_at"],
        select(key, case((up, literal("tier_upgraded")), else_=literal("tier_downgraded")),
               d.member_id, literal(pid), at, data, literal(now, UTCDateTime))
        .where(changed, func.length(key) <= KEY_LENGTH))
    return events.on_conflict_do_nothing(index_elements=["key"])
