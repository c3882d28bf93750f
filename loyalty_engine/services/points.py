"""Time-driven point steps, each with an explicit as_of: activating pending points and
expiring lots (loyalty_engine/ledger/steps.py). Both are set-based and safe to run again."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from loyalty_engine.ledger import StepResult, activate, expire
from loyalty_engine.store.database import write_transaction
from loyalty_engine.store.retry import retry_transient

__all__ = ["StepResult", "activate_pending", "expire_points"]


def activate_pending(engine: Engine, as_of: datetime,
                     program_id: str | None = None) -> StepResult:
    """Make spendable every pending lot whose return window ended by as_of."""
    def attempt() -> StepResult:
        with write_transaction(engine) as conn:
            return activate(conn, as_of, program_id)

    return retry_transient(attempt)


def expire_points(engine: Engine, as_of: datetime, program_id: str | None = None) -> StepResult:
    """Expire what remains of every lot whose expiry is at or before as_of, one ledger
    entry per lot (its natural key makes a second run write nothing)."""
    def attempt() -> StepResult:
        with write_transaction(engine) as conn:
            return expire(conn, as_of, program_id)

    return retry_transient(attempt)
