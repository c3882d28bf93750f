"""A member's standing in a program, judged purely: effective tier, perks, clubs, groups,
benefit multipliers, upgrades at purchase and the decision of a tier review."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from fractions import Fraction
from typing import Any

from loyalty_engine.domain.decisions import MemberView, Standing, TierChange
from loyalty_engine.rules.compiled import CompiledProgram
from loyalty_engine.rules.compiled_membership import Credit, TierLadder, Window

Progress = dict[tuple[str, str], int]


@dataclass(frozen=True, slots=True)
class MemberFacts:
    """What a member enjoys in one program at one instant."""

    tier: str  # effective: the earned tier, or an operator's floor while it lasts
    perks: frozenset[str]
    clubs: dict[str, str]  # active club -> level
    groups: frozenset[str]
    consents: frozenset[str]
    benefits: tuple[tuple[str, Fraction], ...]  # ("tier:gold", 3/2), ("club:students", 11/10)


NOBODY = MemberFacts("", frozenset(), {}, frozenset(), frozenset(), ())


def effective_tier(ladder: TierLadder | None, standing: Standing, at: datetime) -> str:
    """The earned tier, raised to the operator's manual tier while that has not expired."""
    if ladder is None:
        return ""
    tier = standing.tier if ladder.step(standing.tier) is not None else ""
    manual = standing.manual_tier
    if manual and ladder.step(manual) is not None and (
        standing.manual_until is None or at < standing.manual_until
    ):
        tier = ladder.higher(manual, tier)
    return tier


def member_facts(program: CompiledProgram, member: MemberView | None, at: datetime,
                 day: date) -> MemberFacts:
    """Tier, perks, clubs, groups and benefit multipliers of a member at an instant."""
    if member is None:
        return NOBODY
    standing = member.standings.get(program.program_id) or Standing()
    ladder = program.tiers
    tier = effective_tier(ladder, standing, at)
    perks: set[str] = set()
    benefits: list[tuple[str, Fraction]] = []
    step = None if ladder is None else ladder.step(tier)
    if step is not None:
        perks |= step.perks
        if step.multiplier is not None:
            benefits.append((f"tier:{tier}", step.multiplier))
    groups = {g for g in standing.verified if g in program.groups
              and (g not in standing.verified_until or at < standing.verified_until[g])}
    groups |= {g.group_id for g in program.groups.values()
               if g.eligible_by_age(member.attributes, day)}
    clubs: dict[str, str] = {}
    for club_id, level in sorted(standing.clubs.items()):
        club = program.clubs.get(club_id)
        if club is None:
            continue
        since, until = standing.club_since.get(club_id), standing.club_until.get(club_id)
        if (since is not None and at < since) or (until is not None and at >= until):
            continue  # not a member when this purchase was made
        if club.kind == "affinity" and club.group not in groups:
            continue  # out of its group then: the club's benefits ended with the group's
        clubs[club_id] = level
        multiplier, club_perks = club.benefits(level)
        perks |= club_perks
        if multiplier is not None:
            label = f"club:{club_id}" + (f"/{level}" if level else "")
            benefits.append((label, multiplier))
    return MemberFacts(tier, frozenset(perks), clubs, frozenset(groups),
                       member.consents_at(at), tuple(benefits))


def credit_in(progress: Progress, counter: str, window: Window) -> int:
    """The qualifying credit a member holds in a window (counters kept by local date)."""
    start, end = window.start.isoformat(), window.end.isoformat()
    return sum(value for (name, period), value in progress.items()
               if name == counter and start <= period < end)


def credits_in(progress: Progress, ladder: TierLadder, window: Window) -> Credit:
    """A member's credit per measure of a ladder in a window: sums, but for days the
    number of days whose purchases are not all refunded."""
    start, end = window.start.isoformat(), window.end.isoformat()
    found = []
    for measure in ladder.measures:
        if measure.kind == "days":
            found.append(sum(1 for (name, period), value in progress.items()
                             if name == measure.counter and start <= period < end
                             and value > 0))
        else:
            found.append(credit_in(progress, measure.counter, window))
    return tuple(found)


def credit_detail(ladder: TierLadder, credit: Credit) -> int | dict[str, int]:
    """Credit as a tier history shows it: the number of a single measure (as before), or
    per measure name."""
    if len(ladder.measures) == 1:
        return credit[0]
    return {m.name: value for m, value in zip(ladder.measures, credit, strict=True)}


def judge_purchase(program: CompiledProgram, standing: Standing, progress: Progress,
                   day: date) -> TierChange | None:
    """After a purchase counted its credit: the member's first tier, or an upgrade at once
    when the window's credit reaches a higher threshold. Updates standing in place."""
    ladder = program.tiers
    if ladder is None:
        return None
    if standing.enrolled_on is None:
        standing.enrolled_on = day
    window = ladder.current_window(day, standing.enrolled_on)
    credit = credits_in(progress, ladder, window)
    reached = ladder.qualified(credit)
    current = standing.tier if ladder.step(standing.tier) is not None else ""
    if standing.has_tier_row and ladder.rank(reached) <= ladder.rank(current):
        return None
    if not standing.has_tier_row and not reached:
        return None
    held = (ladder.held_until(day, standing.enrolled_on)
            if ladder.downgrade == "hold_next_period" else None)
    reason = "upgrade" if standing.has_tier_row else "enrolment"
    before = standing.held_until
    change = TierChange(program.program_id, current, reached, reason, held,
                        {"credit": credit_detail(ladder, credit), "measure": ladder.measure,
                         "window": [window.start.isoformat(), window.end.isoformat()],
                         "threshold": _threshold(ladder, reached),
                         "held_before": None if before is None else before.isoformat()},
                        base=None if standing.has_tier_row else ladder.qualified(0),
                        up=True if standing.has_tier_row else None)
    standing.tier = reached
    standing.held_until = held
    standing.has_tier_row = True
    return change


def review_tier(ladder: TierLadder, tier: str, held_until: date | None, credit: Credit | int,
                review_day: date, enrolled_on: date) -> tuple[str, date | None, str]:
    """The earned tier after a review: (tier, held until, why).

    Up or level: the qualified tier, its hold renewed from the window just judged. Down:
    not while a hold lasts; otherwise to the qualified tier, or one level at most."""
    current = tier if ladder.step(tier) is not None else ""
    qualified = ladder.qualified(credit)
    hold = ladder.downgrade == "hold_next_period"
    if ladder.rank(qualified) >= ladder.rank(current):
        held = (ladder.held_until(review_day - _DAY, enrolled_on) if hold and qualified
                else None)
        why = "qualified" if qualified == current else "qualified higher"
        return qualified, held, why
    if hold and held_until is not None and review_day < held_until:
        return current, held_until, "held"
    if ladder.downgrade == "one_level":
        return ladder.higher(qualified, ladder.one_below(current)), None, "one level down"
    # Under hold_next_period the lower tier was itself earned in the window just judged,
    # so it holds through the next period like any other.
    held = ladder.held_until(review_day - _DAY, enrolled_on) if hold and qualified else None
    return qualified, held, "not requalified"


def _threshold(ladder: TierLadder, tier_id: str) -> int | dict[str, int]:
    step = ladder.step(tier_id)
    if len(ladder.measures) > 1:
        needs = (0,) * len(ladder.measures) if step is None else step.needs
        return {m.name: need for m, need in zip(ladder.measures, needs, strict=True)}
    return 0 if step is None else step.threshold


def fact_data(facts: MemberFacts) -> dict[str, Any]:
    """The member's standing for CEL conditions."""
    return {"member.tier": facts.tier, "member.clubs": sorted(facts.clubs),
            "member.perks": sorted(facts.perks), "member.groups": sorted(facts.groups),
            "member.consents": sorted(facts.consents)}


_DAY = timedelta(days=1)
