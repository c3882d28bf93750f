"""The breakage triangle and its chain-ladder projection on a small history worked out by
hand (the figures in the comments; finance/breakage.py documents the method).

Cohort 2026-01: 1,000 points; 100 redeemed in January, 300 in February, 100 in March and
200 expired in March. Cohort 2026-02: 500 points; 50 redeemed in February, 100 in March and
50 taken back by a refund in March. Cohort 2026-03: 200 points, nothing yet."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from loyalty_engine.finance.breakage import Flows, history, project, triangle


def _flows() -> Flows:
    flows = Flows(issued={"2026-01": 1000, "2026-02": 500, "2026-03": 200})
    for cohort, month, category, points in [
        ("2026-01", "2026-01", "redeemed", 100), ("2026-01", "2026-02", "redeemed", 300),
        ("2026-01", "2026-03", "redeemed", 100), ("2026-01", "2026-03", "expired", 200),
        ("2026-02", "2026-02", "redeemed", 50), ("2026-02", "2026-03", "redeemed", 100),
        ("2026-02", "2026-03", "cancelled", 50),
    ]:
        flows.add(cohort, month, category, points)
    return flows


def test_the_triangle_by_hand() -> None:
    cohorts = triangle(_flows(), "2026-03")
    cells = {(c.month, cell.age): (cell.redeemed, cell.expired, cell.cancelled,
                                   cell.outstanding) for c in cohorts for cell in c.cells}
    assert cells == {
        ("2026-01", 0): (100, 0, 0, 900), ("2026-01", 1): (400, 0, 0, 600),
        ("2026-01", 2): (500, 200, 0, 300),
        ("2026-02", 0): (50, 0, 0, 450), ("2026-02", 1): (150, 0, 50, 300),
        ("2026-03", 0): (0, 0, 0, 200),
    }


def test_the_projection_by_hand() -> None:
    found = project(triangle(_flows(), "2026-03"))
    # Age 0 -> 1 over cohorts 01 and 02: outstanding 900 + 450 = 1,350; redeemed 300 + 100
    # = 400, cancelled 50. Age 1 -> 2 over cohort 01: outstanding 600, 100 redeemed, 200
    # expired.
    assert found.ratios == ((Fraction(8, 27), Fraction(0), Fraction(1, 27)),
                            (Fraction(1, 6), Fraction(1, 3), Fraction(0)))
    # After the issue month 500 points were redeemed and 200 expired: the tail is 5/7.
    assert found.tail == Fraction(5, 7)
    # 01: 500 + 300 x 5/7. 02: 150 + 300/6 = 200, 150 left, + 150 x 5/7.
    # 03: 200 x 8/27 + (400/3)/6 + (200/3) x 5/7; cancelled 200/27.
    assert found.ultimate == {
        "2026-01": (Fraction(5000, 7), Fraction(0)),
        "2026-02": (Fraction(2150, 7), Fraction(50)),
        "2026-03": (Fraction(24400, 189), Fraction(200, 27)),
    }
    # (5000/7 + 2150/7 + 24400/189) / (1000 + 450 + 200 - 200/27)
    assert found.ultimate_rate == Fraction(4349, 6209)
    # Of the 800 outstanding, (217450/189 - 650) expected redeemed.
    assert found.outstanding_rate == Fraction(473, 756)


def test_without_history_every_outstanding_point_is_assumed_redeemed() -> None:
    found = project(triangle(Flows(issued={"2026-01": 100}), "2026-01"))
    assert (found.tail, found.ultimate_rate, found.outstanding_rate) == (1, 1, 1)


def test_how_the_estimate_moved() -> None:
    moved = history(_flows(), ["2026-01", "2026-02", "2026-03"])
    # End of January: one cohort, no development: the tail assumption (all redeemed).
    assert (moved[0].ultimate_rate, moved[0].outstanding) == (1, 900)
    # End of February: 01 at age 1 (400 redeemed, 600 out), 02 at age 0 (50, 450 out).
    # g_0 = 300/900 = 1/3, tail 1 (no expiry seen): 02 -> 50 + 450/3 + 300 = 500; 01 ->
    # 400 + 600 = 1,000: all 1,500 points expected redeemed.
    assert (moved[1].ultimate_rate, moved[1].outstanding) == (1, 1050)
    assert moved[2].ultimate_rate == Fraction(4349, 6209)
    assert moved[2].outstanding == 800


@st.composite
def _histories(draw: st.DrawFn) -> Flows:
    """Cohorts over six months, each point going one way at most once, at or after its
    issue month."""
    flows = Flows()
    for cohort in range(draw(st.integers(1, 6))):
        month = f"2026-{cohort + 1:02d}"
        issued = draw(st.integers(0, 1000))
        flows.issued[month] = issued
        left = issued
        for later in range(cohort, 6):
            for category in ("redeemed", "expired", "cancelled"):
                points = draw(st.integers(0, left))
                left -= points
                flows.add(month, f"2026-{later + 1:02d}", category, points)
    return flows


@given(_histories())
def test_the_projection_stays_within_the_points(flows: Flows) -> None:
    cohorts = triangle(flows, "2026-06")
    found = project(cohorts)
    for g, e, c in found.ratios:
        assert sum(x or 0 for x in (g, e, c)) <= 1
    for cohort in cohorts:
        redeemed, cancelled = found.ultimate[cohort.month]
        latest = cohort.latest
        assert latest.redeemed <= redeemed <= cohort.issued - cancelled
        assert latest.cancelled <= cancelled
    for rate in (found.ultimate_rate, found.outstanding_rate):
        assert rate is None or 0 <= rate <= 1
