"""Ledger reasons as sentences: each kind of entry, worked by hand from the reason the
engine stores, and never a Python repr whatever the reason holds."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loyalty_engine.domain.ledger_reasons import describe_reason


@pytest.mark.parametrize(("kind", "reason", "currency", "expected"), [
    ("earn", {"eligible_spend_minor": 1965, "excluded_items": 0, "points_per_unit": "1",
              "rounding": "floor",
              "multipliers": {"coffee-beans": {"spend_minor": 895, "multiplier": "2"}}},
     "EUR", "1 point(s) per EUR on 19.65 EUR; x2 on coffee-beans (8.95 EUR); rounded down"),
    ("earn", {"eligible_spend_minor": 360, "excluded_items": 1, "points_per_unit": "1",
              "rounding": "half_up", "boosts": {"double-tuesday": "2"},
              "benefits": {"tier:glow": "1.25"}},
     "EUR", "1 point(s) per EUR on 3.60 EUR; 1 excluded item(s) not counted; "
            "x2 double-tuesday; x1.25 from tier glow; rounded half up"),
    ("earn", {"eligible_spend_minor": 1480, "excluded_items": 0, "points_per_unit": "2",
              "rounding": "floor", "boosts": {"double-star-week": "2"},
              "set_aside": {"breakfast-bonus": "excluded by double-star-week",
                            "web-week": "best of promotions: double-star-week is larger"}},
     "EUR", "2 point(s) per EUR on 14.80 EUR; x2 double-star-week; not breakfast-bonus "
            "(excluded by double-star-week); not web-week (best of promotions: "
            "double-star-week is larger); rounded down"),
    ("earn", {"eligible_spend_minor": 1500, "points_per_unit": "10", "rounding": "floor"},
     "JPY", "10 point(s) per JPY on 1500 JPY; rounded down"),
    ("earn", {"visit": 5, "period": "2026-03"}, "EUR", "visit 5 in 2026-03"),
    ("earn", {"period": "2026-Q1", "period_spend_minor": 12050, "threshold_minor": 10000},
     "EUR", "120.50 EUR spent in 2026-Q1, reaching 100.00 EUR"),
    ("earn", {"kind": "nth_visit", "award": "at_period_end", "rule": "r", "period": "2026-03",
              "points": 50, "visits": 6},
     "EUR", "6 visits in 2026-03, awarded at the period's end"),
    ("earn", {"category": "pastry"}, "EUR", "first purchase in pastry"),
    ("earn", {"because": {"tier": "radiant"}}, "EUR", "because tier radiant"),
    ("earn", {}, "EUR", "fixed bonus"),
    ("earn", {"eligible_spend_minor": 90000, "points_per_unit": "1", "rounding": "floor",
              "group": "welcome", "capped": {"by": "rule", "per": "month", "limit": 500,
                                             "before_cap": 900}},
     "EUR", "1 point(s) per EUR on 900.00 EUR; rounded down; best of group welcome; capped "
            "by the rule's limit of 500 per month (would have been 900)"),
    ("redeem", {"redemption_id": "RD-1", "reward": "five-euro-off",
                "from_lots": {"1": 3, "2": 8}},
     "EUR", "redemption RD-1: reward five-euro-off, taken from lot 1 (3), lot 2 (8)"),
    ("redeem", {"redemption_id": "RD-2", "reward": None,
                "from_lots": {str(i): 1 for i in range(29)}},
     "EUR", "redemption RD-2: points, taken from 29 lots, oldest first"),
    ("unredeem", {"redemption_id": "RD-1", "to_lots": {"7": 10}, "lapsed": 4},
     "EUR", "redemption RD-1 reversed: points back to lot 7 (10); 4 had expired meanwhile "
            "and stay expired"),
    ("expire", {"lot": 42, "expired_at": "2027-01-01T00:00:00+00:00"}, "EUR",
     "what remained of lot 42 expired"),
    ("refund", {"refund_id": "R-1", "store_id": "AMS-01", "purchase_id": 3, "earned_entry": 9,
                "refunded_minor": 370, "total_minor": 740, "from_lots": {"9": 3},
                "shortfall": 1},
     "EUR", "refund R-1 at AMS-01 (3.70 EUR of 7.40 EUR returned); the returned share of "
            "entry 9, taken from lot 9 (3); 1 point(s) had already been spent and are owed"),
    ("debt", {"debt_id": 4, "repaid_from_entry": 17}, "EUR",
     "repays debt 4 (points owed after a refund) from entry 17"),
    ("fee", {"charge_id": 2, "club": "warehouse", "level": "basic", "from_lots": {"5": 600}},
     "EUR", "fee charge 2 of club warehouse (level basic) paid in points, taken from lot 5 "
            "(600)"),
    ("fee_refund", {"charge_id": 2, "to_lots": {"5": 600}, "restored": 600}, "EUR",
     "fee charge 2 refunded: 600 point(s) back to lot 5 (600)"),
    ("manual", {"reason": "goodwill", "by": "ops", "amount_minor": 500}, "EUR",
     "reason goodwill, by ops, amount 5.00 EUR"),
    ("adjust", {"adjustment_id": "ADJ-7", "kind": "goodwill", "reason": "coffee spilt",
                "by": "alice"}, "EUR",
     "manual adjustment ADJ-7 (goodwill credit) by alice: coffee spilt"),
    ("adjust", {"adjustment_id": "ADJ-8", "kind": "correction", "reason": "counted twice",
                "by": "api:office", "from_lots": {"3": 5, "9": 2}}, "EUR",
     "manual adjustment ADJ-8 (correction) by api:office: counted twice; taken from lot 3 "
     "(5), lot 9 (2)"),
])
def test_each_kind_of_entry_reads_as_a_sentence(kind: str, reason: dict[str, Any],
                                                 currency: str, expected: str) -> None:
    assert describe_reason(kind, reason, currency) == expected


_words = st.text(alphabet="abcxyz019 -", max_size=8)  # no braces or quotes of their own
_values = st.recursive(
    st.none() | st.booleans() | st.integers() | _words,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(_words, inner, max_size=3),
    max_leaves=8)


@given(kind=st.sampled_from(["earn", "adjust", "something-new"]),
       reason=st.dictionaries(_words.map(lambda k: f"x_{k}"),
                              _values, max_size=5))
def test_no_reason_comes_out_as_a_python_repr(kind: str, reason: dict[str, Any]) -> None:
    # Keys the engine does not write today (a future kind of entry): said plainly.
    text = describe_reason(kind, reason, "EUR")
    # A dict or list repr would show its braces and quotes ({'a': 1}, ['x']).
    assert "{'" not in text and "['" not in text and ": {" not in text


def test_event_data_reads_as_fields_with_money_in_major_units() -> None:
    from loyalty_engine.domain.ledger_reasons import describe_fields

    assert describe_fields({"voucher": "V-1", "amount_minor": 1050, "currency": "EUR",
                            "period": "2026"}, None) == (
        "voucher V-1, amount 10.50 EUR, period 2026")
    assert describe_fields({"amount_minor": 500, "tags": ["a", "b"]}, "JPY") == (
        "amount 500 JPY, tags (a, b)")
    assert describe_fields({"amount_minor": 500}, None) == "amount 500 (minor units)"
