"""The roll-forward: a hand-worked quarter, and the identity for any ledger (hypothesis)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loyalty_engine.finance.rollforward import MOVEMENTS, roll_forward
from loyalty_engine.finance.values import ReportError


def test_a_quarter_by_hand() -> None:
    sums = {("2026-01", "earn"): 500, ("2026-01", "redeem"): -200,
            ("2026-02", "unredeem"): 200, ("2026-02", "refund"): -30,
            ("2026-02", "debt"): -10, ("2026-03", "expire"): -120,
            ("2026-03", "adjust"): 15, ("2026-03", "fee"): -50}
    periods = roll_forward(100, ["2026-01", "2026-02", "2026-03"], sums)
    assert [p.as_json() for p in periods] == [
        {"period": "2026-01", "opening": 100, "earned": 500, "redeemed": 200, "reversed": 0,
         "expired": 0, "refunded": 0, "adjusted": 0, "other": 0, "closing": 400},
        {"period": "2026-02", "opening": 400, "earned": 0, "redeemed": 0, "reversed": 200,
         "expired": 0, "refunded": 40, "adjusted": 0, "other": 0, "closing": 560},
        {"period": "2026-03", "opening": 560, "earned": 0, "redeemed": 50, "reversed": 0,
         "expired": 120, "refunded": 0, "adjusted": 15, "other": 0, "closing": 405},
    ]


def test_entries_outside_the_periods_are_refused() -> None:
    with pytest.raises(ReportError, match="2026-04"):
        roll_forward(0, ["2026-03"], {("2026-04", "earn"): 1})


KINDS = st.sampled_from([*sorted(MOVEMENTS), "something_new"])


@given(opening=st.integers(-10**6, 10**6),
       entries=st.lists(st.tuples(st.integers(0, 5), KINDS, st.integers(-10**6, 10**6)),
                        max_size=60))
def test_the_identity_holds_for_any_ledger(opening: int,
                                           entries: list[tuple[int, str, int]]) -> None:
    keys = [f"2026-{m + 1:02d}" for m in range(6)]
    sums: dict[tuple[str, str], int] = {}
    for month, kind, points in entries:
        sums[(keys[month], kind)] = sums.get((keys[month], kind), 0) + points
    periods = roll_forward(opening, keys, sums)
    for before, after in itertools.pairwise(periods):
        assert after.opening == before.closing
    for period in periods:
        m = period.movements
        assert period.closing == (period.opening + m["earned"] - m["redeemed"]
                                  + m["reversed"] - m["expired"] - m["refunded"]
                                  + m["adjusted"] + m["other"])
        assert period.closing - period.opening == sum(
            points for (key, _), points in sums.items() if key == period.key)
    assert periods[-1].closing == opening + sum(p for _, _, p in entries)
