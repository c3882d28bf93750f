"""The operator endpoints (admin keys only): manual points adjustments, member search, the
GDPR export and erasure. Writes are idempotent (api/idempotency.py)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json
from sqlalchemy import Connection

from loyalty_engine.api.auth import Caller, require_admin
from loyalty_engine.api.idempotency import answer_once
from loyalty_engine.api.responses import problems, send
from loyalty_engine.api.schemas import MemberId, RequestBody, request_digest, utc_text
from loyalty_engine.api.writes import _engine, _not_ahead, _now
from loyalty_engine.domain.events import ID_PATTERN, Identifier, Instant
from loyalty_engine.services.adjustments import (
    MAX_POINTS,
    Adjustment,
    AdjustmentOutcome,
    adjust_points,
)
from loyalty_engine.services.members import list_members
from loyalty_engine.services.privacy import erase_member, export_member

router = APIRouter(prefix="/v1")
# A sentence: not blank, no control characters.
Reason = Annotated[str, Field(min_length=1, max_length=500,
                              pattern=r"^[^\x00-\x1f]*\S[^\x00-\x1f]*$")]


class AdjustmentRequest(RequestBody):
    """A manual points adjustment: points added (positive) or taken (negative), and why."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "adjustment_id": "ADJ-2026-0042", "member_id": "M-42", "program_id": "bean-there",
        "points": 50, "reason": "coffee spilt at the till", "kind": "goodwill"}]})

    adjustment_id: Identifier = Field(description="the adjustment's natural key: the same "
                                      "request again is a replay")
    member_id: Identifier
    program_id: Identifier
    points: int = Field(ge=-MAX_POINTS, le=MAX_POINTS, description="points added (> 0) or "
                        "taken away (< 0); a debit never takes spendable points below zero")
    reason: Reason = Field(description="why (mandatory; shown in the ledger's explanation "
                           "and kept in the audit trail)")
    kind: Literal["goodwill", "correction"] = "goodwill"
    occurred_at: Instant | None = Field(default=None, description="default: now")

    def request_hash(self) -> str:
        """Hash of the normalised request."""
        return request_digest(self.adjustment_id, self.member_id, self.program_id, self.points,
                     self.reason, self.kind, utc_text(self.occurred_at))


class AdjustmentDone(BaseModel):
    """What an adjustment did."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "adjustment_id": "ADJ-2026-0042", "member_id": "M-42", "program_id": "bean-there",
        "points": 50, "kind": "goodwill", "reason": "coffee spilt at the till",
        "actor": "api:office", "entry_id": 812, "balance": 170}]})

    adjustment_id: str
    member_id: str
    program_id: str
    points: int
    kind: str
    reason: str
    actor: str = Field(description="who made it: api:<the API key's name>")
    entry_id: int = Field(description="its ledger entry")
    balance: int = Field(description="the program's spendable points after it")


class ErasureRequest(RequestBody):
    """Why a member's personal data is erased."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"reason": "request by e-mail, ticket 2211"}]})

    reason: Reason = "erasure requested by the member"

    def request_hash(self) -> str:
        """Hash of the normalised request."""
        return request_digest(self.reason)


def _actor(key: Any) -> str:
    return f"api:{key.name}"[:100]


@router.post("/adjustments", status_code=201, response_model=AdjustmentDone,
             summary="Adjust a member's points by hand (admin keys; idempotent on "
                     "adjustment_id)",
             responses={200: {"model": AdjustmentDone,
                              "description": "already made (from the command line, say)"},
                        **problems(400, 401, 403, 409, 413, 415, 422)})
def post_adjustment(body: AdjustmentRequest, key: Caller, request: Request) -> Response:
    """A goodwill credit (a lot with the program's expiry) or a correction (spent from the
    oldest lots; never below zero), with a mandatory reason, recorded in the ledger and the
    audit trail with the key's name."""
    require_admin(key, "adjusting points")
    now = _now(request)
    if body.occurred_at is not None:
        _not_ahead(body.occurred_at, now, "occurred_at")
    engine = _engine(request)

    def effect(conn: Connection, _: list[list[tuple[Any, ...]]]) -> tuple[int, str, bool]:
        outcome: AdjustmentOutcome = adjust_points(conn, Adjustment(
            body.adjustment_id, body.member_id, body.program_id, body.points,
            body.reason.strip(), body.kind, _actor(key), body.occurred_at or now), now)
        done = AdjustmentDone.model_validate(outcome.as_json())
        return (200 if outcome.replayed else 201), done.model_dump_json(), outcome.replayed

    return send(answer_once(
        engine, "adjustments", body.adjustment_id, body.request_hash(), effect, now,
        f"adjustment {body.adjustment_id!r} was already made with other details"))


class ProgramBalance(BaseModel):
    """A member's points in one program."""

    program_id: str
    points: int
    pending: int


class MemberLine(BaseModel):
    """One member of a search."""

    member_id: str
    created_at: Any
    balances: list[ProgramBalance]
    purchases: int
    last_purchase_at: Any
    erased: bool


class MemberList(BaseModel):
    """A page of members and how many match in all."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "total": 312, "offset": 0, "limit": 1, "members": [{
            "member_id": "M-42", "created_at": "2026-03-14T08:30:00Z",
            "balances": [{"program_id": "bean-there", "points": 120, "pending": 8}],
            "purchases": 14, "last_purchase_at": "2026-05-30T07:30:00Z",
            "erased": False}]}]})

    total: int
    offset: int
    limit: int
    members: list[MemberLine]


@router.get("/members", response_model=MemberList,
            summary="Search, filter and sort members, a page at a time (admin keys)",
            responses=problems(401, 403, 422))
def get_members(key: Caller, request: Request,
                search: Annotated[str | None, Query(max_length=200,
                                                    pattern=r"^[^\x00-\x1f]*$")] = None,
                program: Annotated[str | None, Query(max_length=64,
                                                     pattern=ID_PATTERN)] = None,
                sort: Annotated[str, Query(max_length=32, description=(
                    "member_id, created, purchases, last_purchase or points (needs "
                    "program), optionally :desc"))] = "member_id",
                limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> MemberList:
    """Members whose id or attributes contain `search`, enrolled in `program`, with their
    points per program and the total matching (page with offset)."""
    require_admin(key, "listing members")
    page = list_members(_engine(request), search=search, program=program, sort=sort,
                        limit=limit, offset=offset, as_of=request.app.state.clock())
    return MemberList(total=page.total, offset=page.offset, limit=page.limit,
                      members=[MemberLine.model_validate(r.as_json()) for r in page.rows])


@router.get("/members/{member_id}/export",
            summary="Everything held about a member, as JSON (admin keys; GDPR access)",
            responses=problems(401, 403, 404, 422))
def get_export(member_id: MemberId, key: Caller, request: Request) -> Response:
    """Every row of every table holding the member's data, table by table."""
    require_admin(key, "exporting a member's data")
    data = export_member(_engine(request), member_id, _now(request))
    return Response(to_json(data), media_type="application/json")


@router.post("/members/{member_id}/erase",
             summary="Erase a member's personal data (admin keys; idempotent)",
             responses=problems(400, 401, 403, 404, 409, 413, 415, 422))
def post_erase(member_id: MemberId, key: Caller, request: Request,
               body: Annotated[ErasureRequest | None, Body()] = None) -> Response:
    """Attributes, consents and verification evidence removed; the ledger, purchases and
    balances kept under the member id, which takes no new enrolment afterwards."""
    require_admin(key, "erasing a member")
    body = body or ErasureRequest()
    now = _now(request)
    engine = _engine(request)

    def effect(conn: Connection, _: list[list[tuple[Any, ...]]]) -> tuple[int, str, bool]:
        data = erase_member(conn, member_id, _actor(key), body.reason, now)
        return 200, to_json(data).decode(), bool(data["already_erased"])

    return send(answer_once(engine, "erasures", member_id, body.request_hash(), effect, now,
                             f"member {member_id!r} was already erased for another reason"))
