"""Earning: which points, progress and vouchers a purchase earns under a compiled program.

Pure: the member's counters come in as a `Progress` (and are advanced in place, so that the
next purchase of the same member sees them); nothing here reads the clock or a database.
"""

from __future__ import annotations

from datetime import date, datetime
from fractions import Fraction
from typing import Any

from loyalty_engine.domain.decisions import (
    EarnPoints,
    Evaluation,
    MemberView,
    ProgressDelta,
    Snapshot,
)
from loyalty_engine.domain.periods import (
    is_membership_year,
    membership_year,
    membership_year_club,
    membership_year_key,
    period_key,
)
from loyalty_engine.domain.purchases import LineItem, Purchase
from loyalty_engine.engine.standing import (
    NOBODY,
    MemberFacts,
    fact_data,
    judge_purchase,
    member_facts,
)
from loyalty_engine.rules import expressions
from loyalty_engine.rules.compiled import (
    WEEKDAYS,
    CompiledCondition,
    CompiledProgram,
    CompiledRule,
    PointsPerSpend,
    Progress,
    round_points,
)
from loyalty_engine.rules.expressions import ExpressionError
from loyalty_engine.rules.expressions import evaluate as evaluate_expression

__all__ = ["Progress", "RuleFailed", "evaluate", "evaluate_purchase", "local_day",
           "round_points", "undo"]


class RuleFailed(Exception):
    """A rule could not be evaluated for this purchase (its expression failed)."""

    def __init__(self, program_id: str, rule_id: str, message: str) -> None:
        super().__init__(f"rule {rule_id!r} of program {program_id!r} failed: {message}")
        self.rule_id = rule_id


def evaluate_purchase(program: CompiledProgram, purchase: Purchase) -> list[EarnPoints]:
    """The points a purchase earns under program for a member with no history."""
    return evaluate(program, purchase, None, {}).awards


class _Facts:
    """What conditions test, computed once per purchase and program; and what rule kinds
    see as they earn (rules.compiled.Earning): the counters and the evaluation so far."""

    __slots__ = (
        "_data",
        "_snapshot",
        "_standing",
        "day",
        "eligible",
        "eligible_minor",
        "local",
        "member",
        "program",
        "progress",
        "purchase",
        "result",
    )

    def __init__(self, program: CompiledProgram, purchase: Purchase,
                 member: MemberView | None, progress: Progress, result: Evaluation) -> None:
        self.program = program
        self.purchase = purchase
        self.member = member
        self.progress = progress
        self.result = result
        self.local = purchase.occurred_at.astimezone(program.timezone)
        self.day = self.local.date()
        self.eligible = [
            item for item in purchase.items
            if item.category not in program.excluded_categories
            and item.sku not in program.excluded_skus
        ]
        self.eligible_minor = sum(item.amount_minor for item in self.eligible)
        self._standing: MemberFacts | None = NOBODY if member is None else None
        self._snapshot: tuple[Snapshot | None] | None = None  # (found,) once looked up
        self._data: dict[str, Any] | None = None

    @property
    def excluded_items(self) -> int:
        """Lines of the purchase the program excludes (a points reason tells them)."""
        return len(self.purchase.items) - len(self.eligible)

    def advance(self, counter: str, period: str, delta: int) -> int:
        """Add delta to a counter of the member's, journaled on the evaluation."""
        return _advance(self.progress, self.result, counter, period, delta)

    def period_key(self, period: str) -> str | None:
        """The key of the period holding the purchase: a calendar key, or the member's
        membership year (from the enrolment, or from a fee club's paid term)."""
        if not is_membership_year(period):
            return period_key(period, self.day)
        return member_period_key(self.program, self.member, period, self.purchase.occurred_at)

    def boosts(self, rule: PointsPerSpend) -> list[tuple[str, CompiledCondition, Fraction]]:
        """The rule's multipliers whose conditions hold, then the member's tier and club
        benefits (which multiply the whole purchase, like a condition-less boost)."""
        factors = []
        for name, condition, value in rule.multipliers:
            chosen = _matching_items(condition, self)
            if chosen is not None and _holds(self.program, rule.rule_id, condition, self,
                                             chosen):
                factors.append((name, condition, value))
        for label, value in (self.standing.benefits if self.program.has_benefits else ()):
            factors.append((label, _EVERYTHING, value))
        return factors

    @property
    def standing(self) -> MemberFacts:
        """The member's tier, clubs, perks, groups and consents then (worked out on first
        use: most purchases meet no condition that asks)."""
        if self._standing is None:
            assert self.member is not None
            self._standing = member_facts(self.program, self.member,
                                          self.purchase.occurred_at, self.day)
        return self._standing

    @property
    def snapshot(self) -> Snapshot | None:
        """The member's RFM snapshot in force when the purchase was made (None: none)."""
        if self._snapshot is None:
            standing = None if self.member is None else self.member.standings.get(
                self.program.program_id)
            self._snapshot = (None if standing is None
                              else standing.snapshot_at(self.purchase.occurred_at),)
        return self._snapshot[0]

    @property
    def segment(self) -> str:
        """The member's segment then ('' without a snapshot)."""
        snapshot = self.snapshot
        return "" if snapshot is None else snapshot.segment

    def tenure_days(self) -> int:
        """Days from the member's enrolment (local date) to the purchase's local date; a
        member enrolled by this very purchase (an open program's first) has 0, as has one
        whose purchase predates the enrolment."""
        if self.member is None:
            return 0
        standing = self.member.standing(self.program.program_id)
        if standing.enrolled_on is None:
            standing.enrolled_on = self.day  # (as member_period_key: enrolled on this day)
        return max(0, (self.day - standing.enrolled_on).days)

    def data(self) -> dict[str, Any]:
        """The CEL context (see rules/expressions.CONTEXT), built on first use."""
        if self._data is None:
            p, m, local = self.purchase, self.member, self.local
            attributes = {} if m is None else m.attributes
            month, birthday = expressions.birthday(attributes)
            level, exponent = self.program.cel_language, self.program.exponent

            def amount(minor: int) -> int | float:
                # Level 2 reads amounts in the currency; level 1 (stored programs) in cents.
                return expressions.major(minor, exponent) if level == 2 else minor

            snapshot = self.snapshot
            clv = 0 if snapshot is None or snapshot.clv_minor is None else snapshot.clv_minor

            self._data = {
                "purchase.total": amount(p.total_minor),
                "purchase.eligible_spend": amount(self.eligible_minor),
                "purchase.total_minor": p.total_minor,
                "purchase.eligible_spend_minor": self.eligible_minor,
                "purchase.currency": p.currency,
                "purchase.store": p.store_id,
                "purchase.tender": p.tender or "",
                "purchase.channel": p.channel or "",
                "purchase.item_count": len(p.items),
                "purchase.categories": [i.category for i in p.items],
                "purchase.skus": [i.sku for i in p.items],
                "purchase.items": [
                    {"sku": i.sku, "category": i.category, "quantity_milli": i.quantity_milli,
                     "amount": amount(i.amount_minor), "amount_minor": i.amount_minor}
                    for i in p.items],
                "member.id": "" if m is None else m.member_id,
                "member.attributes": attributes,
                **fact_data(self.standing),
                "member.segment": self.segment,
                "member.rfm": ({"r": 0, "f": 0, "m": 0} if snapshot is None else
                               {"r": snapshot.r, "f": snapshot.f, "m": snapshot.m}),
                "member.clv": amount(clv),
                "member.clv_minor": clv,
                "member.p_alive": (-1.0 if snapshot is None or snapshot.p_alive is None
                                   else float(snapshot.p_alive)),
                # Only where some condition reads it: otherwise its enrolment is not loaded.
                "member.tenure_days": self.tenure_days() if self.program.reads_tenure else 0,
                "member.birthday_month": month,
                "member.birthday": birthday,
                "store.id": p.store_id,
                "local.date": self.day.isoformat(),
                "local.weekday": WEEKDAYS[self.day.weekday()],
                "local.weekday_number": self.day.isoweekday(),
                "local.hour": local.hour,
                "local.day": local.day,
                "local.month": local.month,
                "local.year": local.year,
            }
        return self._data


def evaluate(program: CompiledProgram, purchase: Purchase, member: MemberView | None,
             progress: Progress) -> Evaluation:
    """Everything the purchase earns under program; progress is advanced in place.

    Rules run in priority order. Of the rules of one group that earn, only the one with the
    most points after its caps stands (stacking is the default, without a group). Caps trim
    awards in the same order. Raises RuleFailed if a condition's expression fails.
    """
    result = Evaluation()
    facts = _Facts(program, purchase, member, progress, result)
    try:
        _evaluate_rules(program, facts, progress, result)
    except RuleFailed:
        undo(progress, result)  # never a half-applied purchase
        raise
    _count_credit(program, facts, progress, result)
    return result


def _count_credit(program: CompiledProgram, facts: _Facts, progress: Progress,
                  result: Evaluation) -> None:
    """Tier-qualifying credit (and a fee waiver's spend) by local date; then the member's
    first tier, or an upgrade the moment the window's credit reaches a higher threshold.
    The purchase itself earned at the tier held before it."""
    ladder = program.tiers
    if facts.member is None or (ladder is None and not program.tracks_spend):
        return
    day = facts.day.isoformat()
    if program.tracks_spend and facts.eligible_minor > 0:
        _advance(progress, result, "*:spend", day, facts.eligible_minor)
    if ladder is None:
        return
    for measure in ladder.measures:
        if measure.kind in ("visits", "days") and facts.eligible_minor > 0:
            # days: the day's purchases with eligible spend; the day counts while above 0.
            _advance(progress, result, measure.counter, day, 1)
        elif measure.kind == "points":
            points = sum(a.points for a in result.awards)
            if points > 0:
                _advance(progress, result, measure.counter, day, points)
        elif measure.kind == "quantity":
            # Priced lines only: a refund takes quantities back by their share of the
            # amount, which a free line does not have.
            milli = sum(item.quantity_milli for item in facts.eligible
                        if item.amount_minor > 0 and measure.selects(item.category, item.sku))
            if milli > 0:
                _advance(progress, result, measure.counter, day, milli)
    standing = facts.member.standing(program.program_id)
    result.tier_change = judge_purchase(program, standing, progress, facts.day)


def undo(progress: Progress, evaluation: Evaluation) -> None:
    """Take an evaluation's counter changes back out of progress."""
    for counter, period, delta in [*evaluation.progress, *evaluation.consumed]:
        value = progress.get((counter, period), 0) - delta
        if value:
            progress[(counter, period)] = value
        else:  # absent and zero mean the same; leave no trace of the undone purchase
            progress.pop((counter, period), None)


def _evaluate_rules(program: CompiledProgram, facts: _Facts, progress: Progress,
                    result: Evaluation) -> None:
    candidates: list[tuple[CompiledRule, int, dict[str, Any]]] = []
    for rule in program.rules:
        items = _matching_items(rule.when, facts)
        if items is None or not _holds(program, rule.rule_id, rule.when, facts, items):
            continue
        spend = (facts.eligible_minor if items is facts.eligible
                 else sum(i.amount_minor for i in items))
        found = rule.earn(facts, items, spend)
        if found is not None:
            if rule.when is not None and rule.when.reads_standing:
                found[1]["because"] = _standing_met(rule.when, facts.standing)
            if _counted_snapshot(rule, found[1]):
                found[1].setdefault("because", {}).update(_segment_met(facts))
            candidates.append((rule, found[0], found[1]))
    taken: set[str] = set()
    for rule, points, reason in candidates:
        if rule.group is not None:
            if rule.group in taken:
                continue
            # Best of the group after caps: a rule its caps leave nothing of loses to one
            # that can still earn. Ties go to the first in evaluation order.
            taken.add(rule.group)
            rivals = [c for c in candidates if c[0].group == rule.group]
            rule, points, reason = max(
                rivals, key=lambda c: _cap_room(program, c[0], facts.day, c[1], progress,
                                                facts))
            reason["group"] = rule.group
        points = _capped(program, rule, facts.day, points, reason, progress, result, facts)
        if points > 0:
            result.awards.append(EarnPoints(program.program_id, rule.rule_id, points, reason))
    # A kind may decide once per period whether it earned (visit and threshold bonuses),
    # whether its points stood, lost their group or were capped away.
    for rule, _, _ in candidates:
        rule.decided(facts)


def _standing_met(when: CompiledCondition, standing: MemberFacts) -> dict[str, Any]:
    """Which of the member's tier, perks, clubs, groups and consents met a condition: the
    benefit a ledger entry owes its points to."""
    met: dict[str, Any] = {}
    if when.tiers:
        met["tier"] = standing.tier
    if when.perks:
        met["perks"] = sorted(when.perks & standing.perks)
    if when.clubs:
        met["clubs"] = sorted(when.clubs & set(standing.clubs))
    if when.groups:
        met["groups"] = sorted(when.groups & standing.groups)
    if when.consents:
        met["consents"] = sorted(when.consents)
    return met


def _counted_snapshot(rule: CompiledRule, reason: dict[str, Any]) -> bool:
    """Whether the member's RFM snapshot decided the points: the rule's condition reads it,
    or a multiplier that counted does."""
    if rule.when is not None and rule.when.reads_snapshot:
        return True
    boosted = reason.get("boosts") or {}
    return any(name in boosted and condition.reads_snapshot
               for name, condition, _ in getattr(rule, "multipliers", ()))


def _segment_met(facts: _Facts) -> dict[str, Any]:
    """The segment a ledger entry owes its points to, and the snapshot it is from: every
    entry that a segment changed says so."""
    snapshot = facts.snapshot
    if snapshot is None:
        return {"segment": ""}
    return {"segment": snapshot.segment, "segment_as_of": snapshot.as_of_date.isoformat()}


def _matching_items(when: CompiledCondition | None, facts: _Facts) -> list[LineItem] | None:
    """The eligible items a rule looks at; None when it selects items and none match."""
    if when is None or not when.item_scoped:
        return facts.eligible
    items = [i for i in facts.eligible if when.selects(i.category, i.sku)]
    return items or None


def _holds(program: CompiledProgram, rule_id: str, when: CompiledCondition | None,
           facts: _Facts, items: list[LineItem]) -> bool:
    if when is None:
        return True
    day = facts.day
    if (when.stores or when.store_prefixes) and not when.covers(facts.purchase.store_id):
        return False
    if when.weekdays and day.weekday() not in when.weekdays:
        return False
    if when.tenders and facts.purchase.tender not in when.tenders:
        return False  # (a purchase that does not say how it was paid meets no tender)
    if when.channels and facts.purchase.channel not in when.channels:
        return False
    if when.starts is not None and day < when.starts:
        return False
    if when.ends is not None and day > when.ends:
        return False
    if when.min_spend_minor is not None and (
        sum(i.amount_minor for i in items) < when.min_spend_minor
    ):
        return False
    if when.tiers and facts.standing.tier not in when.tiers:
        return False
    if when.perks and when.perks.isdisjoint(facts.standing.perks):
        return False
    if when.clubs and when.clubs.isdisjoint(facts.standing.clubs):
        return False
    if when.groups and when.groups.isdisjoint(facts.standing.groups):
        return False
    if when.consents and not when.consents <= facts.standing.consents:
        return False
    if when.segments and facts.segment not in when.segments:
        return False
    if when.expression is not None:
        try:
            return evaluate_expression(when.expression, facts.data())
        except ExpressionError as exc:
            raise RuleFailed(program.program_id, rule_id, str(exc)) from None
    return True


_EVERYTHING = CompiledCondition(frozenset(), frozenset(), frozenset(), frozenset(), None, None,
                                None, frozenset(), None, None)


def _cap_windows(program: CompiledProgram, rule: CompiledRule,
                 day: date, facts: _Facts | None = None) -> list[tuple[str, str, str, int]]:
    """(counter, period kind, period key, limit) of every cap on the rule's awards."""
    windows = [(f"{rule.rule_id}:cap", period, limit) for period, limit in rule.caps]
    windows += [("*:cap", period, limit) for period, limit in program.caps]
    found = []
    for counter, period, limit in windows:
        if is_membership_year(period):
            key = None if facts is None else facts.period_key(period)
            if key is None:
                continue  # (a member always has a year from their enrolment)
            found.append((counter, period, f"my:{key}", limit))  # fits the 32-character key
        else:
            found.append((counter, period, f"{period}:{period_key(period, day)}", limit))
    return found


def member_period_key(program: CompiledProgram, member: MemberView | None, period: str,
                      at: datetime) -> str | None:
    """The key of the membership year holding an instant for a member: from their
    enrolment (an open program's first purchase; a member new in this batch is enrolled
    on the day of their first purchase), or from the first paid term of their membership
    of a fee club, term after term (None while they hold no paid membership of it)."""
    if member is None:
        return None
    day = at.astimezone(program.timezone).date()
    standing = member.standing(program.program_id)
    club_id = membership_year_club(period)
    if club_id is None:
        if standing.enrolled_on is None:
            standing.enrolled_on = day
        return membership_year_key(*membership_year(standing.enrolled_on, day))
    club = program.clubs.get(club_id)
    since = standing.club_since.get(club_id)
    if club is None or not standing.clubs.get(club_id) or since is None or at < since:
        return None
    until = standing.club_until.get(club_id)
    if until is not None and at >= until:
        return None
    anchor = since.astimezone(program.timezone).date()
    return membership_year_key(*membership_year(anchor, day, club.term_months, chained=True))


def _cap_room(program: CompiledProgram, rule: CompiledRule, day: date, points: int,
              progress: Progress, facts: _Facts | None = None) -> int:
    """The points a rule could award now, given what its caps have left (changes nothing)."""
    room = points
    for counter, _, key, limit in _cap_windows(program, rule, day, facts):
        room = min(room, max(0, limit - progress.get((counter, key), 0)))
    return room


def _capped(program: CompiledProgram, rule: CompiledRule, day: date, points: int,
            reason: dict[str, Any], progress: Progress, result: Evaluation,
            facts: _Facts | None = None) -> int:
    """Trim points to what the rule's and the program's caps still allow this period."""
    if not rule.caps and not program.caps:
        return points
    windows = _cap_windows(program, rule, day, facts)
    if not windows:
        return points
    allowed = points
    for counter, period, key, limit in windows:
        used = progress.get((counter, key), 0)
        if limit - used < allowed:
            allowed = max(0, limit - used)
            reason["capped"] = {"by": "program" if counter == "*:cap" else "rule",
                                "per": period, "limit": limit, "before_cap": points}
    if allowed > 0:
        for counter, _, key, _ in windows:
            _advance(progress, result, counter, key, allowed)
    return allowed


def _advance(progress: Progress, result: Evaluation, counter: str, period: str,
             delta: int) -> int:
    value = progress.get((counter, period), 0) + delta
    progress[(counter, period)] = value
    result.progress.append(ProgressDelta(counter, period, delta))
    return value


def local_day(program: CompiledProgram, instant: datetime) -> date:
    """The date in program time of an instant."""
    return instant.astimezone(program.timezone).date()
