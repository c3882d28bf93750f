"""The redemption request: spend points, buy a reward with points, or use a voucher."""

from __future__ import annotations

import hashlib
from datetime import UTC
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import to_json

from loyalty_engine.domain.events import Identifier, Instant, Key


class RedemptionRequest(BaseModel):
    """One redemption, idempotent on redemption_id; give exactly one of points, reward and
    voucher."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"examples": [
            {"redemption_id": "RD-1", "member_id": "M-42", "program_id": "bean-there",
             "occurred_at": "2026-03-20T10:00:00+01:00", "points": 150},
            {"redemption_id": "RD-2", "member_id": "M-42", "program_id": "bean-there",
             "occurred_at": "2026-03-20T10:00:00+01:00", "reward": "free-coffee"},
        ]},
    )

    redemption_id: Key
    member_id: Identifier
    program_id: Identifier
    occurred_at: Instant
    points: Annotated[int, Field(gt=0, le=10**12)] | None = Field(
        default=None, description="spend this many points")
    reward: Identifier | None = Field(
        default=None, description="buy this reward's voucher at its cost in points")
    voucher: Key | None = Field(default=None, description="use this voucher (its code)")

    @model_validator(mode="after")
    def _one_kind(self) -> RedemptionRequest:
        given = [k for k in ("points", "reward", "voucher") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of points, reward and voucher"
                             + (f" (got {', '.join(given)})" if given else ""))
        return self

    @property
    def kind(self) -> str:
        """points, reward or voucher."""
        return "points" if self.points is not None else (
            "reward" if self.reward is not None else "voucher")

    def body_hash(self) -> str:
        """Hash of the normalised request, to tell a replay from a reused id."""
        body = (self.redemption_id, self.member_id, self.program_id,
                self.occurred_at.astimezone(UTC).isoformat(), self.points, self.reward,
                self.voucher)
        return hashlib.sha256(to_json(body)).hexdigest()
