"""Time-driven point steps, each with an explicit as_of: activating pending points and
expiring lots (loyalty_engine/ledger/steps.py). Both are set-based and safe to run again."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from loyalty_engine import ledger
from loyalty_engine.ledger import StepResult
from loyalty_engine.store.unit_of_work import write_use_case

__all__ = ["StepResult", "activate_pending", "expire_points"]


@write_use_case
def activate_pending(conn: Connection, as_of: datetime,
                     program_id: str | None = None) -> StepResult:
    """Make spendable every pending lot whose return window ended by as_of (and whose
    expiry has not come by then)."""
    return ledger.activate(conn, as_of, program_id)


@write_use_case
def expire_points(conn: Connection, as_of: datetime,
                  program_id: str | None = None) -> StepResult:
    """Expire what remains of every lot whose expiry is at or before as_of, one ledger
    entry per lot (its natural key makes a second run write nothing)."""
    return ledger.expire(conn, as_of, program_id)
