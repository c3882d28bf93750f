"""Club fees paid by a purchase's fee lines at the till (checked before the purchase is
written, applied after it), and what a paid charge does to its membership."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from loyalty_engine.domain.errors import FeeError
from loyalty_engine.domain.money import format_money
from loyalty_engine.engine.catalog import ProgramCatalog, VersionInForce
from loyalty_engine.engine.planning import FeeLine, PurchasePlan
from loyalty_engine.records.memberships import (
    live_household,
    membership,
    new_charge,
    new_to_club,
    open_charges,
    save_membership,
    set_charge,
    term_end,
)
from loyalty_engine.rules.compiled_membership import CompiledClub


def apply_payment(conn: Connection, row: Any, version: VersionInForce, club: CompiledClub,
                  at: datetime, now: datetime) -> None:
    """What a paid charge does to its membership."""
    member_id, program_id = row.member_id, row.program_id
    if row.kind in ("join", "trial"):
        # The term runs from the payment: benefits apply only while paid.
        months = (row.detail or {}).get("trial_months") if row.kind == "trial" else None
        end = term_end(club, at, version.program.timezone, months)
        set_charge(conn, row.id, now, term_start=at, term_end=end)
        save_membership(conn, member_id, program_id, club.club_id, now, status="active",
                        level=row.level, term_start=at, term_end=end)
    elif row.kind == "renewal":
        save_membership(conn, member_id, program_id, club.club_id, now, status="active",
                        term_end=row.term_end)
    else:
        save_membership(conn, member_id, program_id, club.club_id, now, level=row.level)
        # A renewal raised before the upgrade renews at the new level.
        level = club.level(row.level)
        assert level is not None
        for due in open_charges(conn, member_id, program_id, club.club_id):
            if due.kind == "renewal" and due.level != row.level:
                set_charge(conn, due.id, now, level=row.level, amount_minor=level.fee_minor,
                           detail={**(due.detail or {}), "repriced_by_upgrade": row.id})


@dataclass(slots=True)
class _TillBatch:
    """Fee lines of a batch checked so far: memberships joined and charges paid by them."""

    joined: set[tuple[str, str, str]]
    paid: set[int]


def _till_action(conn: Connection, catalog: ProgramCatalog, member_id: str, line: FeeLine,
                 at: datetime, batch: _TillBatch | None = None) -> tuple[str, Any]:
    """What a till fee line does: ('pay', charge row) or ('join', None); raises FeeError
    with the reason a line would pay nothing or the wrong amount. batch holds what earlier
    lines of the same batch (not yet written) already did."""
    version = catalog.in_force(line.program_id, at)
    assert version is not None  # the line was planned under it
    club = version.program.clubs[line.club_id]
    current = membership(conn, member_id, line.program_id, line.club_id)
    key = (member_id, line.program_id, line.club_id)
    if batch is not None and key in batch.joined:
        raise FeeError(f"line {line.sku!r} would pay a fee of club {club.name!r} again: an "
                       f"earlier fee line already made member {member_id!r} a member")
    if current is None or current.status not in ("pending", "active", "grace"):
        for shared in live_household(conn, line.program_id, line.club_id, secondary=member_id):
            raise FeeError(f"line {line.sku!r} would make member {member_id!r} a member of "
                           f"club {club.name!r}, but they share the membership of "
                           f"{shared.primary_member_id!r} as a household member")
        level = club.level(line.level_id)
        assert level is not None
        # A member new to the club joins at the introductory fee (a trial is joined
        # explicitly: a till line pays a term, not a trial).
        fee = (level.first_fee() if new_to_club(conn, member_id, line.program_id,
                                                line.club_id) else level.fee_minor)
        if line.amount_minor != fee:
            currency = version.program.currency
            raise FeeError(f"line {line.sku!r} pays {format_money(line.amount_minor, currency)}"
                           f" but the {level.name} fee of club {club.name!r} is "
                           f"{format_money(fee, currency)}")
        return "join", None
    for row in open_charges(conn, member_id, line.program_id, line.club_id):
        if batch is not None and row.id in batch.paid:
            continue
        if row.level == line.level_id:
            if row.amount_minor != line.amount_minor:
                raise FeeError(f"line {line.sku!r} pays "
                               f"{format_money(line.amount_minor, row.currency)} but charge "
                               f"{row.id} is for {format_money(row.amount_minor, row.currency)}")
            return "pay", row
    raise FeeError(f"line {line.sku!r} would pay a fee of club {club.name!r}, but member "
                   f"{member_id!r} owes nothing at level {line.level_id!r} "
                   f"({current.status}, level {current.level or '-'})")


def check_till_fees(conn: Connection, catalog: ProgramCatalog,
                    plans: list[PurchasePlan]) -> dict[int, str]:
    """Purchases (by ref) whose fee lines cannot be applied, with the reason."""
    problems: dict[int, str] = {}
    batch = _TillBatch(set(), set())
    for plan in sorted(plans, key=lambda p: p.purchase.occurred_at):
        member_id = plan.purchase.member_id
        if member_id is None:
            continue
        done = _TillBatch(set(batch.joined), set(batch.paid))
        try:
            for line in plan.fee_lines:
                action, row = _till_action(conn, catalog, member_id, line,
                                           plan.purchase.occurred_at, done)
                if action == "join":
                    done.joined.add((member_id, line.program_id, line.club_id))
                else:
                    done.paid.add(row.id)
        except FeeError as exc:
            problems[plan.ref] = str(exc)
            continue
        batch = done  # only a purchase accepted whole counts for the next ones
    return problems


def settle_till_fees(conn: Connection, catalog: ProgramCatalog,
                     inserted: list[tuple[int, PurchasePlan]], now: datetime) -> None:
    """Apply fee lines of recorded purchases: pay the charge they match, or join the club
    at that level with the charge paid at the till."""
    for purchase_id, plan in sorted(inserted, key=lambda item: item[1].purchase.occurred_at):
        member_id = plan.purchase.member_id
        assert member_id is not None
        at = plan.purchase.occurred_at
        for line in plan.fee_lines:
            action, row = _till_action(conn, catalog, member_id, line, at)
            version = catalog.in_force(line.program_id, at)
            assert version is not None
            club = version.program.clubs[line.club_id]
            reference = f"purchase:{purchase_id}"
            if action == "join":
                end = term_end(club, at, version.program.timezone)
                # Raised and paid in the same breath: never due (no fee_due event).
                row = new_charge(conn, member_id, version, club, line.level_id, "join",
                                 line.amount_minor, at, end, at, now, status="paid")
                if row is None:
                    raise FeeError(f"member {member_id!r} already has a joining charge of "
                                   f"club {club.club_id!r} at {at.isoformat()}")
                save_membership(conn, member_id, line.program_id, line.club_id, now,
                                level=line.level_id, status="pending", source="till",
                                joined_at=at, term_start=None, term_end=None,
                                auto_renew=club.auto_renew, ended_at=None)
            set_charge(conn, row.id, now, status="paid", paid_at=at, paid_via="till",
                       paid_ref=reference)
            apply_payment(conn, row, version, club, at, now)
