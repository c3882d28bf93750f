"""The expire step whole: points, vouchers and stamps past their expiry, in one transaction.
`loyalty points expire` and the scheduler's `expire` job both run this, so by hand or on
schedule the same things expire with the same ledger entries and member events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from loyalty_engine.engine.catalog import VersionInForce
from loyalty_engine.records.events import Event, record_events
from loyalty_engine.services.points import StepResult, expire_points
from loyalty_engine.services.reward_expiry import RewardExpiryResult, expire_rewards
from loyalty_engine.store.unit_of_work import write_use_case


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


@write_use_case
def expire_due(conn: Connection, as_of: datetime, now: datetime,
               program_id: str | None = None,
               since: datetime | None = None, *,
               versions: list[VersionInForce] | None = None) -> ExpiryResult:
    """Expire every lot whose expiry came by as_of, mark vouchers past their validity
    expired and record stamps lapsed by as_of's local day (after since's, given the
    previous run's instant; without it, all of them). Everything has a natural key, so
    running it again changes nothing. All three in the caller's one transaction: a step
    killed half-way leaves none of it done."""
    points = expire_points(conn, as_of, program_id)
    # A balance lapsed without activity is a member event (once: its natural key).
    record_events(conn, [Event(f"balance_lapsed:{program}:{member}:{at.isoformat()}",
                               "balance_lapsed", member, program, at,
                               {"points": expired, "lapsed_at": at.isoformat()})
                         for (member, program, at), expired in sorted(points.lapsed.items())],
                  now)
    rewards = expire_rewards(conn, as_of, now, program_id, since, versions=versions)
    return ExpiryResult(points, rewards)
