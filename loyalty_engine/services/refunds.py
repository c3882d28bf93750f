"""Refunds: take back exactly what a purchase earned, pro rata, once per (store_id, refund_id).

Every effect v of the purchase (points per entry, spend, stamps and cap use per counter)
is reversed in proportion to the refunded share of the spend it was earned on
(engine/refund_shares.py): after refunds R of that spend B, v is reversed to
round_half_up(v x R / B) in all; this refund takes the difference from the earlier ones'.
So refunds in any number of parts add up to exactly v at the full refund. Counts (visits,
thresholds reached, first purchase in a category) are reversed only when the purchase is
refunded in full.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from loyalty_engine import ledger
from loyalty_engine.domain.errors import (
    RefundConflictError,
    RefundPurchaseMissingError,
    RefundRejectedError,
)
from loyalty_engine.domain.money import MoneyError, currency_exponent, format_minor, to_minor
from loyalty_engine.domain.refunds import RefundEvent
from loyalty_engine.engine.catalog import ProgramCatalog
from loyalty_engine.engine.earning import local_day
from loyalty_engine.engine.refund_shares import Line, Refunded, RefundShares
from loyalty_engine.records.vouchers import VOUCHER_COLUMNS, voucher_row
from loyalty_engine.rules.compiled import PeriodicRebate, StampCard
from loyalty_engine.rules.compiled_membership import QUANTITY_COUNTER
from loyalty_engine.services.fees import refund_till_fees
from loyalty_engine.services.period_bonuses import take_back_bonuses
from loyalty_engine.services.programs import load_catalog
from loyalty_engine.services.rebates import settle_rebate_refund
from loyalty_engine.services.tiers import settle_refund
from loyalty_engine.store import tables
from loyalty_engine.store.bulk import Converters, insert_returning, insert_rows
from loyalty_engine.store.locks import lock_member
from loyalty_engine.store.unit_of_work import write_use_case

_purchases = tables.purchases
_items = tables.purchase_items
_refunds = tables.refunds
_ledger = tables.ledger_entries
_journal = tables.purchase_progress
_counters = tables.progress_counters
_vouchers = tables.vouchers

# Counters that count events rather than amounts: reversed only by a full refund.
_COUNTS = (":visits", ":awarded", ":seen", "*:days")


@dataclass(slots=True)
class RefundOutcome:
    """What a refund took back; a replay returns the first outcome."""

    refund_id: str
    store_id: str
    purchase_id: int
    member_id: str | None
    amount_minor: int
    refunded_minor: int  # of the purchase, this refund included
    total_minor: int
    points: dict[str, int] = field(default_factory=dict)  # program -> points taken back
    debts: dict[str, int] = field(default_factory=dict)  # program -> points owed
    stamps: dict[str, int] = field(default_factory=dict)  # "program/rule" -> stamps
    vouchers_voided: list[str] = field(default_factory=list)
    vouchers_reissued: list[str] = field(default_factory=list)
    tiers: dict[str, str] = field(default_factory=dict)  # program -> tier dropped to at once
    fees_refunded: list[int] = field(default_factory=list)  # club fee charges paid at the till
    replayed: bool = False

    def as_json(self) -> dict[str, Any]:
        """The outcome as stored with the refund (and returned on a replay)."""
        return {k: getattr(self, k) for k in (
            "refund_id", "store_id", "purchase_id", "member_id", "amount_minor",
            "refunded_minor", "total_minor", "points", "debts", "stamps", "vouchers_voided",
            "vouchers_reissued", "tiers", "fees_refunded")}


@write_use_case
def record_refund(conn: Connection, event: RefundEvent, now: datetime) -> RefundOutcome:
    """Record a refund; the same event again returns the first outcome unchanged.

    Raises RefundConflictError when the refund id was used with a different body, and
    RefundRejectedError when it cannot be accepted (no such purchase, more than remains).
    """
    return apply_refund(conn, load_catalog(conn), event, now)


def apply_refund(conn: Connection, catalog: ProgramCatalog, event: RefundEvent,
                 now: datetime) -> RefundOutcome:
    """Record a refund inside the caller's transaction (imports use this directly)."""
    body_hash = event.body_hash()
    stored = _stored_refund(conn, event)
    if stored is not None:
        return _replayed(event, stored, body_hash)
    store_id, transaction_id = event.purchase_key
    purchase = conn.execute(
        select(_purchases).where(_purchases.c.store_id == store_id,
                                 _purchases.c.transaction_id == transaction_id)
    ).first()
    if purchase is None:
        raise RefundPurchaseMissingError(f"there is no purchase {transaction_id!r} of store "
                                         f"{store_id!r} to refund")
    if purchase.member_id is not None and not lock_member(conn, purchase.member_id):
        raise AssertionError("a purchase's member always exists")
    if conn.dialect.name == "postgresql":
        # Serialise refunds of the same purchase (anonymous ones have no member to lock).
        conn.execute(select(_purchases.c.id).where(_purchases.c.id == purchase.id)
                     .with_for_update())
        stored = _stored_refund(conn, event)  # a twin may have committed while we waited
        if stored is not None:
            return _replayed(event, stored, body_hash)
    if event.occurred_at < purchase.occurred_at:
        raise RefundRejectedError(f"the refund ({event.occurred_at.isoformat()}) is dated before "
                                  f"the purchase ({purchase.occurred_at.isoformat()})")
    exponent = currency_exponent(purchase.currency)
    try:
        amount = to_minor(event.amount, exponent, "amount", purchase.currency)
    except MoneyError as exc:
        raise RefundRejectedError(str(exc)) from None
    before = int(conn.execute(  # int(): PostgreSQL sums bigints as numeric
        select(func.coalesce(func.sum(_refunds.c.amount_minor), 0))
        .where(_refunds.c.purchase_id == purchase.id)
    ).scalar_one())
    total = purchase.total_minor
    if before + amount > total:
        left = format_minor(total - before, exponent)
        raise RefundRejectedError(
            f"refund of {format_minor(amount, exponent)} {purchase.currency} is more than what "
            f"remains of the purchase ({left} of {format_minor(total, exponent)})")
    items: tuple[tuple[str, int], ...] | None = None
    if event.items is not None:
        items = _check_items(conn, purchase.id, event, exponent, purchase.currency)
    shares = RefundShares(
        [Line(*row) for row in conn.execute(
            select(_items.c.sku, _items.c.category, _items.c.amount_minor,
                   _items.c.quantity_milli)
            .where(_items.c.purchase_id == purchase.id).order_by(_items.c.line_no))],
        purchase.total_minor,
        [Refunded(row.amount_minor, _listed(row.items)) for row in conn.execute(
            select(_refunds.c.amount_minor, _refunds.c["items"])
            .where(_refunds.c.purchase_id == purchase.id).order_by(_refunds.c.id))],
        Refunded(amount, items),
    )
    after = before + amount
    [(refund_pk,)] = insert_returning(
        conn, _refunds,
        ("store_id", "refund_id", "purchase_id", "member_id", "occurred_at",
         "amount_minor", "items", "body_hash", "recorded_at", "result"),
        [(event.store_id, event.refund_id, purchase.id, purchase.member_id,
          Converters(conn).when(event.occurred_at), amount,
          Converters.json({"lines": None if event.items is None else [
              {"sku": i.sku, "quantity_milli": int(i.quantity * 1000), "amount_minor": minor}
              for i, (_, minor) in zip(event.items, items or (), strict=True)]}),
          body_hash, Converters(conn).when(now), "{}")],
        None, ("id",),
    )
    outcome = RefundOutcome(event.refund_id, event.store_id, purchase.id, purchase.member_id,
                            amount, after, total)
    if purchase.member_id is not None and total > 0:
        reversal = _Reversal(conn, catalog, purchase, refund_pk, event, now, outcome, shares)
        reversal.points()
        reversal.progress()
        for version in catalog.all_in_force(purchase.occurred_at):
            # Only the programs the purchase counted in: a coffee refund leaves beauty tiers.
            if (not version.program.covers(purchase.store_id)
                    or version.program.currency != purchase.currency):
                continue
            change = settle_refund(conn, version, purchase.member_id, event.occurred_at, now)
            if change is not None:
                outcome.tiers[version.program_id] = change.to_tier
        returned: defaultdict[str, int] = defaultdict(int)
        for sku, minor in items or ():
            returned[sku] += minor
        outcome.fees_refunded = refund_till_fees(
            conn, purchase.id, None if event.items is None else dict(returned),
            after == total, event.occurred_at, now)
    conn.execute(_refunds.update().where(_refunds.c.id == refund_pk)
                 .values(result=outcome.as_json()))
    return outcome


class _Reversal:
    """Takes back one refund's share of a purchase's effects."""

    def __init__(self, conn: Connection, catalog: ProgramCatalog, purchase: Any,
                 refund_pk: int, event: RefundEvent, now: datetime,
                 outcome: RefundOutcome, shares: RefundShares) -> None:
        self.conn = conn
        self.catalog = catalog
        self.purchase = purchase
        self.member_id: str = purchase.member_id
        self.refund_pk = refund_pk
        self.event = event
        self.now = now
        self.outcome = outcome
        self.shares = shares
        self.convert = Converters(conn)

    def points(self) -> None:
        """Reverse the refund's share of each earning entry of the purchase."""
        conn = self.conn
        entries = conn.execute(
            select(_ledger.c.id, _ledger.c.program_id, _ledger.c.program_version_id,
                   _ledger.c.rule_id, _ledger.c.points)
            .where(_ledger.c.purchase_id == self.purchase.id, _ledger.c.kind == "earn")
            .order_by(_ledger.c.id)
        ).all()
        rows = []
        debts: list[ledger.NewDebt] = []
        balance: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
        for entry in entries:
            program = self.catalog.version(entry.program_version_id).program
            points = self.shares.back(entry.points, program, entry.rule_id)
            if points <= 0:
                continue
            own = ledger.take_from_lot(conn, entry.id, points)
            left = points - (own.points if own else 0)
            # Points of this purchase that already lapsed are gone: not taken again.
            lapsed = min(left, self._lapsed_unclaimed(entry.id)) if left else 0
            left -= lapsed
            taken = ([own] if own else []) + (ledger.take_points(
                conn, self.member_id, entry.program_id, left, self.event.occurred_at,
                skip_entry=entry.id) if left else [])
            took = sum(t.points for t in taken)
            shortfall = left - (took - (own.points if own else 0))
            points -= lapsed
            policy = self.catalog.version(entry.program_version_id).program.refund_shortfall
            in_balance = policy == "negative_balance"
            for t in taken:
                balance[entry.program_id][1 if t.pending else 0] -= t.points
            if shortfall:
                debts.append(ledger.NewDebt(self.member_id, entry.program_id, self.refund_pk,
                                            points, shortfall, in_balance))
                self.outcome.debts[entry.program_id] = (
                    self.outcome.debts.get(entry.program_id, 0) + shortfall)
                if in_balance:
                    balance[entry.program_id][0] -= shortfall
            booked = points if in_balance else took
            if booked or lapsed:
                rows.append((entry, -booked, taken, shortfall, lapsed))
            self.outcome.points[entry.program_id] = (
                self.outcome.points.get(entry.program_id, 0) + booked)
        ledger.record_debts(conn, debts, self.now)
        ledger.append(conn, [
            ledger.Entry(self.member_id, entry.program_id, entry.program_version_id, "refund",
                         points, self.event.occurred_at,
                         self._reason(entry, taken, short, lapsed),
                         f"refund:{self.refund_pk}:{entry.id}", entry.rule_id)
            for entry, points, taken, short, lapsed in rows], self.now)
        ledger.change_balances(conn, {(self.member_id, program_id): (spendable, pending)
                                      for program_id, (spendable, pending) in balance.items()},
                               self.now)

    def _pays_later(self, program_id: str, counter: str) -> bool:
        """Whether a counter belongs to a rule that pays once its period has ended (a
        rebate, an at_period_end bonus) under the version the purchase counted in."""
        version = self.catalog.in_force(program_id, self.purchase.occurred_at)
        rule = None if version is None else version.program.rule(counter.rsplit(":", 1)[0])
        return rule is not None and (isinstance(rule, PeriodicRebate)
                                     or rule.period_end_award is not None)

    def _lapsed_unclaimed(self, entry_id: int) -> int:
        """Points of a lot that expired and that no earlier refund has accounted for."""
        expired = self.conn.execute(
            select(func.coalesce(func.sum(_ledger.c.points), 0))
            .where(_ledger.c.kind == "expire", _ledger.c.ref == f"expire:{entry_id}")
        ).scalar_one()
        if not expired:
            return 0
        earlier = self.conn.execute(
            select(_ledger.c.reason).where(_ledger.c.kind == "refund",
                                           _ledger.c.ref.like(f"refund:%:{entry_id}"))
        ).scalars().all()
        claimed = sum(int(reason.get("lapsed", 0)) for reason in earlier)
        return max(0, -int(expired) - claimed)

    def _reason(self, entry: Any, taken: list[ledger.Taken], shortfall: int,
                lapsed: int) -> dict[str, Any]:
        return {
            "refund_id": self.event.refund_id, "store_id": self.event.store_id,
            "purchase_id": self.purchase.id, "earned_entry": entry.id,
            "refunded_minor": self.outcome.refunded_minor,
            "total_minor": self.purchase.total_minor,
            "from_lots": {str(t.entry_id): t.points for t in taken},
            **({"shortfall": shortfall} if shortfall else {}),
            **({"lapsed": lapsed} if lapsed else {}),
        }

    def progress(self) -> None:
        """Reverse the refund's share of the purchase's counters (stamps with their cards)."""
        conn = self.conn
        full = self.shares.full
        changes: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        stamps: list[tuple[str, str, str, int]] = []
        for program_id, counter, period, delta in conn.execute(
            select(_journal.c.program_id, _journal.c.counter, _journal.c.period,
                   _journal.c.delta).where(_journal.c.purchase_id == self.purchase.id)
        ):
            version = self.catalog.in_force(program_id, self.purchase.occurred_at)
            if counter.endswith(_COUNTS):
                back = delta if full else 0
            elif version is None:  # (a program always has the version it counted under)
                continue
            elif counter.startswith(QUANTITY_COUNTER):
                # A tier's quantity (nights): the refunded lines of its selection.
                ladder = version.program.tiers
                measure = None if ladder is None else next(
                    (m for m in ladder.measures if m.counter == counter), None)
                back = 0 if measure is None else self.shares.back_selected(
                    delta, version.program, counter, measure.selects)
            else:
                rule_id = counter.rsplit(":", 1)[0]
                back = self.shares.back(delta, version.program,
                                        None if rule_id == "*" else rule_id)
            if back == 0:
                continue
            if counter.endswith(":stamps"):
                stamps.append((program_id, counter, period, back))
            else:
                changes[(program_id, counter, period)] -= back
        for program_id, counter, period, back in stamps:
            self._stamps(program_id, counter, period, back, changes)
        rows = [(self.member_id, p, c, period, d)
                for (p, c, period), d in sorted(changes.items()) if d]
        insert_rows(
            conn, _counters, ("member_id", "program_id", "counter", "period", "value"), rows,
            on_conflict=["member_id", "program_id", "counter", "period"],
            update={"value": "progress_counters.value + excluded.value"},
        )
        self._period_rewards({k: d for k, d in changes.items() if d < 0})

    def _period_rewards(self, lowered: dict[tuple[str, str, str], int]) -> None:
        """Rebates and period-end bonuses already issued for the periods the return
        lowered take their share back (services/rebates.py, services/period_bonuses.py)."""
        lowered = {key: delta for key, delta in lowered.items() if self._pays_later(*key[:2])}
        if not lowered:
            return  # the usual case: no rebate or period-end bonus counted this purchase
        bonuses = take_back_bonuses(self.conn, self.catalog, self.member_id, self.refund_pk,
                                    lowered, self.event.occurred_at, self.now,
                                    refund_id=self.event.refund_id,
                                    store_id=self.event.store_id)
        for program_id, points in bonuses.points.items():
            self.outcome.points[program_id] = self.outcome.points.get(program_id, 0) + points
        for program_id, owed in bonuses.debts.items():
            self.outcome.debts[program_id] = self.outcome.debts.get(program_id, 0) + owed
        rebates = settle_rebate_refund(self.conn, self.catalog, self.member_id,
                                       self.refund_pk, lowered, self.now)
        self.outcome.vouchers_voided.extend(rebates.voided)
        self.outcome.vouchers_reissued.extend(rebates.reissued)

    def _stamps(self, program_id: str, counter: str, period: str, back: int,
                changes: defaultdict[tuple[str, str, str], int]) -> None:
        """Take back stamps: void the cards this purchase completed if still unused (their
        stamps return), then take from its own day, later days, and finally owe them."""
        conn = self.conn
        rule_id = counter.rsplit(":", 1)[0]
        label = f"{program_id}/{rule_id}"
        self.outcome.stamps[label] = self.outcome.stamps.get(label, 0) + back
        held = {
            row.period: row.value for row in conn.execute(
                select(_counters.c.period, _counters.c.value).where(
                    _counters.c.member_id == self.member_id,
                    _counters.c.program_id == program_id, _counters.c.counter == counter))
        }
        for key, value in list(changes.items()):
            if key[0] == program_id and key[1] == counter:
                held[key[2]] = held.get(key[2], 0) + value
        if back < 0:  # a debt the purchase repaid comes back
            changes[(program_id, counter, period)] -= back
            return
        for code, consumed in conn.execute(
            select(_vouchers.c.code, _vouchers.c.consumed).where(
                _vouchers.c.purchase_id == self.purchase.id, _vouchers.c.rule_id == rule_id,
                _vouchers.c.program_id == program_id, _vouchers.c.status == "issued")
            .order_by(_vouchers.c.code)
        ):
            conn.execute(_vouchers.update().where(_vouchers.c.code == code).values(
                status="void", changed_at=self.now))
            self.outcome.vouchers_voided.append(code)
            for day, stamps in consumed.items():
                changes[(program_id, counter, day)] += stamps
                held[day] = held.get(day, 0) + stamps
        left = back
        order = [period, *sorted((p for p in held if p not in (period, "debt")), reverse=True)]
        for day in order:
            take = min(left, max(0, held.get(day, 0)))
            if take:
                changes[(program_id, counter, day)] -= take
                held[day] -= take
                left -= take
        if left:
            changes[(program_id, counter, "debt")] -= left
        elif self.outcome.vouchers_voided:
            self._complete_cards(program_id, rule_id, counter, held, changes)

    def _complete_cards(self, program_id: str, rule_id: str, counter: str,
                        held: dict[str, int],
                        changes: defaultdict[tuple[str, str, str], int]) -> None:
        """A voided card's stamps may still fill a card without this refund's share:
        issue it again at once rather than at the member's next stamp."""
        version = self.catalog.in_force(program_id, self.purchase.occurred_at)
        rule = None if version is None else next(
            (r for r in version.program.rules_of(StampCard) if r.rule_id == rule_id), None)
        if version is None or rule is None:
            return
        today = local_day(version.program, self.event.occurred_at)
        progress = {(counter, day): value for day, value in held.items()}
        reward = version.program.rewards[rule.reward_id]
        conv = self.convert
        for number, used in enumerate(rule.fill_cards(progress, today), start=1):
            for day, take in used:
                changes[(program_id, counter, day)] -= take
            code = f"{program_id}-{rule_id}-{self.purchase.id}-R{self.refund_pk}-{number}"
            insert_rows(
                self.conn, _vouchers, VOUCHER_COLUMNS,
                [voucher_row(code, self.member_id, program_id, version.id, reward,
                             "stamp_card", self.purchase.id, rule_id,
                             Converters.json(dict(used)), conv.when(self.event.occurred_at),
                             conv.when(self.event.occurred_at
                                       + timedelta(days=reward.valid_days)),
                             conv.when(self.now))],
            )
            self.outcome.vouchers_reissued.append(code)


def _check_items(conn: Connection, purchase_id: int, event: RefundEvent, exponent: int,
                 currency: str) -> tuple[tuple[str, int], ...]:
    """The refund's items as (sku, amount in minor units), once they are known to be
    within what was bought (over all refunds of the purchase)."""
    bought: defaultdict[str, int] = defaultdict(int)
    for sku, quantity in conn.execute(
        select(_items.c.sku, _items.c.quantity_milli).where(_items.c.purchase_id == purchase_id)
    ):
        bought[sku] += quantity
    returned: defaultdict[str, int] = defaultdict(int)
    for (items,) in conn.execute(select(_refunds.c["items"])
                                 .where(_refunds.c.purchase_id == purchase_id)):
        for line in (items or {}).get("lines") or ():
            returned[line["sku"]] += line["quantity_milli"]
    listed: list[tuple[str, int]] = []
    for index, item in enumerate(event.items or ()):
        try:
            listed.append((item.sku, to_minor(item.amount, exponent, f"items[{index}].amount",
                                              currency)))
        except MoneyError as exc:
            raise RefundRejectedError(str(exc)) from None
        if item.sku not in bought:
            raise RefundRejectedError(f"items[{index}]: SKU {item.sku!r} is not in the purchase")
        returned[item.sku] += int(item.quantity * 1000)
        if returned[item.sku] > bought[item.sku]:
            raise RefundRejectedError(
                f"items[{index}]: refunds of SKU {item.sku!r} come to "
                f"{returned[item.sku] / 1000:g}, more than the {bought[item.sku] / 1000:g} "
                "bought")
    return tuple(listed)


def _listed(items: Any) -> tuple[tuple[str, int], ...] | None:
    """The (sku, amount) items an earlier refund listed, or None if it listed none."""
    lines = (items or {}).get("lines")
    if lines is None:
        return None
    return tuple((line["sku"], int(line.get("amount_minor", 0))) for line in lines)


def _stored_refund(conn: Connection, event: RefundEvent) -> Any:
    return conn.execute(
        select(_refunds.c.body_hash, _refunds.c.result).where(
            _refunds.c.store_id == event.store_id, _refunds.c.refund_id == event.refund_id)
    ).first()


def _replayed(event: RefundEvent, stored: Any, body_hash: str) -> RefundOutcome:
    if stored.body_hash != body_hash:
        raise RefundConflictError(event.store_id, event.refund_id)
    outcome = RefundOutcome(**stored.result)
    outcome.replayed = True
    return outcome
