"""Planning a purchase: which programs it enrols in, its awards, progress and vouchers (pure).

A plan carries only plain values (ids, numbers, the reason as JSON text);
`records.purchase_writer` writes them. State a plan depends on (visit counts, stamps, caps)
comes in a `ProgressBook` that the caller loaded for the batch; planning advances it, so that
purchases of one member in one batch see each other in the order they are planned.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import NamedTuple

from pydantic_core import to_json

from loyalty_engine.domain.decisions import Evaluation, MemberView, Standing, TierChange
from loyalty_engine.domain.purchases import Purchase
from loyalty_engine.engine.catalog import ProgramCatalog
from loyalty_engine.engine.earning import Progress, RuleFailed, evaluate, undo
from loyalty_engine.rules.compiled import CompiledProgram
from loyalty_engine.rules.compiled_membership import CompiledClub


class PlannedAward(NamedTuple):
    """Points one rule of one program version gives the purchase, with the reason."""

    version_id: int
    program_id: str
    version: int
    rule_id: str
    points: int
    reason_json: str
    pending_until: datetime | None = None
    expires_at: datetime | None = None
    # Points earned by a purchase are activity: the balance lapses at lapses_at without more.
    active: bool = False
    lapses_at: datetime | None = None


class PlannedProgress(NamedTuple):
    """A counter change of the purchase's member in one program."""

    program_id: str
    counter: str
    period: str
    delta: int


class PlannedVoucher(NamedTuple):
    """A voucher a completed stamp card issues; consumed lists the stamps it used."""

    version_id: int
    program_id: str
    rule_id: str
    reward_id: str
    seq: int
    consumed_json: str
    valid_until: datetime


@dataclass(slots=True)
class PurchasePlan:
    """What recording a purchase would do, before the database says whether it is new."""

    ref: int
    purchase: Purchase
    enrol: tuple[str, ...]
    awards: tuple[PlannedAward, ...]
    progress: tuple[PlannedProgress, ...] = ()
    consumed: tuple[PlannedProgress, ...] = ()
    vouchers: tuple[PlannedVoucher, ...] = ()
    tier_changes: tuple[TierChange, ...] = ()
    club_joins: tuple[tuple[str, str], ...] = ()  # (program, open club) joined by this purchase
    fee_lines: tuple[FeeLine, ...] = ()


class FeeLine(NamedTuple):
    """A till line that pays a club fee: the club level its SKU names, and the amount."""

    program_id: str
    club_id: str
    level_id: str
    sku: str
    amount_minor: int


@dataclass(slots=True)
class PlanRejection:
    """A purchase that cannot be accepted under the programs in force, and why."""

    ref: int
    purchase: Purchase
    reason: str


@dataclass(slots=True)
class ProgressBook:
    """Members' counters and what conditions know of them, loaded for one batch."""

    progress: dict[tuple[str, str], Progress] = field(default_factory=dict)
    members: dict[str, MemberView] = field(default_factory=dict)

    def of(self, member_id: str, program_id: str) -> Progress:
        """The counters of a member in a program (empty for a newcomer)."""
        found = self.progress.get((member_id, program_id))
        if found is None:
            found = self.progress[(member_id, program_id)] = {}
        return found

    def member(self, member_id: str) -> MemberView:
        """What conditions may know about the member."""
        found = self.members.get(member_id)
        if found is None:
            found = self.members[member_id] = MemberView(member_id)
        return found


def plan_purchase(catalog: ProgramCatalog, ref: int, purchase: Purchase,
                  book: ProgressBook | None = None) -> PurchasePlan | PlanRejection:
    """Plan one purchase under the program versions in force at its occurred_at.

    A purchase earns in the programs that cover its store and have its currency; if such
    programs are in force but none in its currency, it is rejected (anonymous or not: it
    is a data error). Anonymous purchases earn nothing. Open programs enrol every
    purchasing member; explicit ones award only members enrolled in them, and reject the
    purchase of a member nobody knows when no open program sees it. A rule whose
    expression fails rejects the purchase, naming the rule, and changes nothing.
    """
    in_force = catalog.at_store(purchase.occurred_at, purchase.store_id)
    earning = [v for v in in_force if v.program.currency == purchase.currency]
    if in_force and not earning:
        programs = ", ".join(f"{v.program_id} ({v.program.currency})" for v in in_force)
        return PlanRejection(ref, purchase, f"currency {purchase.currency} does not match any "
                                            f"program in force: {programs}")
    member_id = purchase.member_id
    fee_lines = [FeeLine(v.program_id, *v.program.fee_skus[item.sku], item.sku,
                         item.amount_minor)
                 for v in earning if v.program.fee_skus
                 for item in purchase.items if item.sku in v.program.fee_skus]
    if member_id is None:
        if fee_lines:
            return PlanRejection(ref, purchase, f"line {fee_lines[0].sku!r} pays a club fee, "
                                 "which needs the member's id on the purchase")
        return PurchasePlan(ref, purchase, (), ())
    if book is None:
        book = ProgressBook()
    member = book.member(member_id)
    explicit = [v for v in earning if v.program.enrolment == "explicit"]
    if explicit:
        if member.unknown and not any(v.program.enrolment == "open" for v in in_force):
            names = ", ".join(v.program_id for v in explicit)
            return PlanRejection(ref, purchase, f"there is no member {member_id!r}, and "
                                 f"{names} enrols members only explicitly: enrol them first "
                                 "(POST /v1/members, or loyalty members enrol --program)")
        # Members not enrolled in such a program do not earn in it (nor collect stamps).
        earning = [v for v in earning
                   if v.program.enrolment == "open" or v.program_id in member.enrolled]
    # Standing changes (a club joined, a tier reached) are undone if a later program fails
    # (only CEL expressions can fail, so only then is a copy worth keeping).
    before = ({v.program_id: _copy(member.standing(v.program_id)) for v in earning
               if v.program.has_standing}
              if any(v.program.can_fail for v in earning) else {})
    done: list[tuple[Progress, Evaluation]] = []
    awards: list[PlannedAward] = []
    progress: list[PlannedProgress] = []
    consumed: list[PlannedProgress] = []
    vouchers: list[PlannedVoucher] = []
    tier_changes: list[TierChange] = []
    joins: list[tuple[str, str]] = []
    for version in earning:
        program = version.program
        counters = book.of(member_id, version.program_id)
        if program.clubs:
            standing = member.standing(version.program_id)
            joins.extend(_join_open_clubs(program.program_id, program.clubs.values(),
                                          standing, purchase.occurred_at))
            for line in fee_lines:
                # Paying a fee at the till makes the member one for this very purchase.
                if line.program_id == version.program_id:
                    standing.clubs[line.club_id] = line.level_id
                    standing.club_since[line.club_id] = purchase.occurred_at
                    standing.club_until.pop(line.club_id, None)
                    standing.known_clubs = standing.known_clubs | {line.club_id}
        try:
            evaluation = evaluate(program, purchase, member, counters)
        except RuleFailed as exc:
            for earlier_counters, earlier in done:
                undo(earlier_counters, earlier)
            member.standings.update(before)
            return PlanRejection(ref, purchase, str(exc))
        done.append((counters, evaluation))
        if evaluation.tier_change is not None:
            tier_changes.append(evaluation.tier_change)
        when = purchase.occurred_at
        pending = when + timedelta(days=program.pending_days) if program.pending_days else None
        expires = program.expiry.at(when, program.timezone)
        active = program.inactivity.kind != "never"
        lapses = program.inactivity.at(when, program.timezone)
        for decision in evaluation.awards:
            awards.append(PlannedAward(
                version.id, version.program_id, version.version, decision.rule_id,
                decision.points, to_json(decision.reason).decode(), pending, expires,
                active, lapses))
        progress.extend(PlannedProgress(version.program_id, *d) for d in evaluation.progress)
        consumed.extend(PlannedProgress(version.program_id, *d) for d in evaluation.consumed)
        for seq, voucher in enumerate(evaluation.vouchers):
            reward = program.rewards[voucher.reward_id]
            vouchers.append(PlannedVoucher(
                version.id, version.program_id, voucher.rule_id, voucher.reward_id, seq,
                to_json(dict(voucher.consumed)).decode(),
                when + timedelta(days=reward.valid_days)))
    enrol = tuple(v.program_id for v in in_force if v.program.enrolment == "open")
    return PurchasePlan(ref, purchase, enrol, tuple(awards), tuple(progress), tuple(consumed),
                        tuple(vouchers), tuple(tier_changes), tuple(joins), tuple(fee_lines))


def _copy(standing: Standing) -> Standing:
    return replace(standing, clubs=dict(standing.clubs), club_since=dict(standing.club_since),
                   club_until=dict(standing.club_until))


def _join_open_clubs(program_id: str, clubs: Iterable[CompiledClub],
                     standing: Standing, at: datetime) -> list[tuple[str, str]]:
    """Open clubs that enrol on the first purchase, which the member never belonged to
    (one who left is not signed up again by shopping)."""
    joined = []
    for club in clubs:
        if club.joins_on_purchase and club.club_id not in standing.known_clubs:
            standing.clubs[club.club_id] = ""
            standing.club_since[club.club_id] = at
            standing.known_clubs = standing.known_clubs | {club.club_id}
            joined.append((program_id, club.club_id))
    return joined


def needs_progress(catalog: ProgramCatalog, purchases: list[Purchase]
                   ) -> tuple[bool, bool, list[CompiledProgram]]:
    """Whether planning these purchases needs members' counters and their attributes, and
    the programs in force for them (whose standing needs the caller loads)."""
    stateful = uses_member = False
    programs: dict[int, CompiledProgram] = {}
    seen: set[tuple[int, str]] = set()
    for purchase in purchases:
        for version in catalog.all_in_force(purchase.occurred_at):
            # Only the programs that see the purchase's store (a coffee import needs no
            # beauty tiers); each (version, store) is judged once.
            key = (version.id, purchase.store_id)
            if key in seen:
                continue
            seen.add(key)
            if not version.program.covers(purchase.store_id):
                continue
            stateful = stateful or version.program.stateful
            uses_member = uses_member or version.program.uses_member
            programs[version.id] = version.program
    return stateful, uses_member, list(programs.values())
