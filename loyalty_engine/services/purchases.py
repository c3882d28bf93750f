"""Recording purchases: exactly once per (store_id, transaction_id), set-based, with ledger.

One `PurchaseWriter.write` call handles a batch of purchases with a fixed number of
statements, whatever the batch size: look up existing keys, insert members, enrolments,
purchases, items, ledger entries and lots with executemany, and upsert balances.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, select, tuple_

from loyalty_engine.domain.decisions import EarnPoints
from loyalty_engine.domain.events import PurchaseEvent
from loyalty_engine.domain.purchases import Purchase
from loyalty_engine.engine.earning import evaluate_purchase
from loyalty_engine.services.errors import PurchaseConflictError, PurchaseRejectedError
from loyalty_engine.services.programs import ProgramCatalog, VersionInForce, load_catalog
from loyalty_engine.store.database import write_transaction
from loyalty_engine.store.sql import chunked, insert_for
from loyalty_engine.store.tables import (
    Balance,
    Enrolment,
    LedgerEntry,
    Member,
    PointLot,
    ProgramVersion,
)
from loyalty_engine.store.tables import Purchase as PurchaseRow
from loyalty_engine.store.tables import PurchaseItem as PurchaseItemRow

_members = Member.__table__
_enrolments = Enrolment.__table__
_purchases = PurchaseRow.__table__
_items = PurchaseItemRow.__table__
_ledger = LedgerEntry.__table__
_lots = PointLot.__table__
_balances = Balance.__table__


@dataclass(frozen=True, slots=True)
class Award:
    """Points one rule of one program version gave a purchase."""

    program_id: str
    program_version: int
    rule_id: str
    points: int


@dataclass(frozen=True, slots=True)
class PurchaseOutcome:
    """The result of recording a purchase; a replay returns the original purchase's awards."""

    purchase_id: int
    store_id: str
    transaction_id: str
    member_id: str | None
    replayed: bool
    awards: tuple[Award, ...]

    @property
    def points(self) -> int:
        """Total points the purchase earned across programs."""
        return sum(a.points for a in self.awards)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A purchase of a batch that was not recorded, with the reason."""

    ref: Hashable
    store_id: str
    transaction_id: str
    reason: str


@dataclass(slots=True)
class BatchResult:
    """What one batch did: outcomes of accepted purchases (new or replayed) and rejections."""

    outcomes: list[tuple[Hashable, PurchaseOutcome]]
    rejections: list[Rejection]


def record_purchase(engine: Engine, event: PurchaseEvent, now: datetime) -> PurchaseOutcome:
    """Record one purchase; the same event again returns the original outcome unchanged.

    Raises PurchaseConflictError when the key was recorded with a different body and
    PurchaseRejectedError when the purchase cannot be accepted.
    """
    purchase = event.to_purchase()
    with write_transaction(engine) as conn:
        writer = PurchaseWriter(conn, load_catalog(conn), now)
        result = writer.write([(0, purchase)])
        if result.rejections:
            rejection = result.rejections[0]
            if rejection.reason == _CONFLICT:
                raise PurchaseConflictError(purchase.store_id, purchase.transaction_id)
            raise PurchaseRejectedError(rejection.reason)
        outcome = result.outcomes[0][1]
        if outcome.replayed:
            outcome = _with_stored_awards(conn, outcome)
        return outcome


_CONFLICT = "already recorded with different contents"


class PurchaseWriter:
    """Writes batches of purchases inside the caller's transaction."""

    def __init__(self, conn: Connection, catalog: ProgramCatalog, now: datetime) -> None:
        self.conn = conn
        self.catalog = catalog
        self.now = now

    def write(self, batch: Sequence[tuple[Hashable, Purchase]]) -> BatchResult:
        """Record a batch; duplicates of stored or earlier purchases are replays or conflicts."""
        result = BatchResult([], [])
        fresh: dict[tuple[str, str], tuple[Hashable, Purchase]] = {}
        for ref, purchase in batch:
            earlier = fresh.get(purchase.key)
            if earlier is None:
                fresh[purchase.key] = (ref, purchase)
            elif earlier[1].body_hash == purchase.body_hash:
                result.outcomes.append((ref, _replay(purchase, -1)))
            else:
                result.rejections.append(_reject(ref, purchase, f"{_CONFLICT} earlier in the "
                                                                 f"same input ({earlier[0]})"))
        stored = self._stored(list(fresh))
        candidates: list[tuple[Hashable, Purchase]] = []
        for key, (ref, purchase) in fresh.items():
            found = stored.get(key)
            if found is None:
                candidates.append((ref, purchase))
            elif found[1] == purchase.body_hash:
                result.outcomes.append((ref, _replay(purchase, found[0])))
            else:
                result.rejections.append(_reject(ref, purchase, _CONFLICT))
        plans = []
        for ref, purchase in candidates:
            plan = self._plan(ref, purchase)
            if isinstance(plan, Rejection):
                result.rejections.append(plan)
            else:
                plans.append(plan)
        if plans:
            self._store(plans, result)
        return result

    def _stored(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, str]]:
        found: dict[tuple[str, str], tuple[int, str]] = {}
        key_col = tuple_(_purchases.c.store_id, _purchases.c.transaction_id)
        for part in chunked(keys):
            rows = self.conn.execute(
                select(_purchases.c.store_id, _purchases.c.transaction_id, _purchases.c.id,
                       _purchases.c.body_hash).where(key_col.in_(part))
            )
            for store_id, transaction_id, pid, body_hash in rows:
                found[(store_id, transaction_id)] = (pid, body_hash)
        return found

    def _plan(self, ref: Hashable, purchase: Purchase) -> _Plan | Rejection:
        if purchase.member_id is None:
            return _Plan(ref, purchase, [], [])
        in_force = self.catalog.all_in_force(purchase.occurred_at)
        earning = [v for v in in_force if v.program.currency == purchase.currency]
        if in_force and not earning:
            programs = ", ".join(f"{v.program_id} ({v.program.currency})" for v in in_force)
            return _reject(ref, purchase, f"currency {purchase.currency} does not match any "
                                          f"program in force: {programs}")
        decisions = [
            (version, decision)
            for version in earning
            for decision in evaluate_purchase(version.program, purchase)
        ]
        # Open programs enrol every purchasing member, whatever the purchase's currency.
        enrol = [v for v in in_force if v.program.enrolment == "open"]
        return _Plan(ref, purchase, enrol, decisions)

    def _store(self, plans: list[_Plan], result: BatchResult) -> None:
        conn, now = self.conn, self.now
        members = {p.purchase.member_id for p in plans if p.purchase.member_id is not None}
        if members:
            conn.execute(
                insert_for(conn, _members).on_conflict_do_nothing(),
                [{"member_id": m, "created_at": now, "attributes": {}} for m in sorted(members)],
            )
        enrolments: dict[tuple[str, str], datetime] = {}
        for plan in plans:
            member_id = plan.purchase.member_id
            for version in plan.enrol:
                assert member_id is not None
                pair = (member_id, version.program_id)
                first = enrolments.get(pair)
                if first is None or plan.purchase.occurred_at < first:
                    enrolments[pair] = plan.purchase.occurred_at
        if enrolments:
            conn.execute(
                insert_for(conn, _enrolments).on_conflict_do_nothing(),
                [{"member_id": m, "program_id": p, "enrolled_at": at, "source": "auto"}
                 for (m, p), at in sorted(enrolments.items())],
            )
        rows = conn.execute(
            insert_for(conn, _purchases)
            .on_conflict_do_nothing(index_elements=["store_id", "transaction_id"])
            .returning(_purchases.c.store_id, _purchases.c.transaction_id, _purchases.c.id),
            [
                {
                    "store_id": p.purchase.store_id,
                    "transaction_id": p.purchase.transaction_id,
                    "member_id": p.purchase.member_id,
                    "occurred_at": p.purchase.occurred_at,
                    "currency": p.purchase.currency,
                    "total_minor": p.purchase.total_minor,
                    "body_hash": p.purchase.body_hash,
                    "recorded_at": now,
                }
                for p in plans
            ],
        ).all()
        ids = {(s, t): i for s, t, i in rows}
        inserted = [p for p in plans if p.purchase.key in ids]
        raced = [p for p in plans if p.purchase.key not in ids]
        if raced:
            # Another writer committed the same key between our look-up and our insert.
            stored = self._stored([p.purchase.key for p in raced])
            for plan in raced:
                pid, body_hash = stored[plan.purchase.key]
                if body_hash == plan.purchase.body_hash:
                    result.outcomes.append((plan.ref, _replay(plan.purchase, pid)))
                else:
                    result.rejections.append(_reject(plan.ref, plan.purchase, _CONFLICT))
        if not inserted:
            return
        conn.execute(
            _items.insert(),
            [
                {
                    "purchase_id": ids[p.purchase.key],
                    "member_id": p.purchase.member_id,
                    "line_no": item.line_no,
                    "sku": item.sku,
                    "category": item.category,
                    "quantity_milli": item.quantity_milli,
                    "unit_price_minor": item.unit_price_minor,
                    "amount_minor": item.amount_minor,
                }
                for p in inserted
                for item in p.purchase.items
            ],
        )
        self._store_awards(inserted, ids, result)

    def _store_awards(
        self, inserted: list[_Plan], ids: dict[tuple[str, str], int], result: BatchResult
    ) -> None:
        conn, now = self.conn, self.now
        entries = [
            {
                "member_id": p.purchase.member_id,
                "program_id": version.program_id,
                "program_version_id": version.id,
                "kind": "earn",
                "points": decision.points,
                "purchase_id": ids[p.purchase.key],
                "rule_id": decision.rule_id,
                "occurred_at": p.purchase.occurred_at,
                "recorded_at": now,
                "reason": decision.reason,
            }
            for p in inserted
            for version, decision in p.decisions
        ]
        entry_ids: dict[tuple[int, str, str], int] = {}
        if entries:
            returned = conn.execute(
                _ledger.insert().returning(
                    _ledger.c.id, _ledger.c.purchase_id, _ledger.c.program_id, _ledger.c.rule_id
                ),
                entries,
            )
            entry_ids = {(pid, prog, rule): eid for eid, pid, prog, rule in returned}
            conn.execute(
                _lots.insert(),
                [
                    {
                        "entry_id": entry_ids[(e["purchase_id"], e["program_id"], e["rule_id"])],
                        "member_id": e["member_id"],
                        "program_id": e["program_id"],
                        "earned_at": e["occurred_at"],
                        "points": e["points"],
                        "remaining": e["points"],
                        "expires_at": None,
                    }
                    for e in entries
                ],
            )
        deltas: dict[tuple[str, str], int] = defaultdict(int)
        for p in inserted:
            for version in p.enrol:
                assert p.purchase.member_id is not None
                deltas[(p.purchase.member_id, version.program_id)] += 0
            for version, decision in p.decisions:
                assert p.purchase.member_id is not None
                deltas[(p.purchase.member_id, version.program_id)] += decision.points
        if deltas:
            upsert = insert_for(conn, _balances)
            conn.execute(
                upsert.on_conflict_do_update(
                    index_elements=["member_id", "program_id"],
                    set_={
                        "points": _balances.c.points + upsert.excluded.points,
                        "lifetime_earned": _balances.c.lifetime_earned
                        + upsert.excluded.lifetime_earned,
                        "updated_at": upsert.excluded.updated_at,
                    },
                ),
                [
                    {"member_id": m, "program_id": prog, "points": d, "lifetime_earned": d,
                     "updated_at": now}
                    for (m, prog), d in sorted(deltas.items())
                ],
            )
        for p in inserted:
            awards = tuple(
                Award(version.program_id, version.version, decision.rule_id, decision.points)
                for version, decision in p.decisions
            )
            result.outcomes.append(
                (p.ref, PurchaseOutcome(ids[p.purchase.key], p.purchase.store_id,
                                        p.purchase.transaction_id, p.purchase.member_id,
                                        replayed=False, awards=awards))
            )


@dataclass(frozen=True, slots=True)
class _Plan:
    ref: Hashable
    purchase: Purchase
    enrol: list[VersionInForce]
    decisions: list[tuple[VersionInForce, EarnPoints]]


def _replay(purchase: Purchase, purchase_id: int) -> PurchaseOutcome:
    return PurchaseOutcome(purchase_id, purchase.store_id, purchase.transaction_id,
                           purchase.member_id, replayed=True, awards=())


def _reject(ref: Hashable, purchase: Purchase, reason: str) -> Rejection:
    return Rejection(ref, purchase.store_id, purchase.transaction_id, reason)


def _with_stored_awards(conn: Connection, outcome: PurchaseOutcome) -> PurchaseOutcome:
    versions = ProgramVersion.__table__
    rows = conn.execute(
        select(_ledger.c.program_id, versions.c.version, _ledger.c.rule_id, _ledger.c.points)
        .join(versions, versions.c.id == _ledger.c.program_version_id)
        .where(_ledger.c.purchase_id == outcome.purchase_id, _ledger.c.kind == "earn")
        .order_by(_ledger.c.id)
    ).all()
    awards = tuple(Award(r.program_id, r.version, r.rule_id, r.points) for r in rows)
    return PurchaseOutcome(outcome.purchase_id, outcome.store_id, outcome.transaction_id,
                           outcome.member_id, replayed=True, awards=awards)
