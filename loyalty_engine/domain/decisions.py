"""What the engine decides about an event: ledger effects, each with the reason behind it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple


class EarnPoints(NamedTuple):
    """Award points to the purchase's member under one rule of one program version."""

    program_id: str
    rule_id: str
    points: int
    reason: dict[str, Any]


class ProgressDelta(NamedTuple):
    """A change to one of a member's counters: visits, spend, stamps or cap use per period.

    Counters are named `<rule id>:<measure>` (`*:cap` for program-wide caps); period is a
    calendar key (2026-03, 2026-Q1, ...), a local date for stamps, or `all`.
    """

    counter: str
    period: str
    delta: int


class IssueVoucher(NamedTuple):
    """A completed stamp card: the reward to issue and the stamps (by date) it used."""

    rule_id: str
    reward_id: str
    consumed: tuple[tuple[str, int], ...]


@dataclass(slots=True)
class Evaluation:
    """Everything one purchase does under one program version.

    progress is what the purchase earned (journaled, and reversed by a refund); consumed
    are the stamps completed cards used (recorded on their vouchers instead).
    """

    awards: list[EarnPoints] = field(default_factory=list)
    progress: list[ProgressDelta] = field(default_factory=list)
    consumed: list[ProgressDelta] = field(default_factory=list)
    vouchers: list[IssueVoucher] = field(default_factory=list)


@dataclass(slots=True)
class MemberView:
    """What conditions may know about a member (attributes, tier and clubs)."""

    member_id: str
    attributes: dict[str, Any] = field(default_factory=dict)
    tier: str = ""
    clubs: tuple[str, ...] = ()
