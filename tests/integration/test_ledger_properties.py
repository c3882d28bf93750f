"""Property: random batches of purchases, replays and conflicting re-posts keep the books exact.

Whatever the mix of batch writes (PurchaseWriter) and single posts (record_purchase), every
purchase is stored once, earns exactly what the program says, and the ledger, the cached
balances and the lots' remaining points agree. The database is shared by the examples; each
example uses its own transaction and member ids.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from loyalty_engine.domain.errors import PurchaseConflictError
from loyalty_engine.domain.events import PurchaseEvent
from loyalty_engine.ledger.check import check_balances
from loyalty_engine.records.purchase_writer import PurchaseWriter
from loyalty_engine.services.programs import apply_program_files, load_catalog
from loyalty_engine.services.purchases import record_purchase
from loyalty_engine.store import tables
from loyalty_engine.store.database import read_transaction, write_transaction
from tests.integration.helpers import BEAN_THERE, NOW, balance, ledger_sums

# sku, category, unit price in cents; bean-there excludes gift cards, tobacco and the deposit.
CATALOGUE = [
    ("ESPRESSO", "coffee", 240), ("FLAT-WHITE", "coffee", 360), ("CROISSANT", "pastry", 220),
    ("BEANS-250G", "coffee-beans", 895), ("DEPOSIT-BOTTLE", "drinks", 15),
    ("GIFT-CARD-25", "gift-cards", 2500), ("CIGARS", "tobacco", 1250), ("WATER", "drinks", 99),
]
QUANTITIES = ["1", "2", "3", "0.5", "1.25"]
START = datetime(2026, 1, 1, tzinfo=UTC)

_examples = itertools.count()


@dataclass(frozen=True)
class Spec:
    member: int | None
    items: tuple[tuple[int, str], ...]  # (catalogue index, quantity)
    minutes: int


def _amount(quantity: str, cents: int) -> int:
    return int((Decimal(quantity) * cents).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _expected_points(spec: Spec) -> int:
    """bean-there, worked out by hand: 1 point per euro (floor), beans x2, from 2 euros up."""
    if spec.member is None:
        return 0
    eligible = weighted = 0
    for index, quantity in spec.items:
        sku, category, cents = CATALOGUE[index]
        if category in ("gift-cards", "tobacco") or sku == "DEPOSIT-BOTTLE":
            continue
        amount = _amount(quantity, cents)
        eligible += amount
        weighted += amount * (2 if category == "coffee-beans" else 1)
    return weighted // 100 if eligible >= 200 else 0


def _event(prefix: str, number: int, spec: Spec, bump: bool = False) -> PurchaseEvent:
    """The purchase event; bump changes its body (one more of the first item)."""
    items: list[dict[str, Any]] = []
    total = 0
    for position, (index, quantity) in enumerate(spec.items):
        sku, category, cents = CATALOGUE[index]
        if bump and position == 0:
            quantity = str(Decimal(quantity) + 1)
        items.append({"sku": sku, "category": category, "quantity": quantity,
                      "unit_price": f"{cents // 100}.{cents % 100:02d}"})
        total += _amount(quantity, cents)
    return PurchaseEvent.model_validate({
        "transaction_id": f"{prefix}-T{number}",
        "store_id": "AMS-01",
        "member_id": None if spec.member is None else f"{prefix}-M{spec.member}",
        "occurred_at": (START + timedelta(minutes=spec.minutes)).isoformat(),
        "currency": "EUR",
        "total": f"{total // 100}.{total % 100:02d}",
        "items": items,
    })


specs = st.builds(
    Spec,
    member=st.one_of(st.none(), st.integers(0, 2)),
    items=st.lists(st.tuples(st.integers(0, len(CATALOGUE) - 1), st.sampled_from(QUANTITIES)),
                   min_size=1, max_size=4).map(tuple),
    minutes=st.integers(0, 500_000),
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Spec], list[tuple[str, list[int]]], list[int]]:
    """Purchases; the posts (each purchase once plus replays) cut into chunks; conflicts."""
    purchases = draw(st.lists(specs, min_size=1, max_size=8))
    indices = st.integers(0, len(purchases) - 1)
    posts = draw(st.permutations(list(range(len(purchases))) + draw(st.lists(indices,
                                                                             max_size=6))))
    chunks: list[tuple[str, list[int]]] = []
    rest = list(posts)
    while rest:
        size = draw(st.integers(1, len(rest)))
        chunks.append((draw(st.sampled_from(["writer", "record"])), rest[:size]))
        rest = rest[size:]
    conflicts = draw(st.lists(indices, max_size=3, unique=True))
    return purchases, chunks, conflicts


@settings(max_examples=15, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(scenario=scenarios())
def test_random_batches_with_replays_keep_the_books_exact(engine: Engine, scenario) -> None:
    purchases, chunks, conflicts = scenario
    apply_program_files(engine, [BEAN_THERE], NOW)  # a no-op after the first example
    prefix = f"X{next(_examples)}"
    events = [_event(prefix, n, spec) for n, spec in enumerate(purchases)]
    seen: set[int] = set()
    first_outcome: dict[int, Any] = {}

    for via, chunk in chunks:
        if via == "record":
            for n in chunk:
                outcome = record_purchase(engine, events[n], NOW)
                assert outcome.replayed == (n in seen)
                if n in first_outcome:
                    assert outcome.awards == first_outcome[n].awards
                else:
                    first_outcome[n] = outcome
                assert outcome.points == _expected_points(purchases[n])
                seen.add(n)
        else:
            with write_transaction(engine) as conn:
                writer = PurchaseWriter(conn, load_catalog(conn), NOW)
                result = writer.write([(i, events[n].to_purchase())
                                       for i, n in enumerate(chunk)])
            assert result.rejections == []
            by_ref = dict(result.outcomes)
            assert sorted(by_ref) == list(range(len(chunk)))
            for i, n in enumerate(chunk):
                assert by_ref[i].replayed == (n in seen)
                if not by_ref[i].replayed:
                    assert by_ref[i].points == _expected_points(purchases[n])
                    first_outcome[n] = by_ref[i]
                seen.add(n)

    before = ledger_sums(engine)
    for n in conflicts:
        changed = _event(prefix, n, purchases[n], bump=True)
        with pytest.raises(PurchaseConflictError):
            record_purchase(engine, changed, NOW)
        with write_transaction(engine) as conn:
            result = PurchaseWriter(conn, load_catalog(conn), NOW).write(
                [(0, changed.to_purchase())])
        assert [r.transaction_id for r in result.rejections] == [f"{prefix}-T{n}"]
    assert ledger_sums(engine) == before

    # Each purchase stored once, and the books agree with each other and with the program.
    purchases_t = tables.purchases
    with read_transaction(engine) as conn:
        stored = dict(conn.execute(
            select(purchases_t.c.transaction_id, func.count())
            .where(purchases_t.c.transaction_id.like(f"{prefix}-T%"))
            .group_by(purchases_t.c.transaction_id)
        ).all())
    assert stored == {f"{prefix}-T{n}": 1 for n in range(len(purchases))}
    for member in {s.member for s in purchases if s.member is not None}:
        expected = sum(_expected_points(s) for s in purchases if s.member == member)
        assert balance(engine, f"{prefix}-M{member}", "bean-there") == expected
    assert all(led == bal == lots for led, bal, lots in ledger_sums(engine).values())
    assert check_balances(engine).mismatches == []
