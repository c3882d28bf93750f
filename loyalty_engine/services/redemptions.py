"""Redemptions: spend points (first-in-first-out over lots), buy vouchers, use vouchers,
and reverse any of them; each once per redemption_id."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from loyalty_engine import ledger
from loyalty_engine.domain.errors import (
    NotFoundError,
    RedemptionBackdatedError,
    RedemptionConflictError,
    RedemptionRejectedError,
)
from loyalty_engine.domain.redemptions import RedemptionRequest
from loyalty_engine.engine.catalog import ProgramCatalog
from loyalty_engine.records.vouchers import VOUCHER_COLUMNS, voucher_row
from loyalty_engine.services.programs import load_catalog
from loyalty_engine.store import tables
from loyalty_engine.store.bulk import Converters, insert_rows
from loyalty_engine.store.locks import lock_member
from loyalty_engine.store.unit_of_work import write_use_case

_redemptions = tables.redemptions
_vouchers = tables.vouchers
_ledger = tables.ledger_entries
_enrolments = tables.enrolments


@dataclass(slots=True)
class RedemptionOutcome:
    """What a redemption did; a replay (or a repeated reversal) returns the same."""

    redemption_id: str
    member_id: str
    program_id: str
    kind: str
    points: int  # points spent (0 for a voucher)
    voucher: str | None  # the voucher used, or bought
    reversed: bool
    replayed: bool = False
    restored: int | None = None  # after a reversal: points put back (expired lots excepted)


@write_use_case
def redeem(conn: Connection, request: RedemptionRequest, now: datetime,
           allow_backdate: bool = False) -> RedemptionOutcome:
    """Make a redemption recorded at `now`; the same request again returns the first outcome.

    Raises RedemptionBackdatedError (dated further back than the program's
    redemptions.backdate_hours, unless allow_backdate: an operator entering one by hand),
    RedemptionRejectedError (too few spendable points, an unknown, used or expired
    voucher, a reward not for sale) and RedemptionConflictError (the id was used for a
    different redemption).
    """
    return _redeem(conn, request, now, allow_backdate)


def _check_backdating(catalog: ProgramCatalog, request: RedemptionRequest,
                      now: datetime) -> None:
    # The window of the version in force when the redemption is recorded: it is a rule
    # about accepting late arrivals, so an operator who shortens it (after abuse, say)
    # has it hold at once, whatever the redemption's own date.
    version = (catalog.in_force(request.program_id, now)
               or catalog.in_force(request.program_id, request.occurred_at))
    if version is None:
        return  # refused below: the program is not in force
    window = version.program.redemption_backdate
    if request.occurred_at < now - window:
        hours = int(window.total_seconds() // 3600)
        raise RedemptionBackdatedError(
            f"occurred_at {request.occurred_at.isoformat()} is more than {hours} hours "
            f"before the redemption is recorded ({now.isoformat(timespec='seconds')}), the "
            f"longest program {request.program_id!r} waits for an offline till "
            "(redemptions.backdate_hours)")


def _redeem(conn: Connection, request: RedemptionRequest, now: datetime,
            allow_backdate: bool) -> RedemptionOutcome:
    body_hash = request.body_hash()
    stored = _stored(conn, request.redemption_id)
    if stored is None:
        if not lock_member(conn, request.member_id):
            raise RedemptionRejectedError(f"there is no member {request.member_id!r}")
        stored = _stored(conn, request.redemption_id)  # a twin may have committed meanwhile
    if stored is not None:
        if stored.body_hash != body_hash:
            raise RedemptionConflictError(request.redemption_id)
        outcome = _outcome(stored)
        outcome.replayed = True
        return outcome
    member_id, program_id, at = request.member_id, request.program_id, request.occurred_at
    catalog = load_catalog(conn)
    if not allow_backdate:
        _check_backdating(catalog, request, now)
    enrolled = conn.execute(select(_enrolments.c.member_id).where(
        _enrolments.c.member_id == member_id, _enrolments.c.program_id == program_id)).first()
    if enrolled is None:
        raise RedemptionRejectedError(f"member {member_id!r} is not enrolled in program "
                                      f"{program_id!r}")
    version = catalog.in_force(program_id, at)
    if version is None:
        raise RedemptionRejectedError(f"program {program_id!r} is not in force at "
                                      f"{at.isoformat()}")
    conv = Converters(conn)
    points, voucher_code = 0, None
    consumed: dict[str, int] = {}
    if request.voucher is not None:
        voucher_code = request.voucher
        _use_voucher(conn, request, now)
    else:
        if request.points is not None:
            points = request.points
        else:
            reward = version.program.rewards.get(request.reward or "")
            if reward is None:
                known = ", ".join(sorted(version.program.rewards)) or "none"
                raise RedemptionRejectedError(
                    f"program {program_id!r} has no reward {request.reward!r} (rewards: {known})")
            if reward.cost_points is None:
                raise RedemptionRejectedError(f"reward {reward.reward_id!r} cannot be bought "
                                              "with points")
            points = reward.cost_points
        # Points are spent only from lots earned and active when the redemption happened
        # and not expired when it is recorded. Judging expiry at the redemption's own date
        # let a back-dated one spend points that had lapsed by the time it arrived, points
        # the member had already been shown as gone. A lot whose expiry is recorded has
        # nothing left, so it is never taken (even when the step ran early, --allow-future);
        # but judging only by that would make the answer depend on the scheduler's timing:
        # a till that syncs at 00:30 or at 01:30, around a 01:00 expire job, must get the
        # same answer. Hence both: remaining > 0 and expires_at after the recording.
        consumed = ledger.spend(conn, ledger.Spend(
            member_id, program_id, version.id, "redeem", points, at,
            {"redemption_id": request.redemption_id, "reward": request.reward},
            f"redeem:{request.redemption_id}",
            active=version.program.inactivity.kind != "never",
            lapses_at=version.program.inactivity.at(at, version.program.timezone)), now,
            lambda available: RedemptionRejectedError(
                f"member {member_id!r} has {available} spendable points in {program_id!r}; "
                f"{points} are needed"))
        if request.reward is not None:
            reward = version.program.rewards[request.reward]
            voucher_code = f"R-{request.redemption_id}"
            insert_rows(
                conn, _vouchers,
                VOUCHER_COLUMNS,
                [voucher_row(voucher_code, member_id, program_id, version.id, reward, "points",
                             None, None, "{}", conv.when(at),
                             conv.when(at + timedelta(days=reward.valid_days)),
                             conv.when(now))],
            )
    insert_rows(
        conn, _redemptions,
        ("redemption_id", "member_id", "program_id", "kind", "points", "voucher_code",
         "reward_id", "consumed", "body_hash", "occurred_at", "recorded_at"),
        [(request.redemption_id, member_id, program_id, request.kind, points, voucher_code,
          request.reward, Converters.json(consumed), body_hash, conv.when(at),
          conv.when(now))],
    )
    return RedemptionOutcome(request.redemption_id, member_id, program_id, request.kind,
                             points, voucher_code, reversed=False)


def _use_voucher(conn: Connection, request: RedemptionRequest, now: datetime) -> None:
    voucher = conn.execute(select(_vouchers).where(_vouchers.c.code == request.voucher)).first()
    if voucher is None or voucher.member_id != request.member_id or (
        voucher.program_id != request.program_id
    ):
        raise RedemptionRejectedError(f"member {request.member_id!r} has no voucher "
                                      f"{request.voucher!r} in {request.program_id!r}")
    # An expired voucher can still pay for a purchase posted late, made while it was valid.
    if voucher.status not in ("issued", "expired"):
        raise RedemptionRejectedError(f"voucher {request.voucher!r} is {voucher.status} "
                                      "and cannot be used")
    if voucher.issued_at > request.occurred_at:
        raise RedemptionRejectedError(f"voucher {request.voucher!r} was issued at "
                                      f"{voucher.issued_at.isoformat()}, after this redemption")
    if voucher.valid_until <= request.occurred_at:
        raise RedemptionRejectedError(f"voucher {request.voucher!r} expired at "
                                      f"{voucher.valid_until.isoformat()}")
    conn.execute(_vouchers.update().where(_vouchers.c.code == request.voucher).values(
        status="redeemed", redeemed_by=request.redemption_id, changed_at=now))


@write_use_case
def reverse_redemption(conn: Connection, redemption_id: str, now: datetime,
                       at: datetime | None = None) -> RedemptionOutcome:
    """Undo a redemption: points back to the lots they came from (with a ledger entry), a
    bought voucher void, a used voucher usable again. Reversing twice changes nothing.
    `at` dates the reversal in the ledger (default: now)."""
    stored = _stored(conn, redemption_id)
    if stored is None:
        raise NotFoundError(f"there is no redemption {redemption_id!r}")
    lock_member(conn, stored.member_id)
    stored = _stored(conn, redemption_id)
    replayed = stored.reversed_at is not None
    if not replayed:
        _reverse(conn, stored, now, at or now)
    outcome = _outcome(_stored(conn, redemption_id))
    outcome.replayed = replayed
    if outcome.kind != "voucher":
        outcome.restored = int(conn.execute(select(_ledger.c.points).where(
            _ledger.c.kind == "unredeem",
            _ledger.c.ref == f"unredeem:{redemption_id}")).scalar_one())
    return outcome


def _reverse(conn: Connection, stored: Any, now: datetime, at: datetime) -> None:
    if stored.kind == "voucher":
        conn.execute(_vouchers.update().where(_vouchers.c.code == stored.voucher_code).values(
            status="issued", redeemed_by=None, changed_at=now))
    else:
        if stored.kind == "reward":
            voucher = conn.execute(select(_vouchers.c.status).where(
                _vouchers.c.code == stored.voucher_code)).scalar_one()
            if voucher not in ("issued", "expired"):
                raise RedemptionRejectedError(
                    f"voucher {stored.voucher_code!r} bought by this redemption is {voucher}; "
                    "reverse the redemption that used it first")
            conn.execute(_vouchers.update().where(_vouchers.c.code == stored.voucher_code)
                         .values(status="void", changed_at=now))
        # Points whose lots expired meanwhile stay lapsed: they would be gone by now.
        version_id = conn.execute(select(_ledger.c.program_version_id).where(
            _ledger.c.kind == "redeem", _ledger.c.ref == f"redeem:{stored.redemption_id}")
        ).scalar_one()
        ledger.restore(conn, ledger.Restore(
            stored.member_id, stored.program_id, version_id, "unredeem",
            {int(k): v for k, v in stored.consumed.items()}, at,
            f"unredeem:{stored.redemption_id}",
            lambda restored: {"redemption_id": stored.redemption_id,
                              "to_lots": stored.consumed,
                              "lapsed": stored.points - restored}), now)
    conn.execute(_redemptions.update().where(
        _redemptions.c.redemption_id == stored.redemption_id).values(reversed_at=now))


def _stored(conn: Connection, redemption_id: str) -> Any:
    return conn.execute(select(_redemptions).where(
        _redemptions.c.redemption_id == redemption_id)).first()


def _outcome(row: Any) -> RedemptionOutcome:
    return RedemptionOutcome(row.redemption_id, row.member_id, row.program_id, row.kind,
                             row.points, row.voucher_code, reversed=row.reversed_at is not None)
