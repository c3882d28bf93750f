"""CLV arithmetic against hand-worked figures: the simple retention-based CLV table, the
weekly discount, the models' CLV of the CDNOW paper's example customer, the method chosen
and why, and which members and segments a retention offer is worth."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loyalty_engine.analytics import bgnbd, clv
from loyalty_engine.analytics.bgnbd import BgNbdParams
from loyalty_engine.analytics.gamma_gamma import GammaGammaParams

PUBLISHED_BG = BgNbdParams(0.243, 4.414, 0.793, 2.426, -9582.4)
PUBLISHED_GG = GammaGammaParams(6.25, 3.74, 15.44, 0.0)


# m, r, i -> m r / (1 + i - r), worked by hand
SIMPLE_TABLE = [
    (100.0, 0.80, Fraction(10, 100), 266.6667),  # 80 / 0.30
    (50.0, 0.50, Fraction(10, 100), 41.6667),  # 25 / 0.60
    (120.0, 0.90, Fraction(0), 1080.0),  # 108 / 0.10
    (80.0, 0.75, Fraction(12, 100), 162.1622),  # 60 / 0.37
    (200.0, 0.0, Fraction(10, 100), 0.0),  # nobody stays
]


@pytest.mark.parametrize(("m", "r", "i", "expected"), SIMPLE_TABLE)
def test_the_simple_retention_clv_table(m: float, r: float, i: Fraction,
                                        expected: float) -> None:
    assert clv.retention_clv(m, r, i) == pytest.approx(expected, abs=5e-5)


def test_the_simple_clv_is_the_discounted_sum_of_the_years_margins() -> None:
    # m (r / (1 + i)) + m (r / (1 + i))^2 + ... over 400 years
    m, r, i = 100.0, 0.8, 0.1
    series = sum(m * (r / (1 + i)) ** k for k in range(1, 400))
    assert clv.retention_clv(m, r, i) == pytest.approx(series, rel=1e-9)


def test_the_simple_clv_refuses_rates_out_of_range() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        clv.retention_clv(100.0, 1.2, 0.1)
    with pytest.raises(ValueError, match="unbounded"):
        clv.retention_clv(100.0, 1.0, 0.0)


def test_retention_rate_and_its_yearly_equivalent() -> None:
    assert clv.retention_rate(6, 4) == pytest.approx(4 / 6)
    assert clv.retention_rate(0, 0) is None
    assert clv.annualised(0.8, 26) == pytest.approx(0.64)  # two half-years of 0.8
    assert clv.annualised(0.9, 52) == pytest.approx(0.9)
    with pytest.raises(ValueError):
        clv.retention_rate(3, 4)


def test_the_weekly_rate_of_an_annual_discount() -> None:
    # 1.1^(1/52) = exp(ln 1.1 / 52) = exp(0.0018329) = 1.0018346
    assert clv.weekly_rate(Fraction(1, 10)) == pytest.approx(0.0018346, abs=1e-7)
    assert clv.weekly_rate(0) == 0.0


def test_the_models_clv_of_the_papers_example_customer() -> None:
    # Undiscounted, the weekly increments add up to E[Y(39)] = 1.226 (the paper), times
    # the Gamma-Gamma spend (15.44 + 2 x 22.35) 6.25 / 15.24 = 24.6637, times a 30 % margin
    # = 9.0718
    result = clv.model_clv(PUBLISHED_BG, PUBLISHED_GG, [2], [30.43], [38.86], [22.35], 0.3,
                           horizon_weeks=39, annual_discount_rate=0)
    assert float(result.expected_purchases[0]) == pytest.approx(1.226, abs=0.002)
    assert float(result.expected_spend[0]) == pytest.approx(24.6637, abs=1e-4)
    assert float(result.clv[0]) == pytest.approx(1.226 * 24.6637 * 0.3, abs=0.02)
    assert float(result.p_alive[0]) == pytest.approx(0.72653, abs=5e-5)


@settings(deadline=None, max_examples=60)
@given(x=st.integers(0, 30), share=st.floats(0.0, 1.0), T=st.floats(1.0, 150.0),
       horizon=st.integers(1, 120), rate=st.floats(0.001, 0.5))
def test_discounting_lies_between_the_first_and_the_last_weeks_factor(
        x: int, share: float, T: float, horizon: int, rate: float) -> None:
    t_x = 0.0 if x == 0 else share * T
    total, discounted = clv.discounted_purchases(PUBLISHED_BG, [x], [t_x], [T], horizon, rate)
    d = clv.weekly_rate(rate)
    assert float(total[0]) == pytest.approx(
        float(bgnbd.expected_purchases(PUBLISHED_BG, horizon, x, t_x, T)), rel=1e-9)
    assert total[0] / (1 + d) ** horizon - 1e-12 <= discounted[0] <= total[0] / (1 + d) + 1e-12


def test_identical_customers_are_predicted_once_and_given_back_in_order() -> None:
    x, t_x, T = [3, 0, 3, 1], [20.0, 0.0, 20.0, 5.0], [30.0, 12.0, 30.0, 40.0]
    total, discounted = clv.discounted_purchases(PUBLISHED_BG, x, t_x, T, 52, 0.1)
    one_by_one = [clv.discounted_purchases(PUBLISHED_BG, [a], [b], [c], 52, 0.1)
                  for a, b, c in zip(x, t_x, T, strict=True)]
    assert total.tolist() == pytest.approx([float(t[0]) for t, _ in one_by_one])
    assert discounted.tolist() == pytest.approx([float(d[0]) for _, d in one_by_one])
    assert total[0] == total[2]


def test_the_method_and_why() -> None:
    models = clv.choose_method(30, 30)
    assert models.method == "bgnbd+gamma_gamma"
    simple = clv.choose_method(4, 30)
    assert simple.method == "retention"
    assert simple.reason == ("only 4 members bought again; at least 30 are needed to fit "
                             "BG/NBD and Gamma-Gamma, so the simple retention-based CLV "
                             "is used")


def test_fitting_the_models_needs_repeat_customers() -> None:
    with pytest.raises(clv.FitError):
        clv.fit_models([0, 0, 0], [0, 0, 0], [5, 6, 7], [0, 0, 0])


def test_rounding_to_minor_units_half_up() -> None:
    assert [clv.to_minor(v) for v in (2.5, 2.4999, 0.0, 1234.5)] == [3, 2, 0, 1235]


def test_which_members_and_segments_an_offer_is_worth() -> None:
    values = {"A": 5000, "B": 800, "C": 1500, "D": 999, "E": 3000, "F": 1000}
    segments = {"A": "champions", "B": "champions", "C": "at_risk", "D": "at_risk",
                "F": "at_risk"}  # E has no segment
    rows = clv.offer_by_segment(values, segments, offer_cost_minor=1000)
    # worth it: CLV above the cost (A, C, E); D falls short and F only equals it
    assert [(r.segment, r.members, r.clv_minor, r.worth, r.worth_clv_minor,
             r.offer_cost_minor, r.net_minor) for r in rows] == [
        ("champions", 2, 5800, 1, 5000, 1000, 4000),
        ("at_risk", 3, 3499, 1, 1500, 1000, 500),
        ("", 1, 3000, 1, 3000, 1000, 2000),
    ]
    assert clv.base_value(values) == 12299
    assert not clv.worth_offer(1000, 1000) and clv.worth_offer(1001, 1000)


def test_model_figures_broadcast_a_margin_per_member() -> None:
    result = clv.model_clv(PUBLISHED_BG, PUBLISHED_GG, [2, 2], [30.43, 30.43],
                           [38.86, 38.86], [22.35, 22.35], np.array([0.3, 0.6]), 52, 0.1)
    assert float(result.clv[1]) == pytest.approx(2 * float(result.clv[0]))


def test_the_table_shared_by_x_and_T_gives_each_customers_own_prediction() -> None:
    """Customers sharing (x, T) but not t_x share the 2F1 table; each still gets eq. 10 of
    their own, week by week, discounted (computed here one customer at a time)."""
    x = np.array([0.0, 2.0, 2.0, 2.0, 7.0])
    t_x = np.array([0.0, 5.0, 20.0, 30.0, 28.5])
    T = np.array([39.0, 30.0, 30.0, 30.0, 38.86])
    total, discounted = clv.discounted_purchases(PUBLISHED_BG, x, t_x, T, 52, 0.1)
    d = (1.1 ** (1 / 52)) - 1
    for i in range(len(x)):
        weekly = [float(bgnbd.expected_purchases(PUBLISHED_BG, k, x[i], t_x[i], T[i]))
                  for k in range(53)]
        assert total[i] == pytest.approx(weekly[52], rel=1e-12)
        assert discounted[i] == pytest.approx(
            sum((weekly[k] - weekly[k - 1]) / (1 + d) ** k for k in range(1, 53)), rel=1e-10)
    assert len({round(float(v), 9) for v in total[1:4]}) == 3  # t_x still tells them apart
