"""Property: arbitrary sequences of ledger operations keep the books exact, on both databases.

Hypothesis draws sequences of earn (spendable or held pending, with or without expiry),
operators' credits and debits, activate, expire, spend, restore (a spend reversed),
refund shortfalls that leave a debt (shown in the balance or not), and earnings that repay
them. After every operation, for the example's member:

- spendable + pending == sum of ledger entries == sum of lot remainders - debts the
  balance shows; pending == what pending lots hold;
- no lot below zero or above its points, no debt below zero;
- what the member is shown as of the operation's instant (ledger.shown_at) is what their
  live lots hold, whether or not the expire step has run;
and each spend took its points first-in-first-out (oldest spendable lot first), each
refusal was right, and every debt was repaid at most once per point, oldest first.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, func, select

from loyalty_engine import ledger
from loyalty_engine.services.programs import apply_program_files, load_catalog
from loyalty_engine.store import tables
from loyalty_engine.store.database import read_transaction, write_transaction
from tests.integration.helpers import BEAN_THERE, NOW

PROGRAM = "bean-there"
START = datetime(2030, 1, 1, tzinfo=UTC)
_examples = itertools.count()
_lots, _ledger, _debts = tables.point_lots, tables.ledger_entries, tables.point_debts
_balances = tables.balances


class Refused(Exception):
    """A spend the ledger refused; carries what it said was available."""

    def __init__(self, available: int) -> None:
        super().__init__(available)
        self.available = available


@dataclass(frozen=True)
class Earn:
    points: int
    pending_days: int | None  # None: spendable at once
    expiry_days: int | None  # None: never expires
    kind: str = "earn"  # "adjust": an operator's credit
    copies: int = 1  # earnings of these points in one call (a batch)


@dataclass(frozen=True)
class Spend:
    points: int
    kind: str = "redeem"  # "adjust": an operator's debit


@dataclass(frozen=True)
class Restore:
    which: int  # index among the spends made so far


@dataclass(frozen=True)
class Activate:
    pass


@dataclass(frozen=True)
class Expire:
    pass


@dataclass(frozen=True)
class Shortfall:
    points: int  # a refund takes these back; what the lots lack is owed
    in_balance: bool  # negative_balance (the balance shows the debt) or not


earnings = st.builds(Earn, st.integers(1, 100), st.one_of(st.none(), st.integers(1, 10)),
                     st.one_of(st.none(), st.integers(3, 30)), st.sampled_from(["earn", "adjust"]),
                     st.integers(1, 3))
operations = st.tuples(
    st.integers(0, 6),  # days that pass before the operation
    st.one_of(
        earnings, earnings,  # drawn more often: the others need points to work on
        st.builds(Spend, st.integers(1, 60), st.sampled_from(["redeem", "adjust"])),
        st.builds(Restore, st.integers(0, 3)),
        st.just(Activate()), st.just(Expire()),
        st.builds(Shortfall, st.integers(1, 120), st.booleans()),
    ),
)


def _setup(engine: Engine, member: str) -> tuple[int, int]:
    """The member, a purchase and a refund row for debts to name; the program version."""
    with write_transaction(engine) as conn:
        version = load_catalog(conn).in_force(PROGRAM, START)
        assert version is not None
        conn.execute(tables.members.insert().values(member_id=member, created_at=START,
                                                    attributes={}))
        purchase = conn.execute(tables.purchases.insert().values(
            store_id="AMS-01", transaction_id=f"{member}-T", member_id=member,
            occurred_at=START, currency="EUR", total_minor=100, body_hash="-",
            recorded_at=START).returning(tables.purchases.c.id)).scalar_one()
        refund = conn.execute(tables.refunds.insert().values(
            store_id="AMS-01", refund_id=f"{member}-R", purchase_id=purchase,
            member_id=member, occurred_at=START, amount_minor=100, items={}, body_hash="-",
            recorded_at=START, result={}).returning(tables.refunds.c.id)).scalar_one()
        ledger.change_balances(conn, {(member, PROGRAM): (0, 0)}, START)
    return version.id, refund


def _lots_of(conn: Connection, member: str) -> list[Any]:
    return list(conn.execute(select(_lots).where(_lots.c.member_id == member)
                             .order_by(_lots.c.earned_at, _lots.c.entry_id)).all())


def _expected_fifo(lots: list[Any], points: int, at: datetime) -> dict[str, int] | None:
    """What a spend at `at` (recorded at `at`) must take, oldest spendable lot first; None
    when too few are spendable (the balance is checked by the caller)."""
    eligible = [lot for lot in lots if lot.remaining > 0 and lot.earned_at <= at
                and (lot.expires_at is None or lot.expires_at > at)
                and (lot.pending_until is None
                     or (lot.activated_at is not None and lot.activated_at <= at))]
    taken: dict[str, int] = {}
    left = points
    for lot in eligible:
        if left == 0:
            break
        take = min(left, lot.remaining)
        taken[str(lot.entry_id)] = take
        left -= take
    return None if left else taken


def _check_books(engine: Engine, member: str, at: datetime) -> None:
    with read_transaction(engine) as conn:
        total = int(conn.execute(select(func.coalesce(func.sum(_ledger.c.points), 0))
                                 .where(_ledger.c.member_id == member)).scalar_one())
        lots = _lots_of(conn, member)
        debts = conn.execute(select(_debts).where(_debts.c.member_id == member)).all()
        balance = conn.execute(select(_balances.c.points, _balances.c.pending).where(
            _balances.c.member_id == member, _balances.c.program_id == PROGRAM)).one()
    shown_debt = sum(d.outstanding for d in debts if d.in_balance)
    pending_lots = sum(lot.remaining for lot in lots
                       if lot.pending_until is not None and lot.activated_at is None)
    remaining = sum(lot.remaining for lot in lots)
    assert balance.points + balance.pending == total == remaining - shown_debt
    assert balance.pending == pending_lots
    assert all(0 <= lot.remaining <= lot.points for lot in lots)
    assert all(0 <= d.outstanding <= d.points for d in debts)
    # Shown as of `at`: exactly the live lots (unexpired by then), less debts shown.
    live = [lot for lot in lots if lot.expires_at is None or lot.expires_at > at]
    points, pending = ledger.shown_at((balance.points, balance.pending), lots, at)
    assert pending == sum(lot.remaining for lot in live
                          if lot.pending_until is not None and lot.activated_at is None)
    assert points == sum(lot.remaining for lot in live
                         if lot.pending_until is None or lot.activated_at is not None
                         ) - shown_debt


def _outstanding(engine: Engine, member: str) -> dict[int, int]:
    """Per debt of the member: what is still owed, as the debt rows say."""
    with read_transaction(engine) as conn:
        return {d.id: d.outstanding for d in conn.execute(
            select(_debts).where(_debts.c.member_id == member))}


@settings(max_examples=40, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(opening=st.lists(st.builds(Earn, st.integers(5, 30), st.none(),
                                  st.one_of(st.none(), st.integers(3, 30))),
                        min_size=1, max_size=4),
       later=st.lists(operations, min_size=2, max_size=12))
def test_arbitrary_ledger_operations_keep_the_books_exact(engine: Engine, opening, later) -> None:
    steps = [(0, op) for op in opening] + later
    apply_program_files(engine, [BEAN_THERE], NOW)  # a no-op after the first example
    number = next(_examples)
    member = f"L{number}"
    version_id, refund_pk = _setup(engine, member)
    clock = START
    spends: list[tuple[datetime, dict[str, int], str]] = []
    restored: set[int] = set()
    owed: dict[int, int] = {}  # debt id -> outstanding, as the ledger must keep it
    first: dict[int, int] = {}  # debt id -> what it owed when recorded
    for n, (days, op) in enumerate(steps):
        clock += timedelta(days=days, minutes=1)
        with write_transaction(engine) as conn:
            if isinstance(op, Earn):
                pending = None if op.pending_days is None else clock + timedelta(
                    days=op.pending_days)
                expires = None if op.expiry_days is None else clock + timedelta(
                    days=op.expiry_days)
                ledger.earn(conn, [ledger.Earning(
                    member, PROGRAM, version_id, op.points, clock, expires, {"op": n},
                    pending_until=pending if op.kind == "earn" else None, kind=op.kind,
                    ref=f"{member}:{n}:{copy}") for copy in range(op.copies)], clock)
                # Debts repaid oldest first, never more than owed, earning after earning.
                for _ in range(op.copies):
                    left = op.points
                    for debt_id in sorted(owed):
                        take = min(left, owed[debt_id])
                        if take:
                            event("a debt repaid")
                        owed[debt_id] -= take
                        left -= take
            elif isinstance(op, Spend):
                lots = _lots_of(conn, member)
                balance = int(conn.execute(select(_balances.c.points).where(
                    _balances.c.member_id == member)).scalar_one())
                expected = _expected_fifo(lots, op.points, clock)
                fits = expected is not None and op.points <= balance
                try:
                    consumed = ledger.spend(conn, ledger.Spend(
                        member, PROGRAM, version_id, op.kind, op.points, clock, {"op": n},
                        f"{member}:{n}"), clock, Refused)
                except Refused as refused:
                    event("spend refused")
                    assert not fits, (op, lots, balance)
                    assert refused.available < op.points
                else:
                    assert fits, (op, lots, balance)
                    assert consumed == expected  # first-in-first-out
                    event(f"spent from {len(consumed)} lots")
                    spends.append((clock, consumed, f"{member}:{n}"))
            elif isinstance(op, Restore):
                if op.which < len(spends) and op.which not in restored:
                    restored.add(op.which)
                    _, consumed, ref = spends[op.which]
                    lots = {lot.entry_id: lot for lot in _lots_of(conn, member)}
                    back = ledger.restore(conn, ledger.Restore(
                        member, PROGRAM, version_id, "unredeem",
                        {int(k): v for k, v in consumed.items()}, clock, f"un{ref}",
                        lambda r: {"restored": r}), clock)
                    # Lots that expired by now keep their points lapsed.
                    assert back == sum(
                        v for k, v in consumed.items()
                        if lots[int(k)].expires_at is None or lots[int(k)].expires_at > clock)
            elif isinstance(op, Activate):
                ledger.activate(conn, clock, PROGRAM)
            elif isinstance(op, Expire):
                ledger.expire(conn, clock, PROGRAM)
            else:
                event("a debt recorded" if op.points > 0 else "")
                _shortfall(conn, member, version_id, refund_pk, op, clock, n, owed)
        _check_books(engine, member, clock)
        first.update({debt_id: left for debt_id, left in owed.items() if debt_id not in first})
        assert _outstanding(engine, member) == owed
    # Debts the balance did not show are taken by `debt` entries: one per repayment, and
    # together exactly what was repaid (never twice).
    with read_transaction(engine) as conn:
        for debt in conn.execute(select(_debts).where(_debts.c.member_id == member,
                                                      _debts.c.in_balance.is_(False))):
            taken = conn.execute(select(_ledger.c.ref, _ledger.c.points).where(
                _ledger.c.kind == "debt", _ledger.c.ref.like(f"debt:{debt.id}:%"))).all()
            assert -sum(p for _, p in taken) == first[debt.id] - debt.outstanding
            assert len({ref for ref, _ in taken}) == len(taken)


def _shortfall(conn: Connection, member: str, version_id: int, refund_pk: int, op: Shortfall,
               clock: datetime, n: int, owed: dict[int, int]) -> None:
    """A refund that takes points back from any lot (pending first) and owes the rest, as
    services/refunds.py does under each refund_shortfall policy."""
    taken = ledger.take_points(conn, member, PROGRAM, op.points, clock)
    took = sum(t.points for t in taken)
    short = op.points - took
    booked = op.points if op.in_balance else took
    if booked:
        ledger.append(conn, [ledger.Entry(member, PROGRAM, version_id, "refund", -booked,
                                          clock, {"op": n}, f"refund:{refund_pk}:{n}")],
                      clock)
    spendable = -sum(t.points for t in taken if not t.pending)
    pending = -sum(t.points for t in taken if t.pending)
    if short and op.in_balance:
        spendable -= short
    ledger.change_balances(conn, {(member, PROGRAM): (spendable, pending)}, clock)
    if short:
        ledger.record_debts(conn, [ledger.NewDebt(member, PROGRAM, refund_pk, op.points, short,
                                                  op.in_balance)], clock)
        debt_id = int(conn.execute(select(func.max(_debts.c.id))).scalar_one())
        owed[debt_id] = short
