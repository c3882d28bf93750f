"""Fee charges: paying one (by a service call or in points), marking a collection failed,
and a fee line returned at the till (a fee paid at the till: records/till_fees.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from loyalty_engine.domain.errors import FeeError, RefundRejectedError
from loyalty_engine.engine.catalog import ProgramCatalog, VersionInForce
from loyalty_engine.records.fee_points import pay_fee_points, refund_fee_points
from loyalty_engine.records.memberships import (
    LIVE,
    charge,
    charge_json,
    close_ended_households,
    membership,
    membership_json,
    open_charges,
    save_membership,
    set_charge,
)
from loyalty_engine.records.till_fees import apply_payment
from loyalty_engine.rules.compiled_membership import CompiledClub
from loyalty_engine.services.programs import load_catalog
from loyalty_engine.store import tables
from loyalty_engine.store.locks import lock_member
from loyalty_engine.store.unit_of_work import read_use_case, write_use_case

_charges = tables.fee_charges


@dataclass(slots=True)
class FeeOutcome:
    """A charge after the request, and the membership it serves."""

    charge: dict[str, Any]
    membership: dict[str, Any] | None
    message: str

    def as_json(self) -> dict[str, Any]:
        """Plain data for --json and the API."""
        return {"charge": self.charge, "membership": self.membership, "message": self.message}


@write_use_case
def pay_charge(conn: Connection, charge_id: int, at: datetime, now: datetime,
               in_points: bool = False, reference: str | None = None) -> FeeOutcome:
    """Mark a due (or failed) charge paid, in money or in the level's points price, and
    apply it: a joining charge starts the membership's term, a renewal extends it, an
    upgrade moves the level up."""

    if reference is not None and not 0 < len(reference) <= 160:
        raise FeeError("--reference must be 1 to 160 characters")
    row = charge(conn, charge_id)
    lock_member(conn, row.member_id)
    row = charge(conn, charge_id, lock=True)
    _check_payable(row)
    catalog = load_catalog(conn)
    version, club = _club_of(catalog, row, at)
    membership_row = membership(conn, row.member_id, row.program_id, row.club_id)
    if membership_row is None or membership_row.status not in (
            "pending", "active", "grace"):
        state = "none" if membership_row is None else membership_row.status
        raise FeeError(f"charge {charge_id} is for a membership that has ended "
                       f"({state}); join the club again")
    if at < membership_row.joined_at:
        raise FeeError(f"--at {at.isoformat()} is before member {row.member_id!r} "
                       f"joined ({membership_row.joined_at.isoformat()}); a payment "
                       "cannot predate the membership")
    if row.term_start < membership_row.joined_at:
        raise FeeError(f"charge {charge_id} belongs to an earlier membership of club "
                       f"{row.club_id!r} that has ended; it is not owed any more")
    detail = dict(row.detail or {})
    points = None
    via = "service"
    if in_points:
        level = club.level(row.level)
        if level is None or level.points_price is None:
            raise FeeError(f"level {row.level!r} of club {row.club_id!r} cannot be "
                           "paid in points")
        if row.kind == "upgrade":
            raise FeeError(f"charge {charge_id} is a prorated upgrade; it is paid in "
                           "money, not points")
        if row.kind == "trial":
            raise FeeError(f"charge {charge_id} is a trial; it is paid in money, not "
                           "points")
        points = level.points_price
        detail["from_lots"] = pay_fee_points(conn, row, version.id, points, at, now)
        detail["program_version_id"] = version.id
        via = "points"
    set_charge(conn, charge_id, now, status="paid", paid_at=at, paid_via=via,
               paid_ref=reference, points=points, detail=detail)
    apply_payment(conn, row, version, club, at, now)
    return _outcome(conn, charge_id, f"charge {charge_id} paid"
                    + (f" with {points} points" if points else ""))


@write_use_case
def fail_charge(conn: Connection, charge_id: int, now: datetime,
                reason: str | None = None) -> FeeOutcome:
    """Record that collecting a due charge failed; it stays payable until the lapse."""

    if reason is not None and len(reason) > 200:
        raise FeeError("--reason must be at most 200 characters")

    row = charge(conn, charge_id, lock=True)
    if row.status != "due":
        raise FeeError(f"charge {charge_id} is {row.status}; only a due charge can "
                       "fail")
    set_charge(conn, charge_id, now, status="failed",
               detail={**(row.detail or {}), "failure": reason or "collection failed"})
    return _outcome(conn, charge_id, f"charge {charge_id} marked failed")


def _check_payable(row: Any) -> None:
    if row.status == "paid":
        raise FeeError(f"charge {row.id} was already paid on {row.paid_at.isoformat()} "
                       f"(via {row.paid_via}); it cannot be paid twice")
    if row.status in ("waived", "refunded"):
        raise FeeError(f"charge {row.id} is {row.status}; there is nothing to pay")


def _club_of(catalog: ProgramCatalog, row: Any,
             at: datetime) -> tuple[VersionInForce, CompiledClub]:
    version = catalog.in_force(row.program_id, at) or catalog.versions(row.program_id)[-1]
    club = version.program.clubs.get(row.club_id)
    if club is None:
        raise FeeError(f"program {row.program_id!r} no longer has club {row.club_id!r}")
    return version, club


def _outcome(conn: Connection, charge_id: int, message: str) -> FeeOutcome:
    row = charge(conn, charge_id)
    found = membership(conn, row.member_id, row.program_id, row.club_id)
    return FeeOutcome(charge_json(row), None if found is None else membership_json(found),
                      message)


@read_use_case
def charges_of(conn: Connection, member_id: str | None,
               status: str | None) -> list[dict[str, Any]]:
    """Fee charges, newest first, optionally of one member and in one state."""
    query = select(_charges).order_by(_charges.c.id.desc())
    if member_id is not None:
        query = query.where(_charges.c.member_id == member_id)
    if status is not None:
        query = query.where(_charges.c.status == status)
    return [charge_json(r) for r in conn.execute(query)]


def refund_till_fees(conn: Connection, purchase_id: int,
                     returned: dict[str, int] | None, full: bool, at: datetime,
                     now: datetime) -> list[int]:
    """A refund that returns a fee line refunds the charge that line paid, and changes the
    membership only as far as the term of that charge reaches (docs/program-language.md,
    "Fee lines returned at the till").

    returned: what the refund lists per SKU (minor units), None for a refund by amount
    only, which leaves fee lines alone until the whole purchase is refunded. Part of a line
    is recorded on its charge and changes nothing else; once all of it is back, the charge
    is refunded. Returns the charges refunded in full (with any renewal paid ahead that the
    return refunds too)."""
    refunded: list[int] = []
    catalog = load_catalog(conn)
    for row in conn.execute(select(_charges).where(
            _charges.c.paid_ref == f"purchase:{purchase_id}", _charges.c.status == "paid")
            .order_by(_charges.c.id)):
        version = catalog.in_force(row.program_id, row.paid_at)
        club = None if version is None else version.program.clubs.get(row.club_id)
        level = None if club is None else club.level(row.level)
        sku = None if level is None else level.fee_sku
        back = row.amount_minor if full else (returned or {}).get(sku or "", 0)
        if back <= 0:
            continue
        back = min(back + (row.refunded_minor or 0), row.amount_minor)
        if back < row.amount_minor:
            set_charge(conn, row.id, now, refunded_minor=back,
                       detail={**(row.detail or {}), "partly_refunded_at": at.isoformat()})
            continue
        refunded.extend(_fee_line_returned(conn, catalog, row, at, now))
    return refunded


def _fee_line_returned(conn: Connection, catalog: ProgramCatalog, row: Any, at: datetime,
                       now: datetime) -> list[int]:
    """Refund a charge whose whole till line came back at `at`, and apply it to the term
    it paid: running, that term (and the membership) ends now; not started yet (a renewal
    paid ahead), the current term runs out without renewing; over, nothing else changes:
    the member had what they paid for, and the term running now was paid by another
    charge. An upgrade's return gives back the level it came from while its term runs."""
    current = membership(conn, row.member_id, row.program_id, row.club_id)
    live = (current is not None and current.status in LIVE
            and row.term_start >= current.joined_at)  # else: an earlier membership's charge
    running = row.term_start <= at < row.term_end
    if live and row.kind == "upgrade" and at < row.term_end:
        _check_upgrade_returnable(conn, row)
    set_charge(conn, row.id, now, status="refunded", refunded_minor=row.amount_minor)
    if not live:
        return [row.id]
    key = (row.member_id, row.program_id, row.club_id)
    if row.kind == "upgrade":
        if at < row.term_end:
            _undo_upgrade(conn, catalog, row, at, now)
        return [row.id]
    if at < row.term_start:
        # A renewal returned before its term: the term paid before it runs to its end
        # and the membership does not renew (there is nothing to renew it with).
        save_membership(conn, *key, now, auto_renew=False, term_end=row.term_start)
        return [row.id]
    if running:
        return [row.id, *_end_membership(conn, current, at, now)]
    return [row.id]


def _end_membership(conn: Connection, current: Any, at: datetime, now: datetime) -> list[int]:
    """End a membership at once because the fee of its running term came back: a renewal
    already paid for a later term is refunded (that term will not run) and unpaid charges
    are not owed. Returns the charges refunded."""
    c = _charges
    refunded = []
    for later in conn.execute(select(c).where(
            c.c.member_id == current.member_id, c.c.program_id == current.program_id,
            c.c.club_id == current.club_id, c.c.status == "paid",
            c.c.kind.in_(("join", "renewal")), c.c.term_start > at,
            c.c.term_start >= current.joined_at).order_by(c.c.id)):
        if later.points:
            refund_fee_points(conn, later, at, now)
        set_charge(conn, later.id, now, status="refunded", refunded_minor=later.amount_minor)
        refunded.append(later.id)
    for unpaid in open_charges(conn, current.member_id, current.program_id, current.club_id):
        set_charge(conn, unpaid.id, now, status="waived",
                   detail={**(unpaid.detail or {}), "waived": "membership ended by a return"})
    save_membership(conn, current.member_id, current.program_id, current.club_id, now,
                    status="cancelled", ended_at=at, term_end=at, auto_renew=False)
    close_ended_households(conn, current.program_id, current.club_id, now,
                           primary=current.member_id)
    return refunded


def _check_upgrade_returnable(conn: Connection, row: Any) -> None:
    """An upgrade returned while its term runs puts the level back; a renewal already paid
    at the upgraded level for the term after it would then pay for a level the member no
    longer holds, so that return is refused until the renewal is refunded."""
    c = _charges
    paid = conn.execute(select(c.c.id, c.c.term_start).where(
        c.c.member_id == row.member_id, c.c.program_id == row.program_id,
        c.c.club_id == row.club_id, c.c.kind == "renewal", c.c.status == "paid",
        c.c.level == row.level, c.c.term_start >= row.term_end).order_by(c.c.id)).first()
    if paid is not None:
        raise RefundRejectedError(
            f"the fee line of upgrade charge {row.id} cannot come back while renewal charge "
            f"{paid.id} (the term from {paid.term_start.isoformat()}) is paid at level "
            f"{row.level!r}; refund that renewal first (leaving the club does), or return "
            "the other lines only")


def _undo_upgrade(conn: Connection, catalog: ProgramCatalog, row: Any, at: datetime,
                  now: datetime) -> None:
    """Back to the level the upgrade came from; renewals waiting for payment at the
    upgraded level are repriced to it."""
    back_to = str((row.detail or {}).get("from_level", row.level))
    save_membership(conn, row.member_id, row.program_id, row.club_id, now, level=back_to)
    version = catalog.in_force(row.program_id, at) or catalog.versions(row.program_id)[-1]
    club = version.program.clubs.get(row.club_id)
    level = None if club is None else club.level(back_to)
    if level is None:
        return
    for due in open_charges(conn, row.member_id, row.program_id, row.club_id):
        if due.kind == "renewal" and due.level == row.level:
            set_charge(conn, due.id, now, level=back_to, amount_minor=level.fee_minor,
                       detail={**(due.detail or {}), "repriced_by_return": row.id})
