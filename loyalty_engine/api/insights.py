"""What the engine knows about members over HTTP: one member's insights for POS and CRM
screens (`GET /v1/members/{id}/insights`), and the analytics reports with the JSON of the
CLI's --json (`GET /v1/analytics/{report}`, admin keys)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import AwareDatetime

from loyalty_engine.api.auth import Caller, require_admin, require_member_seen
from loyalty_engine.api.problems import Problem
from loyalty_engine.api.responses import problems
from loyalty_engine.api.schemas import MemberId
from loyalty_engine.domain.events import ID_PATTERN
from loyalty_engine.domain.plain_json import dumps
from loyalty_engine.services.access import member_programs, programs_out_of_reach
from loyalty_engine.services.analytics_clv import clv_report
from loyalty_engine.services.analytics_members import member_summaries, rfm_grid
from loyalty_engine.services.analytics_retention import (
    cohort_report,
    lapsed_members,
    retention_report,
)
from loyalty_engine.services.insights import member_insights
from loyalty_engine.services.wallet import loyalty_matrix_report, wallet_report

router = APIRouter(prefix="/v1")
Report = Literal["members", "rfm", "retention", "cohorts", "lapsed", "clv", "wallet",
                 "loyalty-matrix"]


def _instant(request: Request, value: datetime | None) -> datetime:
    """The instant asked for (validated with its offset), or the clock's now."""
    return request.app.state.clock() if value is None else value


def _json(data: Any) -> Response:
    # The CLI's --json text (instants with their offset, decimals as strings).
    return Response(dumps(data), media_type="application/json")


def _retention_period(value: str | None) -> Literal["month", "quarter", "year"]:
    if value in (None, "month"):
        return "month"
    if value in ("quarter", "year"):
        return value  # type: ignore[return-value]
    raise Problem(422, "invalid-query", f"period {value!r} is not month, quarter or year",
                  errors=[{"field": "period", "pointer": "#/period", "in": "query",
                           "detail": "give month, quarter or year"}])


@router.get("/members/{member_id}/insights",
            summary="A member's segment, RFM scores, CLV, P(alive), tenure, share of wallet "
                    "and loyalty type, per program",
            responses=problems(401, 403, 404, 422))
def get_insights(member_id: MemberId, key: Caller, request: Request,
                 as_of: Annotated[AwareDatetime | None, Query(description=(
                     "the instant (with offset) the figures are as of; default now"))] = None
                 ) -> Response:
    """Per program (a pos key: those its stores take part in): the snapshot in force (the
    weekly rfm_snapshot job's), tenure from the enrolment, share of wallet from imported
    totals, and the behavioural x attitudinal loyalty type."""
    engine = request.app.state.engine
    unreached = programs_out_of_reach(engine, key)
    require_member_seen(key, unreached, member_programs(engine, member_id), member_id)
    found = member_insights(engine, member_id, _instant(request, as_of), unreached)
    return _json(found)


@router.get("/analytics/{report}",
            summary="An analytics report as `loyalty analytics REPORT --json` prints it "
                    "(admin keys)",
            responses=problems(401, 403, 404, 422))
def get_analytics(
    report: Report, key: Caller, request: Request,
    program: Annotated[str, Query(min_length=1, max_length=64, pattern=ID_PATTERN)],
    as_of: Annotated[AwareDatetime | None, Query()] = None,
    sort: Annotated[str, Query(max_length=16, description="members: the sort key")] = "spend",
    segment: Annotated[str | None, Query(max_length=64, description="members: only this "
                                         "segment")] = None,
    limit: Annotated[int | None, Query(ge=1, le=100_000)] = None,
    period: Annotated[str | None, Query(max_length=16, pattern=r"^[0-9A-Za-z-]+$", description=(
        "retention: month, quarter or year; wallet: a period key (2026, 2026-Q1, 2026-03)"
    ))] = None,
    periods: Annotated[int, Query(ge=1, le=120, description="retention: how many")] = 12,
    by: Annotated[Literal["segment", "tier", "club"] | None, Query(
        description="retention: split by")] = None,
    months: Annotated[int, Query(ge=1, le=120, description="cohorts: how many")] = 12,
    calibration_end: Annotated[AwareDatetime | None, Query(description="clv")] = None,
    horizon_weeks: Annotated[int | None, Query(ge=1, le=520, description="clv")] = None,
) -> Response:
    """The same figures, the same JSON as the CLI's --json: members, rfm, retention,
    cohorts, lapsed, clv, wallet, loyalty-matrix."""
    require_admin(key, "reading analytics")
    engine = request.app.state.engine
    at = _instant(request, as_of)
    calibrated = calibration_end
    reports: dict[str, Callable[[], Any]] = {
        "members": lambda: member_summaries(engine, program, at, sort=sort, segment=segment,
                                            limit=limit),
        "rfm": lambda: rfm_grid(engine, program, at),
        "retention": lambda: retention_report(engine, program, at,
                                              period=_retention_period(period),
                                              periods=periods, split=by),
        "cohorts": lambda: cohort_report(engine, program, at, months=months),
        "lapsed": lambda: lapsed_members(engine, program, at),
        "clv": lambda: clv_report(engine, program, calibrated, horizon_weeks, at),
        "wallet": lambda: wallet_report(engine, program, at, period=period),
        "loyalty-matrix": lambda: loyalty_matrix_report(engine, program, at),
    }
    return _json(reports[report]().as_json())
