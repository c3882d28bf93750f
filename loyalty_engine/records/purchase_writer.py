"""Writing purchases: exactly once per (store_id, transaction_id), set-based, through the ledger.

One `PurchaseWriter.write` call handles a batch of purchases with a fixed number of
statements, whatever the batch size: look up existing keys, insert members, enrolments,
purchases, items, ledger entries and lots with executemany, and upsert balances.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection

from loyalty_engine import ledger
from loyalty_engine.domain.decisions import MemberView, TierChange
from loyalty_engine.domain.events import PurchaseEvent
from loyalty_engine.domain.purchases import Purchase
from loyalty_engine.engine.catalog import ProgramCatalog
from loyalty_engine.engine.planning import (
    PlanRejection,
    ProgressBook,
    PurchasePlan,
    needs_progress,
    plan_purchase,
)
from loyalty_engine.records.standing import (
    StandingNeeds,
    load_standings,
    write_club_joins,
    write_tier_changes,
)
from loyalty_engine.records.till_fees import check_till_fees, settle_till_fees
from loyalty_engine.records.vouchers import VOUCHER_COLUMNS, voucher_row
from loyalty_engine.store import tables
from loyalty_engine.store.bulk import (
    FEW_ROWS,
    Converters,
    Lookup,
    chunked,
    insert_returning,
    insert_returning_with_children,
    insert_rows,
    lock_rows,
    lock_rows_then_select,
    select_by_keys,
    select_typed_by_keys,
)

_members = tables.members
_enrolments = tables.enrolments
_purchases = tables.purchases
_items = tables.purchase_items
_counters = tables.progress_counters
_journal = tables.purchase_progress
_vouchers = tables.vouchers


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
        """Total points the purchase earned: for a store in one program (tests, the demo's
        counters); anything shown to people or integrators uses points_by_program."""
        return sum(a.points for a in self.awards)

    @property
    def points_by_program(self) -> dict[str, int]:
        """Points the purchase earned, program by program (never added across programs:
        a coffee point and a beauty point are different currencies)."""
        earned: dict[str, int] = {}
        for a in self.awards:
            earned[a.program_id] = earned.get(a.program_id, 0) + a.points
        return earned


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
    def points_by_program(self) -> dict[str, int]:
        """Points awarded by the purchases recorded now, program by program."""
        found: dict[str, int] = {}
        for _, plan in self.recorded:
            for a in plan.awards:
                found[a.program_id] = found.get(a.program_id, 0) + a.points
        return found

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


@dataclass(frozen=True, slots=True)
class Prefetched:
    """A purchase's key and member as found earlier in the same transaction."""

    key: tuple[str, str]
    purchase: tuple[int, str] | None  # (id, body hash) stored under the key
    member_id: str | None
    member_known: bool
    enrolled: frozenset[str]  # the member's programs

    def stored_purchases(self) -> dict[tuple[str, str], tuple[int, str]]:
        """The stored keys, as PurchaseWriter.write takes them."""
        return {} if self.purchase is None else {self.key: self.purchase}


def prefetches(event: PurchaseEvent) -> list[Lookup]:
    """The look-ups `prefetched` reads: the purchase's key, its member, their enrolments
    (a caller runs them in one statement with its own, the stored HTTP response)."""
    found = [Lookup(_purchases, ("store_id", "transaction_id"),
                    (event.store_id, event.transaction_id), ("id", "body_hash"))]
    if event.member_id is not None:
        found += [Lookup(_members, ("member_id",), (event.member_id,), ("member_id",)),
                  Lookup(_enrolments, ("member_id",), (event.member_id,), ("program_id",))]
    return found


def prefetched(event: PurchaseEvent, rows: list[list[tuple[Any, ...]]]) -> Prefetched:
    """What the look-ups of `prefetches` found."""
    stored = rows[0][0] if rows[0] else None
    members = rows[1] if len(rows) > 1 else []
    enrolments = rows[2] if len(rows) > 2 else []
    return Prefetched(
        (event.store_id, event.transaction_id),
        None if stored is None else (int(stored[0]), str(stored[1])),
        event.member_id, bool(members), frozenset(str(p) for (p,) in enrolments))


_CONFLICT = "already recorded with different contents"
# Up to this many members (a till's batch), a member's lock and counters are read in one
# round trip rather than two.
_FEW = 16


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
        self._balances = ledger.BalanceChanges()
        self._book = ProgressBook()

    def know(self, known: Prefetched) -> None:
        """Take a member (and their enrolments) the caller found as already stored."""
        if known.member_id is not None and known.member_known:
            self._known_members.add(known.member_id)
            self._known_enrolments.update((known.member_id, p) for p in known.enrolled)

    def write(self, batch: Sequence[tuple[int, Purchase]],
              check_only: bool = False,
              stored: dict[tuple[str, str], tuple[int, str]] | None = None) -> BatchResult:
        """Plan and record a batch of purchases.

        Duplicates of stored or earlier ones are replays or conflicts, and only then is a
        purchase planned (so a replay never touches the member's counters). Fresh purchases
        are planned in time order against the counters of their members, which are locked
        first on PostgreSQL so that two writers never count the same visit twice.

        check_only finds the same rejections without writing anything (an all-or-nothing
        import that has already failed keeps reporting problems without doing the work).
        `stored`: the batch's keys already looked up in this transaction (found ones with
        their id and body hash), not asked again. Looked up before the members' lock, they
        miss a purchase a concurrent writer commits meanwhile; inserting it then finds the
        key taken (the insert's count), and it is a replay all the same.
        """
        result = BatchResult([], [])
        fresh: dict[tuple[str, str], tuple[int, Purchase]] = {}
        copies: list[tuple[int, Purchase]] = []
        for ref, purchase in batch:
            earlier = fresh.get(purchase.key)
            if earlier is None:
                fresh[purchase.key] = (ref, purchase)
            elif earlier[1].body_hash == purchase.body_hash:
                copies.append((ref, purchase))  # shares the first copy's fate, known below
            else:
                result.rejections.append(_conflict(ref, purchase, earlier[0]))
        book = self._book = self._progress_book([p for _, p in fresh.values()], check_only)
        if stored is None:
            stored = self._stored(list(fresh))
        to_plan: list[tuple[int, Purchase]] = []
        for key, (ref, purchase) in fresh.items():
            found = stored.get(key)
            unwritten = self._checked.get(key)  # only filled while checking
            if found is not None:
                if found[1] == purchase.body_hash:
                    result.replays.append((ref, _replay(purchase, found[0])))
                else:
                    result.rejections.append(_conflict(ref, purchase))
            elif unwritten is not None:
                if unwritten[1] == purchase.body_hash:
                    result.replays.append((ref, _replay(purchase, -1)))
                else:
                    result.rejections.append(_conflict(ref, purchase, unwritten[0]))
            else:
                to_plan.append((ref, purchase))
        # Counted in time order, so that a batch's visits and stamps come in sequence.
        to_plan.sort(key=lambda item: (item[1].occurred_at, item[1].key))
        plans = self._plan(to_plan, book, result)
        while any(plan.fee_lines for plan in plans):
            # A till line that would pay no fee (or the wrong amount) rejects its purchase.
            problems = check_till_fees(self.conn, self.catalog, plans)
            if not problems:
                break
            for plan in plans:
                if plan.ref in problems:
                    result.rejections.append(_reject(plan.ref, plan.purchase,
                                                     problems[plan.ref]))
            # Planning them changed the members' counters and standing in the book (a
            # club joined at the till, a tier reached): plan the others again afresh.
            to_plan = [(p.ref, p.purchase) for p in plans if p.ref not in problems]
            book = self._book = self._progress_book([p for _, p in to_plan], check_only)
            plans = self._plan(to_plan, book, result)
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
            self._settle_copies(copies, {k: v[0] for k, v in fresh.items()}, result)
        return result

    def _plan(self, to_plan: list[tuple[int, Purchase]], book: ProgressBook,
              result: BatchResult) -> list[PurchasePlan]:
        plans: list[PurchasePlan] = []
        for ref, purchase in to_plan:
            plan = plan_purchase(self.catalog, ref, purchase, book)
            if isinstance(plan, PlanRejection):
                result.rejections.append(_reject(ref, purchase, plan.reason))
            else:
                plans.append(plan)
        return plans

    def was_checked(self, key: tuple[str, str]) -> bool:
        """Whether a purchase was checked but not written (an import that already failed)."""
        return key in self._checked

    def _progress_book(self, purchases: list[Purchase], check_only: bool) -> ProgressBook:
        """Load (and on PostgreSQL lock) the state planning these purchases needs."""
        book = ProgressBook()
        stateful, uses_member, programs = needs_progress(self.catalog, purchases)
        needs = StandingNeeds.of(programs)
        if not stateful and not uses_member and not needs.any:
            return book
        member_ids = sorted({p.member_id for p in purchases if p.member_id is not None})
        if not member_ids:
            return book
        unknown: set[str] = set()
        if needs.enrolments:
            # A program that enrols explicitly does not take strangers: members unknown
            # until now are created only for purchases an open program sees.
            unknown = set(member_ids) - {m for (m,) in select_by_keys(
                self.conn, _members, ("member_id",), [(m,) for m in member_ids],
                ("member_id",))}
            welcomed = {p.member_id for p in purchases if p.member_id in unknown and any(
                v.program.enrolment == "open" and v.program.covers(p.store_id)
                for v in self.catalog.all_in_force(p.occurred_at))}
            member_ids = [m for m in member_ids if m not in unknown or m in welcomed]
        counter_columns = ("member_id", "program_id", "counter", "period", "value")
        locked_counters: list[tuple[Any, ...]] | None = None
        if not check_only and member_ids:
            self._ensure_members(member_ids)
            # Rows in a global order: writers of overlapping members queue, never cycle.
            if stateful and len(member_ids) <= _FEW:
                # A till's member: locked and their counters read in one round trip.
                locked_counters = lock_rows_then_select(
                    self.conn, _members, "member_id", member_ids, _counters, counter_columns)
            else:
                lock_rows(self.conn, _members, "member_id", member_ids)
        for part in chunked(member_ids):
            if stateful:
                # Straight from the driver: a batch's members hold thousands of counters.
                progress = book.progress
                for member_id, program_id, counter, period, value in (
                    locked_counters if locked_counters is not None else select_by_keys(
                        self.conn, _counters, ("member_id",), [(m,) for m in part],
                        counter_columns)
                ):
                    if value:
                        found = progress.get((member_id, program_id))
                        if found is None:
                            found = progress[(member_id, program_id)] = {}
                        found[(counter, period)] = value
            if uses_member:
                for member_id, attributes in select_typed_by_keys(
                    self.conn, _members, ("member_id",), [(m,) for m in part],
                    ("member_id", "attributes"),
                ):
                    book.members[member_id] = MemberView(member_id, dict(attributes or {}))
        if needs.any:
            # The RFM snapshots in force over the batch (only read where a program does).
            during = ((min(p.occurred_at for p in purchases),
                       max(p.occurred_at for p in purchases)) if needs.insights else None)
            load_standings(self.conn, self.catalog, member_ids, book.members, needs, during)
        for member_id in unknown:
            book.member(member_id).unknown = True
        return book

    def _ensure_members(self, member_ids: list[str]) -> None:
        new = [m for m in member_ids if m not in self._known_members]
        if new:
            now = self.convert.when(self.now)
            insert_rows(self.conn, _members, ("member_id", "created_at", "attributes"),
                        [(m, now, "{}") for m in new], on_conflict=["member_id"])
            self._known_members.update(new)

    @staticmethod
    def _settle_copies(copies: list[tuple[int, Purchase]],
                       first: dict[tuple[str, str], int], result: BatchResult) -> None:
        """A repeat of a purchase earlier in the same batch gets the first copy's fate."""
        rejected = {(r.store_id, r.transaction_id): r for r in result.rejections}
        ids = {plan.purchase.key: pid for pid, plan in result.recorded}  # -1 when checking
        ids.update({(o.store_id, o.transaction_id): o.purchase_id for _, o in result.replays})
        for ref, copy in copies:
            key = copy.key
            if key in rejected and rejected[key].ref == first[key]:
                reason = f"{rejected[key].reason} (as for {first[key]})"
                result.rejections.append(_reject(ref, copy, reason, rejected[key].conflict))
            else:
                result.replays.append((ref, _replay(copy, ids[key])))

    def flush_balances(self) -> None:
        """Add the points written so far to the cached balances (one upsert per pair)."""
        self._balances.flush(self.conn, self.now)

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
        self._ensure_members(sorted({p.purchase.member_id for p in plans
                                     if p.purchase.member_id is not None}))
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
        purchase_columns = ("store_id", "transaction_id", "member_id", "occurred_at",
                            "currency", "total_minor", "body_hash", "recorded_at",
                            "tender", "channel")
        purchase_rows = [
            (p.purchase.store_id, p.purchase.transaction_id, p.purchase.member_id,
             conv.when(p.purchase.occurred_at), p.purchase.currency, p.purchase.total_minor,
             p.purchase.body_hash, now, p.purchase.tender, p.purchase.channel)
            for p in plans]
        item_columns = ("member_id", "line_no", "sku", "category", "quantity_milli",
                        "unit_price_minor", "amount_minor")
        items_written = len(plans) <= FEW_ROWS
        if items_written:
            # A till's purchase: its items go with it, in one statement on PostgreSQL.
            returned = insert_returning_with_children(
                conn, _purchases, purchase_columns, purchase_rows,
                ["store_id", "transaction_id"], ("id", "store_id", "transaction_id"),
                _items, item_columns,
                [(*p.purchase.key, p.purchase.member_id, i.line_no, i.sku, i.category,
                  i.quantity_milli, i.unit_price_minor, i.amount_minor)
                 for p in plans for i in p.purchase.items], "purchase_id")
        else:
            returned = insert_returning(
                conn, _purchases, purchase_columns, purchase_rows,
                on_conflict=["store_id", "transaction_id"],
                returning=("id", "store_id", "transaction_id"))
        ids = {(store_id, transaction_id): pid for pid, store_id, transaction_id in returned}
        inserted = [(ids[p.purchase.key], p) for p in plans if p.purchase.key in ids]
        if len(inserted) != len(plans):
            # Another writer committed some of the same keys between our look-up and our
            # insert (PostgreSQL only: SQLite's write lock excludes it). Theirs stand.
            taken = [p for p in plans if p.purchase.key not in ids]
            stored = self._stored([p.purchase.key for p in taken])
            for plan in taken:
                their_id, body_hash = stored[plan.purchase.key]
                if body_hash == plan.purchase.body_hash:
                    result.replays.append((plan.ref, _replay(plan.purchase, their_id)))
                else:
                    result.rejections.append(_conflict(plan.ref, plan.purchase))
        if not inserted:
            return
        if not items_written:
            insert_rows(
                conn, _items,
                ("purchase_id", *item_columns),
                [(pid, p.purchase.member_id, i.line_no, i.sku, i.category, i.quantity_milli,
                  i.unit_price_minor, i.amount_minor)
                 for pid, p in inserted for i in p.purchase.items],
            )
        self._store_awards(inserted, result)

    def _store_awards(self, inserted: list[tuple[int, PurchasePlan]], result: BatchResult) -> None:
        """The purchases' awards earned through the ledger (entries, lots, pending holds,
        debts repaid first), progress and standing; balances now or at flush_balances."""
        ledger.earn(self.conn, [
            ledger.Earning(p.purchase.member_id, award.program_id, award.version_id,
                           award.points, p.purchase.occurred_at, award.expires_at,
                           award.reason_json, award.rule_id, pid, award.pending_until,
                           active=award.active, lapses_at=award.lapses_at)
            for pid, p in inserted if p.purchase.member_id is not None
            for award in p.awards], self.now, self._balances)
        self._store_progress(inserted)
        self._store_standing(inserted)
        for _, p in inserted:
            member_id = p.purchase.member_id
            if member_id is None:
                continue
            for program_id in p.enrol:
                self._balances.add(member_id, program_id)  # an enrolment has a balance row
        if not self.defer_balances:
            self.flush_balances()
        result.recorded.extend(inserted)

    def _store_standing(self, inserted: list[tuple[int, PurchasePlan]]) -> None:
        """Open clubs joined, tier changes, and club fees paid at the till."""
        joins: list[tuple[str, str, str, datetime]] = []
        changes: list[tuple[str, TierChange, date, datetime]] = []
        for _, plan in inserted:
            member_id = plan.purchase.member_id
            if member_id is None:
                continue
            at = plan.purchase.occurred_at
            joins.extend((member_id, program_id, club_id, at)
                         for program_id, club_id in plan.club_joins)
            for change in plan.tier_changes:
                standing = self._book.member(member_id).standing(change.program_id)
                enrolled = standing.enrolled_on or at.date()
                changes.append((member_id, change, enrolled, at))
        write_club_joins(self.conn, joins, self.now)
        write_tier_changes(self.conn, changes, self.now)
        fee_plans = [(pid, plan) for pid, plan in inserted if plan.fee_lines]
        if fee_plans:
            settle_till_fees(self.conn, self.catalog, fee_plans, self.now)

    def _store_progress(self, inserted: list[tuple[int, PurchasePlan]]) -> None:
        """Counters, the purchase's journal of them, and vouchers of completed cards."""
        conn, conv = self.conn, self.convert
        totals: defaultdict[tuple[str, str, str, str], int] = defaultdict(int)
        journal: defaultdict[tuple[int, str, str, str, str], int] = defaultdict(int)
        voucher_rows = []
        now = conv.when(self.now)
        for pid, plan in inserted:
            member_id = plan.purchase.member_id
            if member_id is None:
                continue
            for program_id, counter, period, delta in plan.progress:
                totals[(member_id, program_id, counter, period)] += delta
                journal[(pid, program_id, counter, period, member_id)] += delta
            for program_id, counter, period, delta in plan.consumed:
                totals[(member_id, program_id, counter, period)] += delta
            for v in plan.vouchers:
                reward = self.catalog.version(v.version_id).program.rewards[v.reward_id]
                voucher_rows.append(voucher_row(
                    # Rule ids are unique within a program only: the program is in the code.
                    f"{v.program_id}-{v.rule_id}-{pid}-{v.seq + 1}", member_id, v.program_id,
                    v.version_id,
                    reward, "stamp_card", pid, v.rule_id, v.consumed_json,
                    conv.when(plan.purchase.occurred_at), conv.when(v.valid_until), now))
        if totals:
            insert_rows(
                conn, _counters, ("member_id", "program_id", "counter", "period", "value"),
                [(*key, value) for key, value in sorted(totals.items())],
                on_conflict=["member_id", "program_id", "counter", "period"],
                update={"value": "progress_counters.value + excluded.value"},
            )
        if journal:
            insert_rows(
                conn, _journal,
                ("purchase_id", "program_id", "counter", "period", "member_id", "delta"),
                [(*key, delta) for key, delta in journal.items() if delta != 0],
            )
        if voucher_rows:
            insert_rows(
                conn, _vouchers,
                VOUCHER_COLUMNS,
                voucher_rows,
            )


def _replay(purchase: Purchase, purchase_id: int) -> PurchaseOutcome:
    return PurchaseOutcome(purchase_id, purchase.store_id, purchase.transaction_id,
                           purchase.member_id, replayed=True, awards=())


def _reject(ref: int, purchase: Purchase, reason: str, conflict: bool = False) -> Rejection:
    return Rejection(ref, purchase.store_id, purchase.transaction_id, reason, conflict)


def _conflict(ref: int, purchase: Purchase, earlier: int | None = None) -> Rejection:
    """The key is taken by a stored purchase, or by an earlier line of the same input."""
    where = "" if earlier is None else f" earlier in the same input ({earlier})"
    return _reject(ref, purchase, _CONFLICT + where, conflict=True)
