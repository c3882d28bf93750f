"""Recording purchases: exactly once per (store_id, transaction_id), set-based, with ledger.

One `PurchaseWriter.write` call handles a batch of purchases with a fixed number of
statements, whatever the batch size: look up existing keys, insert members, enrolments,
purchases, items, ledger entries and lots with executemany, and upsert balances.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Connection, Engine, select

from loyalty_engine.domain.events import PurchaseEvent
from loyalty_engine.domain.purchases import Purchase
from loyalty_engine.engine.catalog import ProgramCatalog
from loyalty_engine.engine.planning import PlanRejection, PurchasePlan, plan_purchase
from loyalty_engine.services.errors import PurchaseConflictError, PurchaseRejectedError
from loyalty_engine.services.programs import load_catalog
from loyalty_engine.store import tables
from loyalty_engine.store.bulk import Converters, allocate_ids, chunked, insert_rows, select_by_keys
from loyalty_engine.store.database import write_transaction
from loyalty_engine.store.retry import retry_transient

_members = tables.members
_enrolments = tables.enrolments
_purchases = tables.purchases
_items = tables.purchase_items
_ledger = tables.ledger_entries
_lots = tables.point_lots
_balances = tables.balances


class Award(NamedTuple):
    """Points one rule of one program version gave a purchase."""

    program_id: str
    program_version: int
    rule_id: str
    points: int


@dataclass(slots=True)
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

    ref: int
    store_id: str
    transaction_id: str
    reason: str
    conflict: bool = False  # the key was recorded with different contents


@dataclass(slots=True)
class BatchResult:
    """What one batch did: purchases recorded now, replays, and rejections."""

    replays: list[tuple[int, PurchaseOutcome]]
    rejections: list[Rejection]
    recorded: list[tuple[int, PurchasePlan]] = field(default_factory=list)

    @property
    def points(self) -> int:
        """Points awarded by the purchases recorded now."""
        return sum(a.points for _, plan in self.recorded for a in plan.awards)

    @property
    def outcomes(self) -> list[tuple[int, PurchaseOutcome]]:
        """The outcome of every accepted purchase, new or replayed (built on demand: bulk
        imports only count them)."""
        fresh = [
            (plan.ref, PurchaseOutcome(
                pid, plan.purchase.store_id, plan.purchase.transaction_id,
                plan.purchase.member_id, replayed=False,
                awards=tuple(Award(a.program_id, a.version, a.rule_id, a.points)
                             for a in plan.awards),
            ))
            for pid, plan in self.recorded
        ]
        return fresh + self.replays


def record_purchase(engine: Engine, event: PurchaseEvent, now: datetime) -> PurchaseOutcome:
    """Record one purchase; the same event again returns the original outcome unchanged.

    Raises PurchaseConflictError when the key was recorded with a different body and
    PurchaseRejectedError when the purchase cannot be accepted.
    """
    purchase = event.to_purchase()

    def attempt() -> PurchaseOutcome:
        with write_transaction(engine) as conn:
            writer = PurchaseWriter(conn, load_catalog(conn), now)
            result = writer.write([(0, purchase)])
            if result.rejections:
                rejection = result.rejections[0]
                if rejection.conflict:
                    raise PurchaseConflictError(purchase.store_id, purchase.transaction_id)
                raise PurchaseRejectedError(rejection.reason)
            outcome = result.outcomes[0][1]
            if outcome.replayed:
                outcome = _with_stored_awards(conn, outcome)
            return outcome

    return retry_transient(attempt)


_CONFLICT = "already recorded with different contents"


class PurchaseWriter:
    """Writes batches of purchases inside the caller's transaction."""

    def __init__(self, conn: Connection, catalog: ProgramCatalog, now: datetime,
                 defer_balances: bool = False) -> None:
        """defer_balances: keep balance changes until flush_balances() (which the caller
        must call before committing). Long imports use it: on PostgreSQL, updating the same
        balance row once per batch in one transaction grows a chain of row versions that
        every later update walks, which made big imports quadratic."""
        self.conn = conn
        self.catalog = catalog
        self.now = now
        self.convert = Converters(conn)
        # Members and enrolments this writer has already ensured, so that a long import
        # does not re-send them with every batch.
        self._known_members: set[str] = set()
        self._known_enrolments: set[tuple[str, str]] = set()
        self.defer_balances = defer_balances
        self._checked: dict[tuple[str, str], tuple[int, str]] = {}
        self._balance_deltas: defaultdict[tuple[str, str], int] = defaultdict(int)

    def write(self, batch: Sequence[tuple[int, Purchase]]) -> BatchResult:
        """Plan and record a batch of purchases (see write_plans)."""
        return self.write_plans([plan_purchase(self.catalog, ref, p) for ref, p in batch])

    def write_plans(self, batch: Sequence[PurchasePlan | PlanRejection],
                    check_only: bool = False) -> BatchResult:
        """Record planned purchases; duplicates of stored or earlier ones are replays or
        conflicts, and only then does a plan's own rejection count.

        check_only finds the same rejections without writing anything (an all-or-nothing
        import that has already failed keeps reporting problems without doing the work).
        """
        result = BatchResult([], [])
        fresh: dict[tuple[str, str], PurchasePlan | PlanRejection] = {}
        copies: list[PurchasePlan | PlanRejection] = []
        for item in batch:
            purchase = item.purchase
            earlier = fresh.get(purchase.key)
            if earlier is None:
                fresh[purchase.key] = item
            elif earlier.purchase.body_hash == purchase.body_hash:
                copies.append(item)  # shares the first copy's fate, known only below
            else:
                result.rejections.append(_conflict(item.ref, purchase, earlier.ref))
        stored = self._stored(list(fresh))
        plans: list[PurchasePlan] = []
        for key, item in fresh.items():
            found = stored.get(key)
            unwritten = self._checked.get(key)  # only filled while checking
            if found is not None:
                if found[1] == item.purchase.body_hash:
                    result.replays.append((item.ref, _replay(item.purchase, found[0])))
                else:
                    result.rejections.append(_conflict(item.ref, item.purchase))
            elif unwritten is not None:
                if unwritten[1] == item.purchase.body_hash:
                    result.replays.append((item.ref, _replay(item.purchase, -1)))
                else:
                    result.rejections.append(_conflict(item.ref, item.purchase, unwritten[0]))
            elif isinstance(item, PlanRejection):
                result.rejections.append(_reject(item.ref, item.purchase, item.reason))
            else:
                plans.append(item)
        if plans and check_only:
            # Unwritten purchases still clash with later copies: remember their bodies.
            for plan in plans:
                self._checked[plan.purchase.key] = (plan.ref, plan.purchase.body_hash)
                result.recorded.append((-1, plan))
        elif plans:
            # One global order for the rows every writer inserts, so that two writers of
            # overlapping batches wait for each other instead of deadlocking.
            plans.sort(key=lambda plan: plan.purchase.key)
            self._store(plans, result)
        if copies:
            self._settle_copies(copies, fresh, result)
        return result

    @staticmethod
    def _settle_copies(copies: list[PurchasePlan | PlanRejection],
                       first: dict[tuple[str, str], PurchasePlan | PlanRejection],
                       result: BatchResult) -> None:
        """A repeat of a purchase earlier in the same batch gets the first copy's fate."""
        rejected = {(r.store_id, r.transaction_id): r for r in result.rejections}
        ids = {plan.purchase.key: pid for pid, plan in result.recorded}  # -1 when checking
        ids.update({(o.store_id, o.transaction_id): o.purchase_id for _, o in result.replays})
        for copy in copies:
            key = copy.purchase.key
            if key in rejected and rejected[key].ref == first[key].ref:
                reason = f"{rejected[key].reason} (as for {first[key].ref})"
                result.rejections.append(_reject(copy.ref, copy.purchase, reason,
                                                 rejected[key].conflict))
            else:
                result.replays.append((copy.ref, _replay(copy.purchase, ids[key])))

    def flush_balances(self) -> None:
        """Add the points written so far to the cached balances (one upsert per pair)."""
        deltas, self._balance_deltas = self._balance_deltas, defaultdict(int)
        now = self.convert.when(self.now)
        insert_rows(
            self.conn, _balances,
            ("member_id", "program_id", "points", "lifetime_earned", "updated_at"),
            [(m, prog, d, d, now) for (m, prog), d in sorted(deltas.items())],
            on_conflict=["member_id", "program_id"],
            update={
                "points": "balances.points + excluded.points",
                "lifetime_earned": "balances.lifetime_earned + excluded.lifetime_earned",
                "updated_at": "excluded.updated_at",
            },
        )

    def _stored(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, str]]:
        found: dict[tuple[str, str], tuple[int, str]] = {}
        for part in chunked(keys):
            for store_id, transaction_id, pid, body_hash in select_by_keys(
                self.conn, _purchases, ("store_id", "transaction_id"), part,
                ("store_id", "transaction_id", "id", "body_hash"),
            ):
                found[(store_id, transaction_id)] = (pid, body_hash)
        return found

    def _store(self, plans: list[PurchasePlan], result: BatchResult) -> None:
        conn, conv = self.conn, self.convert
        now = conv.when(self.now)
        members = sorted({p.purchase.member_id for p in plans
                          if p.purchase.member_id is not None} - self._known_members)
        insert_rows(conn, _members, ("member_id", "created_at", "attributes"),
                    [(m, now, "{}") for m in members], on_conflict=["member_id"])
        self._known_members.update(members)
        enrolments: dict[tuple[str, str], datetime] = {}
        for plan in plans:
            member_id = plan.purchase.member_id
            for program_id in plan.enrol:
                assert member_id is not None
                pair = (member_id, program_id)
                if pair in self._known_enrolments:
                    continue
                first = enrolments.get(pair)
                if first is None or plan.purchase.occurred_at < first:
                    enrolments[pair] = plan.purchase.occurred_at
        insert_rows(conn, _enrolments, ("member_id", "program_id", "enrolled_at", "source"),
                    [(m, p, conv.when(at), "auto") for (m, p), at in sorted(enrolments.items())],
                    on_conflict=["member_id", "program_id"])
        self._known_enrolments.update(enrolments)
        ids = allocate_ids(conn, _purchases, len(plans))
        inserted_count = insert_rows(
            conn, _purchases,
            ("id", "store_id", "transaction_id", "member_id", "occurred_at", "currency",
             "total_minor", "body_hash", "recorded_at"),
            [(pid, p.purchase.store_id, p.purchase.transaction_id, p.purchase.member_id,
              conv.when(p.purchase.occurred_at), p.purchase.currency, p.purchase.total_minor,
              p.purchase.body_hash, now) for pid, p in zip(ids, plans, strict=True)],
            on_conflict=["store_id", "transaction_id"],
        )
        inserted = list(zip(ids, plans, strict=True))
        if inserted_count != len(plans):
            # Another writer committed some of the same keys between our look-up and our
            # insert (PostgreSQL only: SQLite's write lock excludes it). Theirs stand.
            stored = self._stored([p.purchase.key for p in plans])
            inserted = []
            for pid, plan in zip(ids, plans, strict=True):
                their_id, body_hash = stored[plan.purchase.key]
                if their_id == pid:
                    inserted.append((pid, plan))
                elif body_hash == plan.purchase.body_hash:
                    result.replays.append((plan.ref, _replay(plan.purchase, their_id)))
                else:
                    result.rejections.append(_conflict(plan.ref, plan.purchase))
        if not inserted:
            return
        insert_rows(
            conn, _items,
            ("purchase_id", "member_id", "line_no", "sku", "category", "quantity_milli",
             "unit_price_minor", "amount_minor"),
            [(pid, p.purchase.member_id, i.line_no, i.sku, i.category, i.quantity_milli,
              i.unit_price_minor, i.amount_minor)
             for pid, p in inserted for i in p.purchase.items],
        )
        self._store_awards(inserted, result)

    def _store_awards(self, inserted: list[tuple[int, PurchasePlan]], result: BatchResult) -> None:
        conn, conv = self.conn, self.convert
        now = conv.when(self.now)
        # Each purchase's time converted once, for its entries and its lots.
        stamps = {pid: conv.when(p.purchase.occurred_at) for pid, p in inserted}
        awards = [(pid, p, award) for pid, p in inserted for award in p.awards]
        entry_ids = allocate_ids(conn, _ledger, len(awards))
        insert_rows(
            conn, _ledger,
            ("id", "member_id", "program_id", "program_version_id", "kind", "points",
             "purchase_id", "rule_id", "occurred_at", "recorded_at", "reason"),
            [(eid, p.purchase.member_id, award.program_id, award.version_id, "earn",
              award.points, pid, award.rule_id, stamps[pid], now,
              award.reason_json)
             for eid, (pid, p, award) in zip(entry_ids, awards, strict=True)],
        )
        insert_rows(
            conn, _lots,
            ("entry_id", "member_id", "program_id", "earned_at", "points", "remaining",
             "expires_at"),
            [(eid, p.purchase.member_id, award.program_id, stamps[pid], award.points,
              award.points, None)
             for eid, (pid, p, award) in zip(entry_ids, awards, strict=True)],
        )
        for _, p in inserted:
            member_id = p.purchase.member_id
            if member_id is None:
                continue
            for program_id in p.enrol:
                self._balance_deltas[(member_id, program_id)] += 0
            for award in p.awards:
                self._balance_deltas[(member_id, award.program_id)] += award.points
        if not self.defer_balances:
            self.flush_balances()
        result.recorded.extend(inserted)


def _replay(purchase: Purchase, purchase_id: int) -> PurchaseOutcome:
    return PurchaseOutcome(purchase_id, purchase.store_id, purchase.transaction_id,
                           purchase.member_id, replayed=True, awards=())


def _reject(ref: int, purchase: Purchase, reason: str, conflict: bool = False) -> Rejection:
    return Rejection(ref, purchase.store_id, purchase.transaction_id, reason, conflict)


def _conflict(ref: int, purchase: Purchase, earlier: int | None = None) -> Rejection:
    """The key is taken by a stored purchase, or by an earlier line of the same input."""
    where = "" if earlier is None else f" earlier in the same input ({earlier})"
    return _reject(ref, purchase, _CONFLICT + where, conflict=True)


def _with_stored_awards(conn: Connection, outcome: PurchaseOutcome) -> PurchaseOutcome:
    versions = tables.program_versions
    rows = conn.execute(
        select(_ledger.c.program_id, versions.c.version, _ledger.c.rule_id, _ledger.c.points)
        .join(versions, versions.c.id == _ledger.c.program_version_id)
        .where(_ledger.c.purchase_id == outcome.purchase_id, _ledger.c.kind == "earn")
        .order_by(_ledger.c.id)
    ).all()
    awards = tuple(Award(r.program_id, r.version, r.rule_id, r.points) for r in rows)
    return PurchaseOutcome(outcome.purchase_id, outcome.store_id, outcome.transaction_id,
                           outcome.member_id, replayed=True, awards=awards)
