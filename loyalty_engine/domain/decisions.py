"""What the engine decides about an event: ledger effects, each with the reason behind it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class EarnPoints:
    """Award points to the purchase's member under one rule of one program version."""

    program_id: str
    rule_id: str
    points: int
    reason: dict[str, Any] = field(default_factory=dict)
