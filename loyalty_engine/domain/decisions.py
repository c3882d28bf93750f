"""What the engine decides about an event: ledger effects, each with the reason behind it."""

from __future__ import annotations

from typing import Any, NamedTuple


class EarnPoints(NamedTuple):
    """Award points to the purchase's member under one rule of one program version."""

    program_id: str
    rule_id: str
    points: int
    reason: dict[str, Any]
