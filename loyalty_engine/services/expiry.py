"""The expire step whole: points, vouchers and stamps past their expiry, in one transaction.
`loyalty points expire` and the scheduler's `expire` job both run this, so by hand or on
schedule the same things expire with the same ledger entries and member events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from loyalty_engine.services.points import StepResult, expire_points
from loyalty_engine.services.reward_expiry import RewardExpiryResult, expire_rewards
from loyalty_engine.store.database import enclosing
from loyalty_engine.store.retry import retry_transient


@dataclass(slots=True)
class ExpiryResult:
    """What one expire step did: lots of points, and vouchers and stamps."""

    points: StepResult
    rewards: RewardExpiryResult

    def as_json(self) -> dict[str, Any]:
        """Plain counts, for --json and the scheduler's job report."""
        return {"lots_expired": self.points.lots,
                "points_expired_by_program": self.points.by_program,
                "members_with_points_expired": self.points.members,
                **self.rewards.as_json()}


def expire_due(engine: Engine, as_of: datetime, now: datetime,
               program_id: str | None = None,
               since: datetime | None = None) -> ExpiryResult:
    """Expire every lot whose expiry came by as_of, mark vouchers past their validity
    expired and record stamps lapsed by as_of's local day (after since's, given the
    previous run's instant; without it, all of them). Everything has a natural key, so
    running it again changes nothing."""

    def attempt() -> ExpiryResult:
        # One commit for all three: a step killed half-way leaves none of it done.
        with enclosing(engine):
            points = expire_points(engine, as_of, program_id)
            rewards = expire_rewards(engine, as_of, now, program_id, since)
        return ExpiryResult(points, rewards)

    return retry_transient(attempt)
