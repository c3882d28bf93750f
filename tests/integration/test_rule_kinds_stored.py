"""Every rule kind through the real write path, on SQLite and PostgreSQL: each case is a
program, purchases posted one by one, and the points each earns, with the counters and
vouchers left behind. (tests/unit/test_rule_kinds.py covers the pure engine in depth.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from loyalty_engine.domain.errors import PurchaseRejectedError
from loyalty_engine.services.importing import import_purchases

from .helpers import write_jsonl
from .walk import RECORDED_AT, apply_text, assert_ledger_exact, at, buy, state, total_of

HEAD = """\
program: kinds
name: Every kind
currency: EUR
timezone: Europe/Amsterdam
enrolment: open
exclude: {categories: [tobacco]}
rewards:
  - {id: free-coffee, name: Free coffee, kind: free_item, category: coffee}
rules:
"""
CUP = ("CUP", "coffee", "1", "3.00")
SHOP = ("SHOP", "groceries", "1", "50.00")
SMOKES = ("SMOKES", "tobacco", "1", "9.00")

# (rules YAML, [(date, items)], points per purchase, counters expected (subset), vouchers)
CASES: dict[str, tuple[str, list[tuple[str, list[Any]]], list[int], dict[str, int], int]] = {
    "points per spend with a weekend multiplier": (
        """\
  - id: spend
    kind: points_per_spend
    points_per_unit: 1
    multipliers: [{id: weekend, when: {days: [saturday, sunday]}, factor: 3}]
""",
        [("2026-03-06", [SHOP]), ("2026-03-07", [SHOP]), ("2026-03-07", [SMOKES])],
        [50, 150, 0], {}, 0),
    "points per spend in a promotion window at one store": (
        """\
  - id: spend
    kind: points_per_spend
    points_per_unit: 1
    multipliers:
      - {id: launch, when: {stores: [TS-01], starts: 2026-03-10, ends: 2026-03-11}, factor: 2}
""",
        [("2026-03-09", [SHOP]), ("2026-03-10", [SHOP]), ("2026-03-11", [SHOP]),
         ("2026-03-12", [SHOP])],
        [50, 100, 100, 50], {}, 0),
    "fixed bonus with a CEL condition": (
        """\
  - id: big-basket
    kind: fixed_bonus
    points: 25
    when: "purchase.eligible_spend_minor >= 4000 && local.hour < 13"
""",
        [("2026-03-02T09:00:00+01:00", [SHOP]), ("2026-03-02T15:00:00+01:00", [SHOP]),
         ("2026-03-03T09:00:00+01:00", [CUP])],
        [25, 0, 0], {}, 0),
    "fifth visit in a month, once, and again next month": (
        """\
  - id: fifth
    kind: nth_visit
    visit: 5
    period: month
    points: 100
""",
        [(f"2026-03-{d:02d}", [CUP]) for d in range(1, 8)] + [("2026-04-01", [CUP])],
        [0, 0, 0, 0, 100, 0, 0, 0], {"fifth:visits/2026-03": 7, "fifth:visits/2026-04": 1}, 0),
    "spend threshold once per quarter": (
        """\
  - id: quarter
    kind: spend_threshold
    threshold: "120.00"
    period: quarter
    points: 500
""",
        [("2026-01-10", [SHOP]), ("2026-02-10", [SHOP]), ("2026-03-10", [SHOP]),
         ("2026-03-20", [SHOP]), ("2026-04-02", [SHOP, SHOP, SHOP])],
        [0, 0, 500, 0, 500],
        {"quarter:spend/2026-Q1": 20000, "quarter:awarded/2026-Q1": 1,
         "quarter:spend/2026-Q2": 15000}, 0),
    "stamp card per item with carry-over": (
        """\
  - id: card
    kind: stamp_card
    when: {categories: [coffee]}
    stamp_per: item
    card_size: 4
    reward: free-coffee
""",
        [("2026-03-02", [("CUP", "coffee", "3", "3.00")]),
         ("2026-03-03", [("CUP", "coffee", "3", "3.00"), SHOP])],
        [0, 0], {"card:stamps/2026-03-03": 2}, 1),
    "stamp card per visit whose stamps expire": (
        """\
  - id: card
    kind: stamp_card
    stamp_per: visit
    card_size: 3
    reward: free-coffee
    stamps_expire: {after_days: 10}
""",
        [("2026-03-01", [CUP]), ("2026-03-05", [CUP]), ("2026-03-20", [CUP]),
         ("2026-03-21", [SHOP]), ("2026-03-22", [CUP])],
        [0, 0, 0, 0, 0], {"card:stamps/2026-03-01": 1, "card:stamps/2026-03-05": 1}, 1),
    "first purchase in a category": (
        """\
  - id: try-coffee
    kind: first_in_category
    category: coffee
    points: 40
""",
        [("2026-03-02", [SHOP]), ("2026-03-03", [CUP, SHOP]), ("2026-03-04", [CUP])],
        [0, 40, 0], {"try-coffee:seen/all": 1}, 0),
    "periodic rebate accrues eligible spend": (
        """\
  - id: rebate
    kind: periodic_rebate
    percent: 1
    period: year
    cap: "250.00"
""",
        [("2026-03-02", [SHOP, SMOKES]), ("2026-12-31T23:30:00+01:00", [SHOP]),
         ("2027-01-01T00:30:00+01:00", [SHOP])],
        [0, 0, 0], {"rebate:spend/2026": 10000, "rebate:spend/2027": 5000}, 0),
    "caps per rule and best-of group": (
        """\
  - id: spend
    kind: points_per_spend
    points_per_unit: 1
    caps: {per_day: 70}
  - id: morning
    kind: fixed_bonus
    points: 5
    group: bonus
    when: "local.hour < 11"
  - id: big
    kind: fixed_bonus
    points: 8
    group: bonus
    when: {min_spend: "40.00"}
""",
        [("2026-03-02T09:00:00+01:00", [SHOP]), ("2026-03-02T10:00:00+01:00", [SHOP]),
         ("2026-03-02T12:00:00+01:00", [CUP])],
        [58, 28, 0], {"spend:cap/day:2026-03-02": 70}, 0),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_rule_kind_through_the_write_path(engine: Engine, tmp_path: Path, case: str) -> None:
    rules, purchases, expected, counters, vouchers = CASES[case]
    apply_text(engine, tmp_path, HEAD + rules)
    earned = [buy(engine, f"T{n}", day, items, store="TS-01").points
              for n, (day, items) in enumerate(purchases)]
    assert earned == expected
    seen = {f"{counter}/{period}": value
            for (_, counter, period), value in state(engine)["counters"].items()}
    assert {k: seen.get(k) for k in counters} == counters
    assert len(state(engine)["vouchers"]) == vouchers
    assert_ledger_exact(engine)


FAILING = """\
  - id: city-bonus
    kind: fixed_bonus
    points: 10
    when: 'purchase.total_minor / (purchase.item_count - 1) > 100'
  - id: spend
    kind: points_per_spend
    points_per_unit: 1
"""


def test_an_expression_that_fails_rejects_that_purchase_and_names_the_rule(
    engine: Engine, tmp_path: Path
) -> None:
    apply_text(engine, tmp_path, HEAD + FAILING)
    with pytest.raises(PurchaseRejectedError, match="rule 'city-bonus' of program 'kinds'"):
        buy(engine, "T1", "2026-03-02", [SHOP], store="TS-01")
    assert state(engine)["counters"] == {} and state(engine)["balances"] == {}

    lines = [{"transaction_id": f"T{n}", "store_id": "TS-01", "member_id": "M-1",
              "occurred_at": at("2026-03-02").isoformat(), "currency": "EUR",
              "total": total_of([SHOP]),
              "items": [{"sku": "SHOP", "category": "groceries", "quantity": "1",
                         "unit_price": "50.00"}]} for n in range(2)]
    report = import_purchases(engine, write_jsonl(tmp_path / "p.jsonl", lines), RECORDED_AT)
    assert not report.committed
    assert [(e.line, "city-bonus" in e.reason) for e in report.errors] == [(1, True), (2, True)]
    assert_ledger_exact(engine)
