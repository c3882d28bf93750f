"""Manual points adjustments: an operator's goodwill credit or correction, with a mandatory
reason, written through the ledger (a credit is a lot with the program's expiry, a debit
spends lots first-in-first-out like a redemption) and recorded in the audit trail."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from loyalty_engine import ledger
from loyalty_engine.domain.errors import AdjustmentConflictError, AdjustmentRejectedError
from loyalty_engine.records.audit import record_audit
from loyalty_engine.services.programs import load_catalog
from loyalty_engine.store import tables
from loyalty_engine.store.locks import lock_member
from loyalty_engine.store.unit_of_work import write_use_case

_ledger = tables.ledger_entries
_enrolments = tables.enrolments
_members = tables.members
KINDS = ("goodwill", "correction")
MAX_POINTS = 10**9  # a typo guard: no real adjustment comes near a billion points


@dataclass(frozen=True, slots=True)
class Adjustment:
    """What an operator asks for: points (+ credit, - debit) with a reason, by someone."""

    adjustment_id: str
    member_id: str
    program_id: str
    points: int
    reason: str
    kind: str
    actor: str
    at: datetime


@dataclass(slots=True)
class AdjustmentOutcome:
    """What an adjustment did; the same adjustment id again returns it with replayed."""

    adjustment_id: str
    member_id: str
    program_id: str
    points: int
    kind: str
    reason: str
    actor: str
    entry_id: int
    balance: int  # the program's spendable balance after it
    replayed: bool = False

    def as_json(self) -> dict[str, Any]:
        """Plain data for --json and HTTP."""
        return asdict(self)


def check_adjustment(request: Adjustment) -> None:
    """Refuse what no adjustment may be, before anything is read."""
    if not 0 < len(request.adjustment_id) <= 64 or not request.adjustment_id.isprintable():
        raise AdjustmentRejectedError(f"{request.adjustment_id!r} is not an adjustment id: 1 "
                                      "to 64 printable characters")
    if not request.reason.strip():
        raise AdjustmentRejectedError("an adjustment needs a reason (--reason): say why the "
                                      "points change")
    if request.points == 0:
        raise AdjustmentRejectedError("an adjustment of 0 points changes nothing")
    if abs(request.points) > MAX_POINTS:
        raise AdjustmentRejectedError(f"{request.points} points is beyond the {MAX_POINTS} an "
                                      "adjustment may move")
    if request.kind not in KINDS:
        raise AdjustmentRejectedError(f"{request.kind!r} is not an adjustment kind "
                                      f"(kinds: {', '.join(KINDS)})")


@write_use_case
def adjust_points(conn: Connection, request: Adjustment, now: datetime) -> AdjustmentOutcome:
    """Make the adjustment in one transaction with its audit record; once per id.

    Raises AdjustmentRejectedError (no reason, 0 points, unknown member, not enrolled,
    program not in force, a debit larger than the spendable points) and
    AdjustmentConflictError (the id was used for a different adjustment)."""
    check_adjustment(request)
    return _adjust(conn, request, now)


def _ref(adjustment_id: str) -> str:
    return f"adjust:{adjustment_id}"


def _adjust(conn: Connection, request: Adjustment, now: datetime) -> AdjustmentOutcome:
    member_id, program_id, at = request.member_id, request.program_id, request.at
    if not lock_member(conn, member_id):
        raise AdjustmentRejectedError(f"there is no member {member_id!r}")
    stored = conn.execute(select(_ledger).where(
        _ledger.c.kind == "adjust", _ledger.c.ref == _ref(request.adjustment_id))).first()
    if stored is not None:
        first = dict(stored.reason or {})
        if (stored.member_id, stored.program_id, stored.points, first.get("reason"),
                first.get("kind")) != (member_id, program_id, request.points,
                                        request.reason, request.kind):
            raise AdjustmentConflictError(f"adjustment {request.adjustment_id!r} was already "
                                          "made with other details")
        return AdjustmentOutcome(request.adjustment_id, member_id, program_id, stored.points,
                                 request.kind, request.reason, str(first.get("by", "")),
                                 stored.id, _balance(conn, member_id, program_id), True)
    erased = conn.execute(select(_members.c.erased_at).where(
        _members.c.member_id == member_id)).scalar()
    if erased is not None:
        raise AdjustmentRejectedError(f"member {member_id!r} was erased; their points can no "
                                      "longer be adjusted")
    if conn.execute(select(_enrolments.c.member_id).where(
            _enrolments.c.member_id == member_id,
            _enrolments.c.program_id == program_id)).first() is None:
        raise AdjustmentRejectedError(f"member {member_id!r} is not enrolled in program "
                                      f"{program_id!r}")
    version = load_catalog(conn).in_force(program_id, at)
    if version is None:
        raise AdjustmentRejectedError(f"program {program_id!r} is not in force at "
                                      f"{at.isoformat()}")
    reason: dict[str, Any] = {"adjustment_id": request.adjustment_id, "kind": request.kind,
                              "reason": request.reason, "by": request.actor}
    ref = _ref(request.adjustment_id)
    if request.points > 0:
        # A credit is earned like a bonus: a spendable lot with the program's expiry, points
        # owed after a refund repaid from it first.
        program = version.program
        ledger.earn(conn, [ledger.Earning(
            member_id, program_id, version.id, request.points, at,
            program.expiry.at(at, program.timezone), reason, kind="adjust", ref=ref)], now)
    else:
        # A debit spends like a redemption: lots active at `at` and unexpired when recorded.
        points = -request.points
        ledger.spend(conn, ledger.Spend(member_id, program_id, version.id, "adjust", points,
                                        at, reason, ref), now,
                     lambda available: AdjustmentRejectedError(
                         f"member {member_id!r} has {available} spendable points in "
                         f"{program_id!r}; a debit of {points} would take them below zero"))
    entry = conn.execute(select(_ledger.c.id).where(
        _ledger.c.kind == "adjust", _ledger.c.ref == ref)).scalar_one()
    record_audit(conn, now, request.actor, "points_adjusted", member_id, program_id,
                 request.reason, {"adjustment_id": request.adjustment_id,
                                  "kind": request.kind, "points": request.points,
                                  "occurred_at": at.isoformat(), "entry_id": entry})
    return AdjustmentOutcome(request.adjustment_id, member_id, program_id, request.points,
                             request.kind, request.reason, request.actor, entry,
                             _balance(conn, member_id, program_id))


def _balance(conn: Connection, member_id: str, program_id: str) -> int:
    balances = tables.balances
    return int(conn.execute(select(balances.c.points).where(
        balances.c.member_id == member_id, balances.c.program_id == program_id)).scalar()
        or 0)
