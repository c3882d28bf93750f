"""Behavioural x attitudinal loyalty, pure: the 2x2 of Dick and Basu's loyalty types.

Behaviourally loyal: an F score at or above `f_at_least`, or (when the program sets
`wallet_share_at_least`) a share of wallet at or above it. Attitudinally loyal: the latest
NPS answer (0-10) at or above `nps_at_least`, or the latest commitment answer (1-7) at or
above `commitment_at_least`. Then:

| | attitude | no attitude |
|---|---|---|
| behaviour | true | spurious |
| no behaviour | latent | none |

A member who has answered neither question has an unknown attitude: counted apart, never
in a cell (split by behaviour, so the survey's reach can be judged)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Literal

from loyalty_engine.rules.compiled_insights import MatrixThresholds

LoyaltyType = Literal["true", "latent", "spurious", "none", "unknown"]
CELLS: tuple[LoyaltyType, ...] = ("true", "latent", "spurious", "none")
SURVEY_KINDS = ("nps", "commitment")
SCORE_RANGES = {"nps": (0, 10), "commitment": (1, 7)}


def check_score(kind: str, score: int) -> None:
    """ValueError unless the kind is known and the score in its range."""
    if kind not in SCORE_RANGES:
        raise ValueError(f"kind {kind!r} is not one of {', '.join(SURVEY_KINDS)}")
    low, high = SCORE_RANGES[kind]
    if not low <= score <= high:
        raise ValueError(f"{kind} scores are {low} to {high}, not {score}")


@dataclass(frozen=True, slots=True)
class Answer:
    """One attitudinal answer."""

    member_id: str
    kind: str  # nps | commitment
    score: int
    answered_at: datetime


def latest_answers(answers: Iterable[Answer], as_of: datetime
                   ) -> dict[str, dict[str, int]]:
    """Each member's latest score of each kind answered by as_of: member -> kind -> score."""
    latest: dict[tuple[str, str], Answer] = {}
    for answer in answers:
        if answer.answered_at > as_of:
            continue
        key = (answer.member_id, answer.kind)
        held = latest.get(key)
        if held is None or answer.answered_at > held.answered_at:
            latest[key] = answer
    found: dict[str, dict[str, int]] = {}
    for (member, kind), answer in latest.items():
        found.setdefault(member, {})[kind] = answer.score
    return found


def behaviourally_loyal(f_score: int, wallet_share: Fraction | None,
                        thresholds: MatrixThresholds) -> bool:
    """F at or above its threshold, or the share of wallet at or above its own (if set)."""
    if f_score >= thresholds.f_at_least:
        return True
    limit = thresholds.wallet_share_at_least
    return limit is not None and wallet_share is not None and wallet_share >= limit


def attitudinally_loyal(nps: int | None, commitment: int | None,
                        thresholds: MatrixThresholds) -> bool | None:
    """Either latest answer at or above its threshold; None when neither was answered."""
    if nps is None and commitment is None:
        return None
    return ((nps is not None and nps >= thresholds.nps_at_least)
            or (commitment is not None and commitment >= thresholds.commitment_at_least))


def loyalty_type(behavioural: bool, attitudinal: bool | None) -> LoyaltyType:
    """The cell of the 2x2 (unknown without an attitude)."""
    if attitudinal is None:
        return "unknown"
    if behavioural:
        return "true" if attitudinal else "spurious"
    return "latent" if attitudinal else "none"


@dataclass(frozen=True, slots=True)
class MemberLoyalty:
    """A member's figures and the loyalty type they make."""

    member_id: str
    f: int  # 0: no purchases
    wallet_share: Fraction | None
    nps: int | None
    commitment: int | None
    behavioural: bool
    attitudinal: bool | None
    type: LoyaltyType


def classify(member_id: str, f: int, wallet_share: Fraction | None, nps: int | None,
             commitment: int | None, thresholds: MatrixThresholds) -> MemberLoyalty:
    """One member placed in the matrix."""
    behaviour = behaviourally_loyal(f, wallet_share, thresholds)
    attitude = attitudinally_loyal(nps, commitment, thresholds)
    return MemberLoyalty(member_id, f, wallet_share, nps, commitment, behaviour, attitude,
                         loyalty_type(behaviour, attitude))


@dataclass(frozen=True, slots=True)
class MatrixCounts:
    """Members per cell, and those of unknown attitude apart (with and without loyal
    behaviour)."""

    true: int
    latent: int
    spurious: int
    none: int
    unknown_behavioural: int
    unknown_not_behavioural: int

    @property
    def known(self) -> int:
        """Members in a cell."""
        return self.true + self.latent + self.spurious + self.none

    @property
    def unknown(self) -> int:
        """Members without an answer."""
        return self.unknown_behavioural + self.unknown_not_behavioural

    def share(self, cell: LoyaltyType) -> Fraction | None:
        """A cell's share of the members in a cell (None when none is)."""
        count = {"true": self.true, "latent": self.latent, "spurious": self.spurious,
                 "none": self.none}[cell]
        return Fraction(count, self.known) if self.known else None


def count(members: Sequence[MemberLoyalty]) -> MatrixCounts:
    """The matrix's counts."""
    def n(kind: LoyaltyType) -> int:
        return sum(1 for m in members if m.type == kind)

    unknown = [m for m in members if m.type == "unknown"]
    behaving = sum(1 for m in unknown if m.behavioural)
    return MatrixCounts(n("true"), n("latent"), n("spurious"), n("none"), behaving,
                        len(unknown) - behaving)
