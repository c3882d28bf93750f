"""Customer lifetime value, pure: the models' CLV over a horizon (BG/NBD purchases x
Gamma-Gamma spend x margin, discounted week by week), the simple retention-based CLV
m r / (1 + i - r) for programs with too few repeat customers to fit the models, the
choice between them, the customer base value, and which members and segments a retention
offer is worth spending on.

Money comes in and goes out in minor units; the models' time unit is a week."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import numpy as np
from numpy.typing import ArrayLike, NDArray

from loyalty_engine.analytics import bgnbd, gamma_gamma
from loyalty_engine.analytics.bgnbd import BgNbdParams, FitError
from loyalty_engine.analytics.gamma_gamma import GammaGammaParams

Array = NDArray[np.float64]

WEEKS_PER_YEAR = 52
MODELS = "bgnbd+gamma_gamma"
RETENTION = "retention"
_CHUNK = 20_000  # customers per block of the week-by-week prediction table


def weekly_rate(annual_discount_rate: float | Fraction) -> float:
    """The weekly rate equivalent to an annual one: (1 + i)^(1/52) - 1."""
    return float((1.0 + float(annual_discount_rate)) ** (1.0 / WEEKS_PER_YEAR) - 1.0)


def discounted_purchases(params: BgNbdParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike,
                         horizon_weeks: int, annual_discount_rate: float | Fraction
                         ) -> tuple[Array, Array]:
    """Per customer: (expected purchases in the next `horizon_weeks`, the same with week k's
    expected purchases, E[Y(k)] - E[Y(k - 1)], discounted by (1 + d)^k at the weekly rate d).

    E[Y(t) | x, t_x, T] is the (x, T) part of eq. 10 times P(alive | x, t_x, T), which
    does not change with t: the week-by-week table is built once per distinct (x, T) (the
    costly 2F1 evaluations) and each customer's row is that table's times their P(alive)."""
    if horizon_weeks < 1:
        raise ValueError("the horizon must be at least one week")
    xs, txs, Ts = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
    if xs.size == 0:
        return np.zeros(0), np.zeros(0)
    rows = np.stack([xs, Ts], axis=1)
    unique, back = np.unique(rows, axis=0, return_inverse=True)
    back = back.reshape(-1)
    weeks = np.arange(horizon_weeks + 1, dtype=np.float64)[:, None]
    factors = (1.0 + weekly_rate(annual_discount_rate)) ** -weeks[1:, 0]
    total = np.empty(unique.shape[0])
    discounted = np.empty(unique.shape[0])
    for start in range(0, unique.shape[0], _CHUNK):
        block = unique[start:start + _CHUNK]
        cumulative = bgnbd.if_alive_purchases(params, weeks, block[:, 0], block[:, 1])
        total[start:start + _CHUNK] = cumulative[-1]
        # einsum rather than a BLAS product (see bgnbd.weighted_sum)
        discounted[start:start + _CHUNK] = np.einsum("k,kn->n", factors,
                                                     np.diff(cumulative, axis=0))
    alive = bgnbd.probability_alive(params, xs, txs, Ts)
    return total[back] * alive, discounted[back] * alive


@dataclass(frozen=True, slots=True)
class ModelClv:
    """The models' figures per customer, in the order given."""

    p_alive: Array
    expected_purchases: Array  # over the horizon, undiscounted
    expected_spend: Array  # per purchase, minor units
    clv: Array  # minor units, unrounded


def model_clv(bg: BgNbdParams, gg: GammaGammaParams, x: ArrayLike, t_x: ArrayLike,
              T: ArrayLike, mean_repeat_spend: ArrayLike, margin: ArrayLike | float,
              horizon_weeks: int, annual_discount_rate: float | Fraction) -> ModelClv:
    """CLV = sum over weeks k = 1..H of (E[Y(k)] - E[Y(k-1)]) / (1 + d)^k
    x E[Z | x, zbar] x margin: expected purchases (BG/NBD) times the expected spend per
    purchase (Gamma-Gamma) times the gross margin, discounted weekly."""
    total, discounted = discounted_purchases(bg, x, t_x, T, horizon_weeks,
                                             annual_discount_rate)
    spend = gamma_gamma.expected_spend(gg, x, mean_repeat_spend)
    clv = discounted * spend * np.asarray(margin, dtype=np.float64)
    return ModelClv(bgnbd.probability_alive(bg, x, t_x, T), total, spend,
                    np.asarray(clv, dtype=np.float64))


def retention_clv(annual_margin: float, retention_rate: float,
                  annual_discount_rate: float | Fraction) -> float:
    """The simple retention-based CLV, m r / (1 + i - r): the margin m of each coming year,
    received at its end while the member stays (probability r per year), discounted at i.
    The sum of m (r / (1 + i))^k over k >= 1, so over an unlimited horizon."""
    i = float(annual_discount_rate)
    if not 0.0 <= retention_rate <= 1.0:
        raise ValueError("a retention rate lies between 0 and 1")
    if i < 0.0:
        raise ValueError("the discount rate must be at or above 0")
    if retention_rate >= 1.0 + i:
        raise ValueError("with a retention rate of 1 and no discount the value is unbounded")
    return annual_margin * retention_rate / (1.0 + i - retention_rate)


def retention_rate(active_before: int, retained: int) -> float | None:
    """(E - N) / S: of the S members active in the period before, the share who bought
    again in the period (None when nobody was active before)."""
    if retained < 0 or retained > active_before:
        raise ValueError("the retained members are some of those active before")
    return retained / active_before if active_before else None


def annualised(rate: float, period_weeks: int) -> float:
    """A retention rate measured over `period_weeks`, as a yearly one: rate^(52 / weeks)."""
    return float(rate ** (WEEKS_PER_YEAR / period_weeks))


@dataclass(frozen=True, slots=True)
class MethodChoice:
    """Which CLV the figures come from, and why."""

    method: str  # MODELS or RETENTION
    reason: str


def choose_method(repeat_members: int, min_repeat_members: int) -> MethodChoice:
    """The models when at least `min_repeat_members` members bought again, else the simple
    retention-based CLV (a fit on a handful of repeat buyers says nothing)."""
    if repeat_members >= min_repeat_members:
        return MethodChoice(MODELS, f"{repeat_members} members bought again (at least "
                                    f"{min_repeat_members} are needed to fit the models)")
    return MethodChoice(RETENTION, f"only {repeat_members} members bought again; at least "
                                   f"{min_repeat_members} are needed to fit BG/NBD and "
                                   "Gamma-Gamma, so the simple retention-based CLV is used")


def fit_models(x: ArrayLike, t_x: ArrayLike, T: ArrayLike,
               mean_repeat_spend: ArrayLike) -> tuple[BgNbdParams, GammaGammaParams]:
    """BG/NBD over every customer, Gamma-Gamma over those with x > 0 and a positive mean
    repeat spend. Raises FitError when either cannot be fitted or predicts nothing (a = 1
    or q <= 1: an infinite mean spend)."""
    xs = np.asarray(x, dtype=np.float64)
    zs = np.asarray(mean_repeat_spend, dtype=np.float64)
    bg = bgnbd.fit(bgnbd.summary(xs, t_x, T))
    repeat = (xs > 0) & (zs > 0)
    gg = gamma_gamma.fit(xs[repeat], zs[repeat])
    if gg.q <= 1:
        raise FitError("the Gamma-Gamma fit gives an infinite mean spend (q <= 1)")
    if abs(bg.a - 1.0) < 1e-9 or abs(bg.a + bg.b - 1.0) < 1e-9:
        raise FitError("the BG/NBD fit has a = 1 or a + b = 1, where its prediction is "
                       "undefined")
    return bg, gg


def to_minor(value: float) -> int:
    """A money amount in minor units, rounded half up."""
    if not np.isfinite(value):
        raise ValueError("a lifetime value must be finite")
    return int(Decimal(repr(float(value))).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def base_value(clv_minor: Mapping[str, int]) -> int:
    """The customer base value: the sum of the members' CLV."""
    return sum(clv_minor.values())


@dataclass(frozen=True, slots=True)
class SegmentWorth:
    """A segment's members against a retention offer."""

    segment: str
    members: int
    clv_minor: int  # the segment's total CLV
    worth: int  # members whose CLV exceeds the offer's cost
    worth_clv_minor: int  # their total CLV
    offer_cost_minor: int  # the offer for them: worth x cost

    @property
    def net_minor(self) -> int:
        """The CLV kept if the offer keeps them, less what it costs."""
        return self.worth_clv_minor - self.offer_cost_minor


def worth_offer(clv_minor: int, offer_cost_minor: int) -> bool:
    """A member is worth a retention offer when their CLV exceeds its cost: keeping them is
    worth more than the offer (an upper bound: it assumes the offer keeps them)."""
    return clv_minor > offer_cost_minor


def offer_by_segment(clv_minor: Mapping[str, int], segment_of: Mapping[str, str],
                     offer_cost_minor: int) -> list[SegmentWorth]:
    """Per segment (in the order of first appearance, by member id; '' for a member with no
    segment), how many members the offer is worth and what it costs."""
    if offer_cost_minor < 0:
        raise ValueError("an offer's cost must be at or above 0")
    rows: dict[str, list[int]] = {}
    for member in sorted(clv_minor):
        value = clv_minor[member]
        row = rows.setdefault(segment_of.get(member, ""), [0, 0, 0, 0])
        row[0] += 1
        row[1] += value
        if worth_offer(value, offer_cost_minor):
            row[2] += 1
            row[3] += value
    return [SegmentWorth(name, n, total, worth, worth_total, worth * offer_cost_minor)
            for name, (n, total, worth, worth_total) in rows.items()]
