"""Lapse in a non-contractual program: nobody says they leave, so a member counts as lapsed
when the evidence says they have probably gone. Pure.

Two rules, the program file's LapseRule giving the thresholds:

- P(alive): when the CLV model gives the member's probability of still being a customer,
  they are lapsed when P(alive) < p_alive_below.
- gap (programs too small to fit the model, or a member the model gives no figure for):
  gap = the as-of local day - the member's last counted purchase day, in days; lapsed when
  gap > gap_multiple x their mean gap between purchase days ((last day - first day) /
  (distinct purchase days - 1)), or, for a member with one purchase day, when
  gap > default_gap_days.

Each verdict says which rule decided and why, in a sentence."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Literal

from loyalty_engine.rules.compiled_insights import LapseRule

Rule = Literal["p_alive", "gap"]


@dataclass(frozen=True, slots=True)
class Activity:
    """What the lapse rules read of a member: first and last counted purchase days (local)
    and the number of distinct purchase days."""

    member_id: str
    first_day: date
    last_day: date
    days: int

    @property
    def mean_gap_days(self) -> float | None:
        """(last day - first day) / (days - 1); None with one purchase day."""
        if self.days < 2:
            return None
        return (self.last_day - self.first_day).days / (self.days - 1)


@dataclass(frozen=True, slots=True)
class LapseVerdict:
    """Whether a member is lapsed as of a day, by which rule, and why."""

    member_id: str
    lapsed: bool
    rule: Rule
    reason: str
    gap_days: int  # since the last purchase day
    mean_gap_days: float | None
    threshold_days: float | None  # the gap rule's limit (None under the P(alive) rule)
    p_alive: float | None

    def as_json(self) -> dict[str, object]:
        return {"member_id": self.member_id, "lapsed": self.lapsed, "rule": self.rule,
                "reason": self.reason, "gap_days": self.gap_days,
                "mean_gap_days": self.mean_gap_days, "threshold_days": self.threshold_days,
                "p_alive": self.p_alive}


def judge(member: Activity, as_of_day: date, rule: LapseRule,
          p_alive: float | None = None) -> LapseVerdict:
    """One member's verdict: by P(alive) when given, else by the gap rule."""
    gap = (as_of_day - member.last_day).days
    if gap < 0:
        raise ValueError(f"{member.member_id}'s last purchase ({member.last_day}) is after "
                         f"the as-of day {as_of_day}")
    mean = member.mean_gap_days
    if p_alive is not None:
        if not 0.0 <= p_alive <= 1.0:
            raise ValueError(f"P(alive) {p_alive} of {member.member_id} is not in [0, 1]")
        lapsed = p_alive < rule.p_alive_below
        relation = "below" if lapsed else "not below"
        return LapseVerdict(
            member.member_id, lapsed, "p_alive",
            f"P(alive) {p_alive:.3f} is {relation} {rule.p_alive_below:g}",
            gap, mean, None, p_alive)
    if mean is None:
        threshold = float(rule.default_gap_days)
        basis = f"the default {rule.default_gap_days} days (one purchase day)"
    else:
        threshold = rule.gap_multiple * mean
        basis = (f"{rule.gap_multiple:g} x their mean gap of {mean:.1f} days "
                 f"({threshold:.1f} days)")
    lapsed = gap > threshold
    relation = "more than" if lapsed else "not more than"
    return LapseVerdict(
        member.member_id, lapsed, "gap",
        f"{gap} days since the last purchase is {relation} {basis}",
        gap, mean, threshold, None)


def judge_all(members: Iterable[Activity], as_of_day: date, rule: LapseRule,
              p_alive: Mapping[str, float] | None = None) -> dict[str, LapseVerdict]:
    """Every member's verdict: by P(alive) for the members `p_alive` gives a figure for,
    by the gap rule for the others (all of them when p_alive is None)."""
    given = p_alive or {}
    return {m.member_id: judge(m, as_of_day, rule, given.get(m.member_id))
            for m in members}
