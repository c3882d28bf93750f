"""Planning a purchase: which programs it enrols in and earns under, and the awards (pure).

A plan carries only plain values (ids, numbers, the reason as JSON text), so plans can be
made in another process and sent back cheaply; `services.purchases` writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from pydantic_core import to_json

from loyalty_engine.domain.purchases import Purchase
from loyalty_engine.engine.catalog import ProgramCatalog
from loyalty_engine.engine.earning import evaluate_purchase


class PlannedAward(NamedTuple):
    """Points one rule of one program version gives the purchase, with the reason."""

    version_id: int
    program_id: str
    version: int
    rule_id: str
    points: int
    reason_json: str


@dataclass(slots=True)
class PurchasePlan:
    """What recording a purchase would do, before the database says whether it is new."""

    ref: int
    purchase: Purchase
    enrol: tuple[str, ...]
    awards: tuple[PlannedAward, ...]


@dataclass(slots=True)
class PlanRejection:
    """A purchase that cannot be accepted under the programs in force, and why."""

    ref: int
    purchase: Purchase
    reason: str


def plan_purchase(catalog: ProgramCatalog, ref: int,
                  purchase: Purchase) -> PurchasePlan | PlanRejection:
    """Plan one purchase under the program versions in force at its occurred_at.

    A purchase earns in the programs of its currency; if programs are in force but none in
    its currency, it is rejected (anonymous or not: it is a data error). Anonymous
    purchases earn nothing. Open programs enrol every purchasing member.
    """
    in_force = catalog.all_in_force(purchase.occurred_at)
    earning = [v for v in in_force if v.program.currency == purchase.currency]
    if in_force and not earning:
        programs = ", ".join(f"{v.program_id} ({v.program.currency})" for v in in_force)
        return PlanRejection(ref, purchase, f"currency {purchase.currency} does not match any "
                                            f"program in force: {programs}")
    if purchase.member_id is None:
        return PurchasePlan(ref, purchase, (), ())
    awards = tuple(
        PlannedAward(version.id, version.program_id, version.version, decision.rule_id,
                     decision.points, to_json(decision.reason).decode())
        for version in earning
        for decision in evaluate_purchase(version.program, purchase)
    )
    enrol = tuple(v.program_id for v in in_force if v.program.enrolment == "open")
    return PurchasePlan(ref, purchase, enrol, awards)
