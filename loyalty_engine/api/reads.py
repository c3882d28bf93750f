"""The read endpoints: a member at a glance, their ledger, health and readiness."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy import Engine, text

from loyalty_engine.api.auth import Caller, require_member_seen
from loyalty_engine.api.problems import Problem
from loyalty_engine.api.responses import problems
from loyalty_engine.api.schemas import (
    Health,
    LedgerEntry,
    LedgerPage,
    MemberId,
    MemberView,
    ProgramStanding,
    Ready,
    TierProgress,
    Voucher,
)
from loyalty_engine.services.access import member_programs, programs_out_of_reach
from loyalty_engine.services.members import ledger_page, show_member
from loyalty_engine.store.database import describe_url
from loyalty_engine.store.errors import DATABASE_ERRORS, as_database_error
from loyalty_engine.store.migrate import SCHEMA_REVISION
from loyalty_engine.store.schema_check import require_current_schema

router = APIRouter(prefix="/v1")


@router.get("/members/{member_id}", response_model=MemberView,
            summary="A member's balances, tiers, clubs, open fees and valid vouchers",
            responses=problems(401, 403, 404, 422))
def get_member(member_id: MemberId, key: Caller, request: Request) -> MemberView:
    """Points per program (spendable and pending), tier and what the next tier lacks, stamp
    cards, club memberships, fee charges still open, and the vouchers valid now. A pos key
    sees only the programs its stores take part in."""
    now = request.app.state.clock()
    engine = request.app.state.engine
    unreached = programs_out_of_reach(engine, key)
    require_member_seen(key, unreached, member_programs(engine, member_id), member_id)

    def shown_to(row: dict[str, Any]) -> bool:
        return row["program_id"] not in unreached

    shown = show_member(engine, member_id, now, recent=0)
    balances = {b["program_id"]: b for b in shown["balances"]}
    tiers = {t["program_id"]: t for t in shown["tiers"]}
    programs = []
    for enrolment in filter(shown_to, shown["enrolments"]):
        pid = enrolment["program_id"]
        balance = balances.get(pid, {})
        tier = tiers.get(pid)
        programs.append(ProgramStanding(
            program_id=pid, enrolled_at=enrolment["enrolled_at"],
            points=balance.get("points", 0), pending=balance.get("pending", 0),
            lifetime_earned=balance.get("lifetime_earned", 0),
            tier=None if tier is None else TierProgress.model_validate(tier),
            stamp_cards=[c for c in shown["stamp_cards"] if c["program_id"] == pid]))
    clubs: dict[str, Any] = shown["clubs"]
    return MemberView(
        member_id=shown["member_id"], created_at=shown["created_at"],
        attributes=dict(shown["attributes"] or {}), programs=programs,
        clubs=[c for c in clubs["clubs"] if shown_to(c)],
        open_charges=[c for c in clubs["charges"]
                      if c.get("status") in ("due", "failed") and shown_to(c)],
        vouchers=[Voucher.model_validate(v) for v in shown["vouchers"]
                  if v["valid"] and shown_to(v)])


@router.get("/members/{member_id}/ledger", response_model=LedgerPage,
            summary="A member's points ledger, a page at a time",
            responses=problems(401, 403, 404, 422))
def get_ledger(member_id: MemberId, key: Caller, request: Request,
               after: Annotated[int | None, Query(ge=0, le=2**62, description=(
                   "the last entry id of the previous page"))] = None,
               limit: Annotated[int, Query(ge=1, le=500)] = 100) -> LedgerPage:
    """Every change of the member's points, oldest first, each with its program version,
    rule, purchase and reason (a pos key: of the programs its stores take part in)."""
    engine = request.app.state.engine
    unreached = programs_out_of_reach(engine, key)
    require_member_seen(key, unreached, member_programs(engine, member_id), member_id)
    rows = ledger_page(engine, member_id, after, limit + 1, unreached)
    more = len(rows) > limit
    entries = [LedgerEntry.model_validate(r) for r in rows[:limit]]
    return LedgerPage(member_id=member_id, entries=entries,
                      next_after=entries[-1].id if more else None)


@router.get("/health", response_model=Health, summary="The process is up (no key needed)")
def get_health() -> Health:
    """Answers as long as the process serves requests."""
    return Health(status="ok")


@router.get("/ready", response_model=Ready, responses=problems(503),
            summary="The database answers and is migrated (no key needed)")
def get_ready(request: Request) -> Ready:
    """503 while the database is unreachable or not at the schema this code expects."""
    engine: Engine = request.app.state.engine
    where = describe_url(engine.url.render_as_string(hide_password=False))
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        require_current_schema(engine)
    except DATABASE_ERRORS as exc:
        failure = as_database_error(exc)
        raise Problem(503, "database-unreachable",
                      f"the database {where} does not answer: "
                      f"{failure.name if failure is not None else type(exc).__name__}"
                      ) from None
    return Ready(status="ready", database=engine.dialect.name,
                 schema_revision=SCHEMA_REVISION)
