"""Reading members: lists, a member's balances, lots and purchases, and the ledger explained."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Text, and_, cast, exists, func, or_, select

from loyalty_engine import ledger
from loyalty_engine.domain.errors import LoyaltyError, MemberError
from loyalty_engine.domain.ledger_reasons import describe_reason
from loyalty_engine.engine.earning import local_day
from loyalty_engine.rules.compiled import StampCard
from loyalty_engine.services.enrolment import member_clubs
from loyalty_engine.services.programs import load_catalog
from loyalty_engine.services.tiers import show_tiers
from loyalty_engine.store import tables
from loyalty_engine.store.unit_of_work import read_use_case

_members = tables.members
_balances = tables.balances
_enrolments = tables.enrolments
_ledger = tables.ledger_entries
_lots = tables.point_lots
_versions = tables.program_versions
_purchases = tables.purchases
_counters = tables.progress_counters
_vouchers = tables.vouchers
_debts = tables.point_debts


class MemberNotFoundError(LoyaltyError):
    """No member with that id."""

    def __init__(self, member_id: str) -> None:
        super().__init__(f"no member with id {member_id!r}")


@dataclass(frozen=True, slots=True)
class MemberSummary:
    """One line of `members list`: balances per program, never added across programs."""

    member_id: str
    created_at: datetime
    balances: dict[str, tuple[int, int]]  # program -> (spendable, pending)
    purchases: int
    last_purchase_at: datetime | None
    erased: bool

    def as_json(self) -> dict[str, Any]:
        """Plain data for --json and HTTP."""
        return {"member_id": self.member_id, "created_at": self.created_at,
                "balances": [{"program_id": p, "points": v[0], "pending": v[1]}
                             for p, v in sorted(self.balances.items())],
                "purchases": self.purchases, "last_purchase_at": self.last_purchase_at,
                "erased": self.erased}


@dataclass(frozen=True, slots=True)
class MemberPage:
    """A page of members and how many match in all."""

    rows: list[MemberSummary]
    total: int
    offset: int
    limit: int


# The fields `members list --sort` and `GET /v1/members?sort=` accept.
SORT_FIELDS = ("member_id", "created", "purchases", "last_purchase", "points")


def parse_sort(sort: str) -> tuple[str, bool]:
    """FIELD or FIELD:desc (or :asc) -> (field, descending); MemberError otherwise."""
    field, _, direction = sort.partition(":")
    if field not in SORT_FIELDS or direction not in ("", "asc", "desc"):
        raise MemberError(f"{sort!r} is not a sort order: one of {', '.join(SORT_FIELDS)}, "
                          "optionally followed by :desc")
    return field, direction == "desc"


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@read_use_case
def list_members(conn: Connection, *, search: str | None = None, program: str | None = None,
                 sort: str = "member_id", limit: int = 100, offset: int = 0,
                 as_of: datetime | None = None) -> MemberPage:
    """Members matching a search (in the id or the attributes, case-insensitive) and
    enrolled in a program, sorted, one page, with the number matching in all. A fixed
    number of statements whatever the page: count, page, the page's balances (as of
    as_of, given: less lots expired by then, as show_member; the sort uses the cache)."""
    field, descending = parse_sort(sort)
    if field == "points" and program is None:
        raise MemberError("sorting by points needs a program (--program): points of two "
                          "programs never add up")
    conditions: list[Any] = []
    if search:
        pattern = _like(search)
        conditions.append(or_(
            func.lower(_members.c.member_id).like(pattern, escape="\\"),
            func.lower(cast(_members.c.attributes, Text)).like(pattern, escape="\\")))
    if program is not None:
        conditions.append(exists().where(_enrolments.c.member_id == _members.c.member_id,
                                         _enrolments.c.program_id == program))
    bought = (
        select(_purchases.c.member_id, func.count().label("n"),
               func.max(_purchases.c.occurred_at).label("last"))
        .where(_purchases.c.member_id.is_not(None))
        .group_by(_purchases.c.member_id).subquery()
    )
    query = (select(_members.c.member_id, _members.c.created_at, _members.c.erased_at,
                    func.coalesce(bought.c.n, 0).label("n"), bought.c.last)
             .outerjoin(bought, bought.c.member_id == _members.c.member_id)
             .where(*conditions))
    key: Any = {"member_id": _members.c.member_id, "created": _members.c.created_at,
                "purchases": func.coalesce(bought.c.n, 0),
                "last_purchase": bought.c.last}.get(field)
    if field == "points":
        query = query.outerjoin(_balances, and_(_balances.c.member_id == _members.c.member_id,
                                                _balances.c.program_id == program))
        key = func.coalesce(_balances.c.points, 0)
    ordered = key.desc() if descending else key.asc()
    if field == "last_purchase":  # members without purchases last, either way
        ordered = ordered.nulls_last()
    query = query.order_by(ordered, _members.c.member_id).limit(limit).offset(offset)
    total = int(conn.execute(select(func.count()).select_from(_members)
                             .where(*conditions)).scalar_one())
    rows = conn.execute(query).all()
    balances: dict[str, dict[str, tuple[int, int]]] = {}
    ids = [r.member_id for r in rows]
    if ids:
        points, pending = ((_balances.c.points, _balances.c.pending) if as_of is None
                           else ledger.shown_columns(as_of))
        shown = select(_balances.c.member_id, _balances.c.program_id, points.label("points"),
                       pending.label("pending")).where(_balances.c.member_id.in_(ids))
        if program is not None:
            shown = shown.where(_balances.c.program_id == program)
        for b in conn.execute(shown):
            balances.setdefault(b.member_id, {})[b.program_id] = (int(b.points),
                                                                  int(b.pending))
    # max() keeps the column's type, so last_purchase_at comes back timezone-aware.
    return MemberPage([MemberSummary(r.member_id, r.created_at, balances.get(r.member_id, {}),
                                     int(r.n), r.last, r.erased_at is not None)
                       for r in rows], total, offset, limit)


@read_use_case
def show_member(conn: Connection, member_id: str, as_of: datetime,
                recent: int = 10) -> dict[str, Any]:
    """Everything about one member at as_of: enrolments, balances (spendable and pending),
    point lots, stamp cards, progress counters, vouchers, debts, recent purchases, tiers
    and clubs."""
    catalog = load_catalog(conn)
    member = conn.execute(select(_members).where(_members.c.member_id == member_id)).first()
    if member is None:
        raise MemberNotFoundError(member_id)
    enrolments = conn.execute(
        select(_enrolments.c.program_id, _enrolments.c.enrolled_at, _enrolments.c.source)
        .where(_enrolments.c.member_id == member_id).order_by(_enrolments.c.program_id)
    ).all()
    balances = conn.execute(
        select(_balances.c.program_id, _balances.c.points, _balances.c.pending,
               _balances.c.lifetime_earned)
        .where(_balances.c.member_id == member_id).order_by(_balances.c.program_id)
    ).all()
    lots = conn.execute(
        select(_lots.c.entry_id, _lots.c.program_id, _lots.c.earned_at, _lots.c.points,
               _lots.c.remaining, ledger.expiry_column().label("expires_at"),
               _lots.c.pending_until, _lots.c.activated_at)
        .where(_lots.c.member_id == member_id)
        .order_by(_lots.c.program_id, _lots.c.earned_at, _lots.c.entry_id)
    ).all()
    purchases = conn.execute(
        select(_purchases.c.id, _purchases.c.store_id, _purchases.c.transaction_id,
               _purchases.c.occurred_at, _purchases.c.currency, _purchases.c.total_minor,
               _purchases.c.tender, _purchases.c.channel)
        .where(_purchases.c.member_id == member_id)
        .order_by(_purchases.c.occurred_at.desc(), _purchases.c.id.desc()).limit(recent)
    ).all()
    counters = conn.execute(
        select(_counters.c.program_id, _counters.c.counter, _counters.c.period,
               _counters.c.value)
        .where(_counters.c.member_id == member_id, _counters.c.value != 0)
        .order_by(_counters.c.program_id, _counters.c.counter, _counters.c.period)
    ).all()
    vouchers = conn.execute(
        select(_vouchers.c.code, _vouchers.c.program_id, _vouchers.c.reward_id,
               _vouchers.c.kind, _vouchers.c.amount_minor, _vouchers.c.percent,
               _vouchers.c.sku, _vouchers.c.category, _vouchers.c.source,
               _vouchers.c.issued_at, _vouchers.c.valid_until, _vouchers.c.status)
        .where(_vouchers.c.member_id == member_id)
        .order_by(_vouchers.c.issued_at, _vouchers.c.code)
    ).all()
    debts = conn.execute(
        select(_debts.c.program_id, _debts.c.points, _debts.c.outstanding,
               _debts.c.in_balance, _debts.c.created_at)
        .where(_debts.c.member_id == member_id).order_by(_debts.c.id)
    ).all()
    progress: dict[str, dict[tuple[str, str], int]] = {}
    for row in counters:
        progress.setdefault(row.program_id, {})[(row.counter, row.period)] = row.value
    cards = []
    for program_id in sorted(r.program_id for r in enrolments):
        values = progress.get(program_id, {})
        version = catalog.in_force(program_id, as_of)
        if version is None:
            continue
        today = local_day(version.program, as_of)
        for rule in version.program.rules_of(StampCard):
            cards.append({"program_id": program_id, "rule_id": rule.rule_id,
                          "stamps": rule.held(values, today),
                          "card_size": rule.card_size, "reward_id": rule.reward_id})
    return {
        "member_id": member.member_id,
        "created_at": member.created_at,
        "attributes": member.attributes,
        "enrolments": [dict(r._mapping) for r in enrolments],
        "balances": _balances_at(balances, lots, as_of),
        "lots": [dict(r._mapping) for r in lots],
        "recent_purchases": [dict(r._mapping) for r in purchases],
        "stamp_cards": cards,
        "progress": [dict(r._mapping) for r in counters],
        "vouchers": [
            {**r._mapping, "valid": r.status == "issued" and r.valid_until > as_of}
            for r in vouchers],
        "debts": [dict(r._mapping) for r in debts],
        # Tiers (without their history: `loyalty tiers show` has it) and clubs at a glance.
        "tiers": [{k: v for k, v in t.items() if k != "history"}
                  for t in show_tiers(conn, member_id, as_of)],
        "clubs": member_clubs(conn, member_id, as_of),
    }


def _balances_at(balances: Sequence[Any], lots: Sequence[Any],
                 as_of: datetime) -> list[dict[str, Any]]:
    """The balances as of as_of: a lot whose expiry came by then is not spendable (nor
    pending), whether or not the expire step has recorded it yet."""
    lots_of: dict[str, list[Any]] = {}
    for lot in lots:
        lots_of.setdefault(lot.program_id, []).append(lot)
    shown = []
    for row in balances:
        points, pending = ledger.shown_at((int(row.points), int(row.pending)),
                                          lots_of.get(row.program_id, ()), as_of)
        shown.append({**row._mapping, "points": points, "pending": pending})
    return shown


def require_member(conn: Connection, member_id: str) -> None:
    """Refuse an unknown member id (MemberNotFoundError)."""
    if conn.execute(select(_members.c.member_id).where(_members.c.member_id == member_id)
                    ).first() is None:
        raise MemberNotFoundError(member_id)


@read_use_case
def explain_member(conn: Connection, member_id: str) -> dict[str, Any]:
    """A member's ledger, program by program (points of two programs never add up): each
    program's spendable and pending balance, and every entry with the version, rule and
    purchase behind it, its lot's pending and expiry dates, and its reason as a sentence."""
    require_member(conn, member_id)
    catalog = load_catalog(conn)
    rows = conn.execute(
        select(
            _ledger.c.id, _ledger.c.program_id, _versions.c.version,
            _versions.c.content_hash, _ledger.c.rule_id, _ledger.c.kind, _ledger.c.points,
            _ledger.c.occurred_at, _purchases.c.store_id, _purchases.c.transaction_id,
            _purchases.c.total_minor, _purchases.c.currency, _ledger.c.reason,
            _lots.c.pending_until, _lots.c.activated_at, _lots.c.expires_at,
        )
        .join(_versions, _versions.c.id == _ledger.c.program_version_id)
        .outerjoin(_purchases, _purchases.c.id == _ledger.c.purchase_id)
        .outerjoin(_lots, _lots.c.entry_id == _ledger.c.id)
        .where(_ledger.c.member_id == member_id)
        .order_by(_ledger.c.program_id, _ledger.c.occurred_at, _ledger.c.id)
    ).all()
    balances = {r.program_id: r for r in conn.execute(
        select(_balances.c.program_id, _balances.c.points, _balances.c.pending)
        .where(_balances.c.member_id == member_id))}
    programs: dict[str, dict[str, Any]] = {}
    for pid in sorted({r.program_id for r in rows} | set(balances)):
        newest = catalog.versions(pid)[-1].program  # entries and balances need a version
        balance = balances.get(pid)
        programs[pid] = {
            "program_id": pid, "name": newest.name, "currency": newest.currency,
            "timezone": str(newest.timezone), "points": balance.points if balance else 0,
            "pending": balance.pending if balance else 0, "entries": []}
    for r in rows:
        program = programs[r.program_id]
        entry = dict(r._mapping)
        lot = {k: entry.pop(k) for k in ("pending_until", "activated_at", "expires_at")}
        entry["lot"] = lot if any(lot.values()) else None  # lots belong to earnings
        entry["why"] = describe_reason(r.kind, r.reason, program["currency"])
        program["entries"].append(entry)
    return {"member_id": member_id, "programs": list(programs.values())}


@read_use_case
def ledger_page(conn: Connection, member_id: str, after: int | None, limit: int,
                hidden: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """Up to `limit` ledger entries of a member with ids above `after`, oldest first, each
    with its version, rule, purchase and reason (a page of `explain_member`, by id); none
    of the `hidden` programs."""
    require_member(conn, member_id)
    query = (
        select(_ledger.c.id, _ledger.c.program_id, _versions.c.version.label(
                   "program_version"), _ledger.c.rule_id, _ledger.c.kind,
               _ledger.c.points, _ledger.c.occurred_at, _purchases.c.store_id,
               _purchases.c.transaction_id, _ledger.c.reason)
        .join(_versions, _versions.c.id == _ledger.c.program_version_id)
        .outerjoin(_purchases, _purchases.c.id == _ledger.c.purchase_id)
        .where(_ledger.c.member_id == member_id)
        .order_by(_ledger.c.id).limit(limit)
    )
    if after is not None:
        query = query.where(_ledger.c.id > after)
    if hidden:
        query = query.where(_ledger.c.program_id.not_in(sorted(hidden)))
    return [dict(r._mapping) for r in conn.execute(query)]
