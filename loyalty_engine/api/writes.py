"""The write endpoints: purchases, refunds, enrolment, redemptions, fee payments, survey
answers. Each is idempotent on its natural key (api/idempotency.py), and each request is one
unit of work: the service's writes and the stored response commit together, retried whole
after a deadlock."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request
from fastapi.responses import Response
from sqlalchemy import Connection, Engine

from loyalty_engine.api.auth import (
    Caller,
    require_admin,
    require_member_seen,
    require_program,
    require_store,
)
from loyalty_engine.api.idempotency import answer_once
from loyalty_engine.api.problems import Problem
from loyalty_engine.api.responses import problems, send
from loyalty_engine.api.schemas import (
    Award,
    EnrolRequest,
    FeePaid,
    FeePayment,
    MemberEnrolled,
    MemberId,
    PurchaseRecorded,
    RedemptionDone,
    RefundRecorded,
    ReverseRequest,
    SurveyRecorded,
    SurveyRequest,
    utc_text,
)
from loyalty_engine.domain.errors import (
    NotFoundError,
    PurchaseConflictError,
    RedemptionBackdatedError,
    RedemptionConflictError,
    RefundConflictError,
)
from loyalty_engine.domain.events import ID_PATTERN, MAX_AHEAD, PurchaseEvent
from loyalty_engine.domain.redemptions import RedemptionRequest
from loyalty_engine.domain.refunds import RefundEvent
from loyalty_engine.records.purchase_writer import prefetched, prefetches
from loyalty_engine.services.access import (
    member_programs,
    programs_out_of_reach,
    redemption_program,
)
from loyalty_engine.services.enrolment import enrol_member
from loyalty_engine.services.fees import pay_charge
from loyalty_engine.services.purchases import record_purchase
from loyalty_engine.services.redemptions import RedemptionOutcome, redeem, reverse_redemption
from loyalty_engine.services.refunds import record_refund
from loyalty_engine.services.surveys import SurveyAnswer, SurveyConflictError, record_survey

router = APIRouter(prefix="/v1")
_SEP = "\x1f"  # between the parts of a key (identifiers have no control characters)


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _now(request: Request) -> datetime:
    now: datetime = request.app.state.clock()
    return now


def _not_ahead(value: datetime, now: datetime, field: str) -> None:
    if value > now + MAX_AHEAD:
        raise Problem(422, "validation",
                      f"{field}: {value.isoformat()} is in the future (the server's time is "
                      f"{now.isoformat(timespec='seconds')}); check the till's clock and "
                      "time zone", errors=[{"field": field, "pointer": f"#/{field}",
                                            "detail": "is in the future"}])


@router.post("/purchases", status_code=201, response_model=PurchaseRecorded,
             summary="Record a purchase (idempotent on store_id + transaction_id)",
             responses={200: {"model": PurchaseRecorded,
                              "description": "already recorded (imported, say): its awards"},
                        **problems(400, 401, 403, 409, 413, 415, 422)})
def post_purchase(event: PurchaseEvent, key: Caller, request: Request) -> Response:
    """Award the purchase under the programs in force at its store and time. Posting the
    same purchase again returns the first response with `Idempotent-Replayed: true`; the
    same transaction with a different body is 409."""
    require_store(key, event.store_id)
    now = _now(request)
    _not_ahead(event.occurred_at, now, "occurred_at")
    engine = _engine(request)

    def effect(conn: Connection, found: list[list[tuple[Any, ...]]]) -> tuple[int, str, bool]:
        outcome = record_purchase(conn, event, now, prefetched(event, found))
        body = PurchaseRecorded(
            purchase_id=outcome.purchase_id, store_id=outcome.store_id,
            transaction_id=outcome.transaction_id, member_id=outcome.member_id,
            points=outcome.points_by_program,
            awards=[Award(program_id=a.program_id, program_version=a.program_version,
                          rule_id=a.rule_id, points=a.points) for a in outcome.awards],
            tender=event.tender, channel=event.channel)
        return (200 if outcome.replayed else 201), body.model_dump_json(), outcome.replayed

    return send(answer_once(
        engine, "purchases", event.store_id + _SEP + event.transaction_id,
        event.to_purchase().body_hash, effect, now,
        # Worded as the service's own conflict (met by a post of an imported purchase).
        str(PurchaseConflictError(event.store_id, event.transaction_id)),
        # The purchase's key and its member looked up with the stored response: the replay
        # detected once, and a known member and their enrolments not written again.
        also=prefetches(event)))


@router.post("/refunds", status_code=201, response_model=RefundRecorded,
             summary="Record a refund (idempotent on store_id + refund_id)",
             responses=problems(400, 401, 403, 409, 413, 415, 422))
def post_refund(event: RefundEvent, key: Caller, request: Request) -> Response:
    """Take back, pro rata, what the purchase earned. A refund of an unknown purchase, or of
    more than remains of it, is 422 and changes nothing."""
    require_store(key, event.store_id)
    # The purchase refunded is checked too: a till refunds only its own stores' purchases.
    require_store(key, event.purchase_key[0])
    now = _now(request)
    _not_ahead(event.occurred_at, now, "occurred_at")
    engine = _engine(request)

    def effect(conn: Connection, found: list[list[tuple[Any, ...]]]) -> tuple[int, str, bool]:
        outcome = record_refund(conn, event, now)
        body = RefundRecorded.model_validate(outcome.as_json())
        return (200 if outcome.replayed else 201), body.model_dump_json(), outcome.replayed

    return send(answer_once(
        engine, "refunds", event.store_id + _SEP + event.refund_id, event.body_hash(), effect,
        now, str(RefundConflictError(event.store_id, event.refund_id))))


@router.post("/members", status_code=201, response_model=MemberEnrolled,
             summary="Enrol a member (idempotent on member_id)",
             responses={200: {"model": MemberEnrolled,
                              "description": "an existing member, attributes added"},
                        **problems(400, 401, 403, 409, 413, 415, 422)})
def post_member(body: EnrolRequest, key: Caller, request: Request) -> Response:
    """Create a member with attributes and consent flags (201), or add them to a member who
    already exists, made by a purchase say (200); optionally enrol them in a program. The
    same request again is a replay; a different one for the same member is applied (another
    program, a consent withdrawn with `false`)."""
    now = _now(request)
    at = body.occurred_at or now
    if body.occurred_at is not None:
        _not_ahead(body.occurred_at, now, "occurred_at")
    engine = _engine(request)
    unreached = programs_out_of_reach(engine, key)
    if body.program_id is not None:
        require_program(key, unreached, body.program_id, "enrol members")
    require_member_seen(key, unreached, member_programs(engine, body.member_id),
                        body.member_id)

    def effect(conn: Connection, found: list[list[tuple[Any, ...]]]) -> tuple[int, str, bool]:
        try:
            data = enrol_member(conn, body.member_id, dict(body.attributes),
                                dict(body.consents), at, now, body.program_id)
        except NotFoundError as exc:  # an unknown program is a bad field, not a bad URL
            raise Problem(422, "validation", f"program_id: {exc}", errors=[{
                "field": "program_id", "pointer": "#/program_id", "detail": str(exc)}]
            ) from None
        return (201 if data["created"] else 200), MemberEnrolled.model_validate(
            data).model_dump_json(), False

    # Keyed by the member and the request: the same request again is a replay, another
    # one (a second program, a consent withdrawn) is applied to the member in turn.
    request_hash = body.request_hash()
    return send(answer_once(
        engine, "members", body.member_id + _SEP + request_hash, request_hash, effect, now,
        "unreachable: the key includes the request"))


def _redemption(outcome: RedemptionOutcome) -> str:
    return RedemptionDone(
        redemption_id=outcome.redemption_id, member_id=outcome.member_id,
        program_id=outcome.program_id, kind=outcome.kind, points=outcome.points,
        voucher=outcome.voucher, reversed=outcome.reversed, restored=outcome.restored,
    ).model_dump_json()


@router.post("/redemptions", status_code=201, response_model=RedemptionDone,
             summary="Redeem points, buy a reward or use a voucher (idempotent on "
                     "redemption_id)",
             responses=problems(400, 401, 403, 409, 413, 415, 422))
def post_redemption(body: RedemptionRequest, key: Caller, request: Request) -> Response:
    """Spend points first-in-first-out, buy a reward's voucher, or use a voucher. More
    points than the spendable balance, an expired or used voucher, or an `occurred_at`
    further back than the program's `redemptions.backdate_hours` (24 by default) is 422."""
    now = _now(request)
    _not_ahead(body.occurred_at, now, "occurred_at")
    engine = _engine(request)
    require_program(key, programs_out_of_reach(engine, key), body.program_id, "redeem")

    def effect(conn: Connection, found: list[list[tuple[Any, ...]]]) -> tuple[int, str, bool]:
        try:
            outcome = redeem(conn, body, now)
        except RedemptionBackdatedError as exc:  # a bad field, named like any other
            raise Problem(422, "validation", str(exc), errors=[{
                "field": exc.field, "pointer": f"#/{exc.field}",
                "detail": "older than the program accepts from an offline till"}]) from None
        return (200 if outcome.replayed else 201), _redemption(outcome), outcome.replayed

    return send(answer_once(
        engine, "redemptions", body.redemption_id, body.body_hash(), effect, now,
        str(RedemptionConflictError(body.redemption_id))))


RedemptionId = Annotated[str, Path(min_length=1, max_length=128, pattern=ID_PATTERN)]


@router.post("/redemptions/{redemption_id}/reverse", response_model=RedemptionDone,
             summary="Reverse a redemption (idempotent)",
             responses=problems(400, 401, 403, 404, 409, 413, 415, 422))
def post_reversal(redemption_id: RedemptionId, key: Caller, request: Request,
                  body: Annotated[ReverseRequest | None, Body()] = None) -> Response:
    """Put the points back into the lots they came from, void a bought voucher, or make a
    used voucher usable again. Reversing twice changes nothing."""
    body = body or ReverseRequest()
    now = _now(request)
    if body.occurred_at is not None:
        _not_ahead(body.occurred_at, now, "occurred_at")
    engine = _engine(request)
    program_id = redemption_program(engine, redemption_id)  # None: the service says 404
    if program_id is not None:
        require_program(key, programs_out_of_reach(engine, key), program_id,
                        "reverse redemptions")

    def effect(conn: Connection, found: list[list[tuple[Any, ...]]]) -> tuple[int, str, bool]:
        outcome = reverse_redemption(conn, redemption_id, now, body.occurred_at)
        return 200, _redemption(outcome), outcome.replayed

    return send(answer_once(
        engine, "reversals", redemption_id, body.request_hash(), effect, now,
        f"redemption {redemption_id!r} was already reversed at another time"))


@router.post("/fees/{charge_id}/pay", response_model=FeePaid,
             summary="Pay a club fee charge (admin keys; idempotent per charge)",
             responses=problems(400, 401, 403, 404, 409, 413, 415, 422))
def post_fee_payment(charge_id: Annotated[int, Path(ge=1, le=2**62)], key: Caller,
                     request: Request,
                     body: Annotated[FeePayment | None, Body()] = None) -> Response:
    """Mark a due charge paid, in money (the engine records it; it moves none) or in the
    level's points price, and apply it to the membership."""
    require_admin(key, "paying a fee")
    body = body or FeePayment()
    now = _now(request)
    at = body.paid_at or now
    if body.paid_at is not None:
        _not_ahead(body.paid_at, now, "paid_at")
    engine = _engine(request)

    def effect(conn: Connection, found: list[list[tuple[Any, ...]]]) -> tuple[int, str, bool]:
        outcome = pay_charge(conn, charge_id, at, now, body.in_points, body.reference)
        return 200, FeePaid.model_validate(outcome.as_json()).model_dump_json(), False

    return send(answer_once(
        engine, "fee-payments", str(charge_id), body.request_hash(), effect, now,
        f"charge {charge_id} was already paid through the API with other details"))


@router.post("/members/{member_id}/surveys", status_code=201, response_model=SurveyRecorded,
             summary="Record a member's NPS or commitment answer (idempotent on member, "
                     "kind and answered_at)",
             responses={200: {"model": SurveyRecorded,
                              "description": "already recorded (imported, say)"},
                        **problems(400, 401, 403, 404, 409, 413, 415, 422)})
def post_survey(member_id: MemberId, body: SurveyRequest, key: Caller,
                request: Request) -> Response:
    """The latest answer of each kind is the member's attitude in the loyalty matrix
    (`loyalty analytics loyalty-matrix`). The same answer again is a replay; the same
    member, kind and `answered_at` with another score is 409; an unknown member is 404."""
    now = _now(request)
    _not_ahead(body.answered_at, now, "answered_at")
    engine = _engine(request)
    require_member_seen(key, programs_out_of_reach(engine, key),
                        member_programs(engine, member_id), member_id)
    answer = SurveyAnswer(member_id=member_id, kind=body.kind, score=body.score,
                          answered_at=body.answered_at)
    article = "an" if body.kind == "nps" else "a"
    conflict = (f"member {member_id!r} already has {article} {body.kind} answer at "
                f"{utc_text(body.answered_at)} with another score; an answer cannot be changed "
                "by sending it again")

    def effect(conn: Connection, found: list[list[tuple[Any, ...]]]) -> tuple[int, str, bool]:
        try:
            outcome = record_survey(conn, answer, f"api:{key.name}"[:100], now)
        except SurveyConflictError as exc:  # imported with another score
            raise Problem(409, "conflict", str(exc)) from None
        body_out = SurveyRecorded.model_validate(outcome.as_json()).model_dump_json()
        return (200 if outcome.replayed else 201), body_out, outcome.replayed

    return send(answer_once(
        engine, "surveys", _SEP.join((member_id, body.kind, str(utc_text(body.answered_at)))),
        body.request_hash(), effect, now, conflict))
