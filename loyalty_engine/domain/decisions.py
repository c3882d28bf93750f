"""What the engine decides about an event: ledger effects, each with the reason behind it."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import date, datetime
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


class TierChange(NamedTuple):
    """A member's earned tier in a program changes (an upgrade at purchase, most often)."""

    program_id: str
    from_tier: str
    to_tier: str
    reason: str  # enrolment | upgrade | review | refund | manual
    held_until: date | None  # hold_next_period: no review lowers it before this local date
    detail: dict[str, Any]
    # At enrolment: the tier a refund may fall back to (what zero credit qualifies for).
    base: str | None = None
    up: bool | None = None  # up or down the ladder; None: neither (an enrolment)


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
    tier_change: TierChange | None = None


class Snapshot(NamedTuple):
    """A member's stored RFM snapshot in one program (rfm_snapshots): in force from the
    instant its figures are as of until the next one's."""

    taken_at: datetime
    as_of_date: date
    r: int
    f: int
    m: int
    segment: str
    clv_minor: int | None  # None: no figure (the CLV part did not value the member)
    p_alive: float | None


@dataclass(slots=True)
class Standing:
    """A member's place in one program: tier, clubs and verified groups.

    Planning updates it in place (an upgrade, a club joined on the first purchase), so that
    the member's next purchase in the same batch sees it.
    """

    tier: str = ""  # the tier earned by credit ('' without one)
    held_until: date | None = None
    manual_tier: str = ""  # an operator's floor, until manual_until
    manual_until: datetime | None = None
    has_tier_row: bool = False
    enrolled_on: date | None = None  # local date; anniversaries count from it
    clubs: dict[str, str] = field(default_factory=dict)  # club -> level ('' if none)
    # When each club's benefits began and ended (absent: always; a purchase posted late
    # earns with the memberships it was made under).
    club_since: dict[str, datetime] = field(default_factory=dict)
    club_until: dict[str, datetime] = field(default_factory=dict)
    known_clubs: frozenset[str] = frozenset()  # any membership row, even ended
    verified: frozenset[str] = frozenset()  # groups with a verification (lapsed or not)
    # When each verification ends (absent: never). Its benefits stop then, whether or not
    # the clubs job has recorded the lapse yet; a purchase made before still had them.
    verified_until: dict[str, datetime] = field(default_factory=dict)
    # The member's RFM snapshots in the program, by taken_at (loaded only for programs
    # that read them): each purchase sees the one in force when it was made.
    snapshots: list[Snapshot] = field(default_factory=list)

    def snapshot_at(self, at: datetime) -> Snapshot | None:
        """The snapshot in force at an instant: the latest taken at or before it."""
        index = bisect_right(self.snapshots, at, key=lambda s: s.taken_at)
        return self.snapshots[index - 1] if index else None


@dataclass(slots=True)
class MemberView:
    """What conditions may know about a member: attributes, consents, and per program the
    tier, clubs and groups (`standings`)."""

    member_id: str
    attributes: dict[str, Any] = field(default_factory=dict)
    consents: frozenset[str] = frozenset()  # consents given, whenever asked
    standings: dict[str, Standing] = field(default_factory=dict)
    # Consents with the span they hold for: [given, withdrawn) (either end may be open).
    consent_spans: dict[str, tuple[datetime | None, datetime | None]] = field(
        default_factory=dict)
    # Known only where a program enrols explicitly: the programs the member is enrolled in,
    # and whether the member was unknown before the purchase.
    enrolled: frozenset[str] = frozenset()
    unknown: bool = False

    def consents_at(self, at: datetime) -> frozenset[str]:
        """The consents in force at an instant."""
        spans = {flag for flag, (start, end) in self.consent_spans.items()
                 if (start is None or start <= at) and (end is None or at < end)}
        return self.consents | spans

    def standing(self, program_id: str) -> Standing:
        """The member's standing in a program (empty for a newcomer)."""
        found = self.standings.get(program_id)
        if found is None:
            found = self.standings[program_id] = Standing()
        return found
