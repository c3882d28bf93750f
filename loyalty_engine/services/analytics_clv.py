"""Customer lifetime value per member and for the program: BG/NBD and Gamma-Gamma fitted on
the program's members up to a calibration end (or, with too few repeat customers, the
simple retention-based CLV, saying so), the customer base value, and which members and
segments a retention offer is worth."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from fractions import Fraction
from typing import Any

import numpy as np
from sqlalchemy import Connection

from loyalty_engine.analytics import clv
from loyalty_engine.analytics.bgnbd import BgNbdParams, FitError
from loyalty_engine.analytics.gamma_gamma import GammaGammaParams
from loyalty_engine.domain.errors import LoyaltyError, NoPurchasesError
from loyalty_engine.records.clv_inputs import (
    ClvInputs,
    clv_inputs,
    member_margins,
    retention_inputs,
    retention_period_weeks,
)
from loyalty_engine.records.member_figures import snapshot_segments
from loyalty_engine.rules.compiled import CompiledProgram
from loyalty_engine.services.programs import program_as_of
from loyalty_engine.store.unit_of_work import read_use_case


@dataclass(frozen=True, slots=True)
class MemberClv:
    """A member's lifetime value as of an instant, and where it came from."""

    clv_minor: int
    p_alive: float | None  # None under the retention model
    expected_purchases: float  # purchase days expected over the horizon (see docs)
    model: str  # "bgnbd+gamma_gamma" or "retention"


@dataclass(frozen=True, slots=True)
class ClvMemberRow:
    """A member's line of the CLV report."""

    member_id: str
    segment: str  # of the RFM snapshot in force ('' without one)
    x: int
    t_x: float
    T: float
    first_day: date
    last_day: date
    spend_minor: int
    mean_repeat_spend_minor: float | None  # None without a repeat purchase day
    margin: float
    p_alive: float | None
    expected_purchases: float
    expected_spend_minor: float | None  # per purchase (Gamma-Gamma); None under retention
    clv_minor: int
    worth_offer: bool | None  # None without an offer's cost


@dataclass(frozen=True, slots=True)
class RetentionFigures:
    """The inputs of the simple model m r / (1 + i - r)."""

    period_weeks: int
    period_start: date
    active_before: int
    retained: int
    retention_rate: float | None  # per year; None when nobody was active before
    discount_rate: float
    mean_annual_margin_minor: float


@dataclass(frozen=True, slots=True)
class ClvReport:
    """The CLV report of one program."""

    program_id: str
    currency: str
    as_of: datetime
    calibration_end: datetime
    horizon_weeks: int
    discount_rate: float
    method: str
    reason: str
    bgnbd: BgNbdParams | None
    gamma_gamma: GammaGammaParams | None
    retention: RetentionFigures | None
    base_value_minor: int
    members: list[ClvMemberRow]
    offer_cost_minor: int | None
    segments: list[clv.SegmentWorth]

    def as_json(self) -> dict[str, Any]:
        """The report as JSON-ready data (the CLI's --json, the API's report)."""
        bg, gg, ret = self.bgnbd, self.gamma_gamma, self.retention
        return {
            "program": self.program_id,
            "currency": self.currency,
            "as_of": self.as_of.isoformat(),
            "calibration_end": self.calibration_end.isoformat(),
            "horizon_weeks": self.horizon_weeks,
            "discount_rate": self.discount_rate,
            "method": self.method,
            "reason": self.reason,
            "model": {
                "bgnbd": None if bg is None else {
                    "r": bg.r, "alpha": bg.alpha, "a": bg.a, "b": bg.b,
                    "log_likelihood": bg.log_likelihood},
                "gamma_gamma": None if gg is None else {"p": gg.p, "q": gg.q,
                                                        "gamma": gg.gamma},
                "retention": None if ret is None else {
                    "period_weeks": ret.period_weeks,
                    "period_start": ret.period_start.isoformat(),
                    "active_before": ret.active_before, "retained": ret.retained,
                    "retention_rate": ret.retention_rate,
                    "discount_rate": ret.discount_rate,
                    "mean_annual_margin_minor": ret.mean_annual_margin_minor},
            },
            "base_value_minor": self.base_value_minor,
            "offer": None if self.offer_cost_minor is None else {
                "cost_minor": self.offer_cost_minor,
                "worth": sum(s.worth for s in self.segments),
                "worth_clv_minor": sum(s.worth_clv_minor for s in self.segments),
                "segments": [
                    {"segment": s.segment, "members": s.members, "clv_minor": s.clv_minor,
                     "worth": s.worth, "worth_clv_minor": s.worth_clv_minor,
                     "offer_cost_minor": s.offer_cost_minor, "net_minor": s.net_minor}
                    for s in self.segments],
            },
            "members": [
                {"member_id": m.member_id, "segment": m.segment, "x": m.x, "t_x": m.t_x,
                 "T": m.T, "first_day": m.first_day.isoformat(),
                 "last_day": m.last_day.isoformat(), "spend_minor": m.spend_minor,
                 "mean_repeat_spend_minor": m.mean_repeat_spend_minor, "margin": m.margin,
                 "p_alive": m.p_alive, "expected_purchases": m.expected_purchases,
                 "expected_spend_minor": m.expected_spend_minor, "clv_minor": m.clv_minor,
                 "worth_offer": m.worth_offer}
                for m in self.members],
        }


@read_use_case
def clv_report(conn: Connection, program_id: str, calibration_end: datetime | None,
               horizon_weeks: int | None, as_of: datetime,
               offer_cost_minor: int | None = None) -> ClvReport:
    """The program's CLV report: the models fitted on purchases up to `calibration_end`
    (default as_of) and predicted over `horizon_weeks` (default the program's), net of
    refunds known by as_of; the per-member figures, the base value and, given an offer's
    cost, who and which segments it is worth."""
    program = program_as_of(conn, program_id, as_of)
    end = as_of if calibration_end is None else calibration_end
    if end > as_of:
        raise LoyaltyError(f"the calibration end {end.isoformat()} is after the as-of "
                           f"instant {as_of.isoformat()}; give an end at or before it")
    horizon = program.insights.clv.horizon_weeks if horizon_weeks is None else horizon_weeks
    if horizon < 1:
        raise LoyaltyError("the horizon must be at least one week")
    if offer_cost_minor is not None and offer_cost_minor < 0:
        raise LoyaltyError("an offer's cost must be at or above 0")
    return _compute(conn, program, end, horizon, as_of, offer_cost_minor)


@read_use_case
def member_clv(conn: Connection, program_id: str, as_of: datetime) -> dict[str, MemberClv]:
    """Each purchasing member's CLV as of an instant (calibrated up to it, over the
    program's horizon): what the RFM snapshot stores and rules read as member.clv. Empty
    when the program has no counted purchase by then."""
    program = program_as_of(conn, program_id, as_of)
    inputs = clv_inputs(conn, program, as_of, as_of)
    if not inputs.member_ids:
        return {}
    report = _compute(conn, program, as_of, program.insights.clv.horizon_weeks, as_of,
                      None, inputs=inputs)
    return {m.member_id: MemberClv(m.clv_minor, m.p_alive, m.expected_purchases,
                                   report.method) for m in report.members}


def _compute(conn: Connection, program: CompiledProgram, end: datetime, horizon: int,
             as_of: datetime, offer_cost_minor: int | None,
             inputs: ClvInputs | None = None) -> ClvReport:
    data = clv_inputs(conn, program, end, as_of) if inputs is None else inputs
    if not data.member_ids:
        raise NoPurchasesError(f"program {program.program_id!r} has no counted purchase by "
                           f"{end.isoformat()}; give a later --as-of or --calibration-end")
    economics = program.insights.economics
    margins = member_margins(conn, program, end, as_of)
    margin = np.array([float(margins.get(m, economics.margin)) for m in data.member_ids])
    discount = float(economics.annual_discount_rate)
    choice = clv.choose_method(data.repeat_members, program.insights.clv.min_repeat_members)
    bg: BgNbdParams | None = None
    gg: GammaGammaParams | None = None
    if choice.method == clv.MODELS:
        try:
            bg, gg = clv.fit_models(data.x, data.t_x, data.T, data.mean_repeat_spend_minor)
        except FitError as failed:
            choice = clv.MethodChoice(clv.RETENTION, f"the models could not be fitted "
                                      f"({failed}), so the simple retention-based CLV is used")
    segment_of = snapshot_segments(conn, program.program_id, as_of)
    if bg is not None and gg is not None:
        rows = _model_rows(data, margin, bg, gg, horizon, discount, segment_of)
        retention = None
    else:
        rows, retention = _retention_rows(conn, program, end, as_of, data, margin, discount,
                                          segment_of)
        if retention.retention_rate is None:
            choice = clv.MethodChoice(choice.method, (
                f"{choice.reason}; nobody bought in the {retention.period_weeks} weeks "
                f"before {retention.period_start.isoformat()}, so no retention rate can be "
                "measured and it is taken as 0"))
    values = {row.member_id: row.clv_minor for row in rows}
    segments: list[clv.SegmentWorth] = []
    if offer_cost_minor is not None:
        segments = clv.offer_by_segment(values, segment_of, offer_cost_minor)
        rows = [_with_offer(row, offer_cost_minor) for row in rows]
    return ClvReport(program.program_id, program.currency, as_of, end, horizon, discount,
                     choice.method, choice.reason, bg, gg, retention, clv.base_value(values),
                     rows, offer_cost_minor, segments)


def _with_offer(row: ClvMemberRow, cost: int) -> ClvMemberRow:
    return replace(row, worth_offer=clv.worth_offer(row.clv_minor, cost))


def _model_rows(data: ClvInputs, margin: np.ndarray, bg: BgNbdParams, gg: GammaGammaParams,
                horizon: int, discount: float, segment_of: dict[str, str]
                ) -> list[ClvMemberRow]:
    zbar = data.mean_repeat_spend_minor
    figures = clv.model_clv(bg, gg, data.x, data.t_x, data.T, zbar, margin, horizon,
                            discount)
    return [
        ClvMemberRow(
            member_id=member, segment=segment_of.get(member, ""), x=int(data.x[k]),
            t_x=float(data.t_x[k]), T=float(data.T[k]), first_day=data.first_day[k],
            last_day=data.last_day[k], spend_minor=int(data.spend_minor[k]),
            mean_repeat_spend_minor=float(zbar[k]) if data.x[k] > 0 else None,
            margin=float(margin[k]), p_alive=float(figures.p_alive[k]),
            expected_purchases=float(figures.expected_purchases[k]),
            expected_spend_minor=float(figures.expected_spend[k]),
            clv_minor=clv.to_minor(float(figures.clv[k])), worth_offer=None)
        for k, member in enumerate(data.member_ids)]


def _retention_rows(conn: Connection, program: CompiledProgram, end: datetime,
                    as_of: datetime, data: ClvInputs, margin: np.ndarray, discount: float,
                    segment_of: dict[str, str]
                    ) -> tuple[list[ClvMemberRow], RetentionFigures]:
    """m r / (1 + i - r) per member: m their margin over the last period, made yearly;
    r the program's retention rate over the period, made yearly."""
    weeks = retention_period_weeks(min(data.first_day), data.calibration_day)
    figures = retention_inputs(conn, program, end, as_of, weeks)
    measured = clv.retention_rate(figures.active_before, figures.retained)
    rate = 0.0 if measured is None else clv.annualised(measured, weeks)
    yearly = Fraction(clv.WEEKS_PER_YEAR, weeks)
    rows = []
    annual_margins = []
    for k, member in enumerate(data.member_ids):
        annual_margin = (figures.spend_in_period_minor.get(member, 0) * float(yearly)
                         * float(margin[k]))
        annual_margins.append(annual_margin)
        expected = figures.days_in_period.get(member, 0) * float(yearly) * rate
        rows.append(ClvMemberRow(
            member_id=member, segment=segment_of.get(member, ""), x=int(data.x[k]),
            t_x=float(data.t_x[k]), T=float(data.T[k]), first_day=data.first_day[k],
            last_day=data.last_day[k], spend_minor=int(data.spend_minor[k]),
            mean_repeat_spend_minor=(float(data.repeat_spend_minor[k] / data.x[k])
                                     if data.x[k] > 0 else None),
            margin=float(margin[k]), p_alive=None, expected_purchases=expected,
            expected_spend_minor=None,
            clv_minor=clv.to_minor(clv.retention_clv(annual_margin, rate, discount)),
            worth_offer=None))
    return rows, RetentionFigures(
        weeks, figures.period_start, figures.active_before, figures.retained,
        None if measured is None else rate, discount,
        float(np.mean(annual_margins)) if annual_margins else 0.0)
