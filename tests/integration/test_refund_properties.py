"""Property: a purchase refunded in full, in one part or several, leaves the member exactly as
before it (balances, pending points, stamps, visit/spend/threshold/cap counters, vouchers,
debts), and the ledger always sums to the balances.

The programs: the two shipped examples plus one with caps, a best-of group, a first purchase
in a category and a CEL condition, so that every kind of progress is exercised.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from loyalty_engine.services.points import activate_pending
from loyalty_engine.store import tables
from loyalty_engine.store.database import read_transaction

from .walk import (
    COFFEE,
    GROCERY,
    Item,
    apply_files,
    apply_text,
    assert_ledger_exact,
    at,
    buy,
    refund,
    state,
    total_of,
)

EXTRAS = """\
program: corner-shop
name: Corner Shop
currency: EUR
timezone: Europe/Amsterdam
enrolment: open
stores: ["CS-*"]
points: {pending_days: 3, refund_shortfall: debt}
caps: {per_day: 60}
rules:
  - id: per-euro
    kind: points_per_spend
    points_per_unit: 2
    caps: {per_week: 150}
  - id: morning
    kind: fixed_bonus
    points: 5
    group: bonus
    when: "local.hour < 11"
  - id: big-basket
    kind: fixed_bonus
    points: 8
    group: bonus
    when: {min_spend: "20.00"}
  - id: first-bakery
    kind: first_in_category
    category: bakery
    points: 25
  - id: third-visit
    kind: nth_visit
    visit: 3
    period: week
    points: 10
"""

CATALOGUE: list[tuple[str, str, str]] = [
    ("FLAT-WHITE", "coffee", "3.60"), ("ESPRESSO", "coffee", "2.40"),
    ("BEANS-1KG", "coffee-beans", "12.50"), ("CROISSANT", "bakery", "1.95"),
    ("GIFT-CARD", "gift-cards", "25.00"), ("SHOP", "groceries", "47.85"),
]
STORES = ["AMS-01", "FM-01", "CS-01"]

_serial = itertools.count()


@st.composite
def baskets(draw: st.DrawFn) -> tuple[str, list[Item]]:
    store = draw(st.sampled_from(STORES))
    lines = draw(st.lists(st.tuples(st.sampled_from(CATALOGUE), st.integers(1, 9)),
                          min_size=1, max_size=3))
    return store, [(sku, cat, str(q), price) for (sku, cat, price), q in lines]


@st.composite
def histories(draw: st.DrawFn) -> dict[str, Any]:
    past = draw(st.lists(st.tuples(baskets(), st.integers(0, 200), st.integers(7, 20)),
                         max_size=6))
    last_basket = draw(baskets())
    gap = draw(st.integers(0, 30))
    activate = draw(st.booleans())
    parts = draw(st.integers(1, 3))
    cuts = sorted(draw(st.lists(st.floats(0.05, 0.95), min_size=parts - 1,
                                max_size=parts - 1)))
    return {"past": past, "last": last_basket, "gap": gap, "activate": activate,
            "cuts": cuts}


def _owed(engine: Engine, member: str) -> dict[str, int]:
    debts = tables.point_debts
    with read_transaction(engine) as conn:
        return {p: int(o) for p, o in conn.execute(
            select(debts.c.program_id, func.sum(debts.c.outstanding))
            .where(debts.c.member_id == member).group_by(debts.c.program_id))}


def _snapshot(engine: Engine, member: str) -> dict[str, Any]:
    seen = state(engine, member)
    return {
        # A first purchase enrols the member, which leaves a zero balance row behind.
        "balances": {p: b for p, b in seen["balances"].items() if b != (0, 0)},
        "counters": seen["counters"],
        # Vouchers the purchase issued are voided by the refund: only live ones matter.
        "vouchers": [v for v in seen["vouchers"] if v[1] != "void"],
        "debts": {p: o for p, o in _owed(engine, member).items() if o},
    }


@settings(max_examples=60, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(story=histories())
def test_a_full_refund_leaves_the_member_as_before(engine: Engine, tmp_path_factory: Any,
                                                   story: dict[str, Any]) -> None:
    n = next(_serial)
    if n == 0 or not _applied(engine):
        apply_files(engine, COFFEE, GROCERY)
        apply_text(engine, tmp_path_factory.mktemp("programs"), EXTRAS)
    member = f"P{n}"
    when = at("2026-01-05T09:00:00+01:00")
    for index, ((store, items), days, hour) in enumerate(story["past"]):
        when = when + timedelta(days=days // 10, hours=hour)
        buy(engine, f"{member}-T{index}", when.isoformat(), items, member=member, store=store)
    if story["activate"]:
        activate_pending(engine, when + timedelta(days=15))
    when = when + timedelta(days=story["gap"], minutes=1)
    before = _snapshot(engine, member)

    store, items = story["last"]
    buy(engine, f"{member}-LAST", when.isoformat(), items, member=member, store=store)
    total = int(total_of(items).replace(".", ""))
    bounds = [0, *sorted({max(1, min(total - 1, int(total * c))) for c in story["cuts"]}),
              total]
    for part, (low, high) in enumerate(itertools.pairwise(bounds)):
        if high > low:
            amount = f"{(high - low) // 100}.{(high - low) % 100:02d}"
            refund(engine, f"{member}-R{part}", f"{member}-LAST",
                   (when + timedelta(hours=part + 1)).isoformat(), amount, store=store)

    assert _snapshot(engine, member) == before
    assert_ledger_exact(engine)


def _applied(engine: Engine) -> bool:
    with read_transaction(engine) as conn:
        return bool(conn.execute(select(func.count()).select_from(tables.programs))
                    .scalar_one() == 3)
