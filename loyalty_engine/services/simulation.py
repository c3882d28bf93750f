"""Backtesting a program version on stored history (`loyalty rules simulate`).

A replay never touches the live database: it reads the live history once (a read
transaction) and writes only to throw-away SQLite files in a temporary folder, which are
removed at the end. In one of them the stored history is replayed from an empty state
under the program's stored versions up to the window's start (the warm-up: counters, lots,
tiers and debts as the live versions made them); that file is then copied, the copy gets
the candidate as a version in force from the window's start (replacing the stored ones in
force from then on), and both go on through the window: purchases through the
PurchaseWriter in batches, refunds through `apply_refund`, redemptions (and their reversals)
through `redeem` at the instant they were recorded, and the scheduler's jobs through
`run_tick` at each of their fire times, interleaved in time order. The two files then
answer the same questions (points issued, refunded, redeemed, expired; vouchers and
rebates; fees; the cost at the point value; the tier mix at the end; points by rule and by
member), and their difference is what the candidate changes.

The self-check (`verify`): the replay under the stored versions must reproduce the live
ledger, point for point, per member, rule and kind, over the window.

See docs/simulate.md for what is copied, what is replayed and the limits.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, event

from loyalty_engine.domain.errors import LoyaltyError, NotFoundError
from loyalty_engine.engine.catalog import ProgramCatalog
from loyalty_engine.finance.values import minor_per_point, value_minor
from loyalty_engine.records.history import (
    StoredPurchase,
    StoredRedemption,
    StoredRefund,
    copied_rows,
    fee_revenue,
    hold_job,
    install_version,
    ledger_by_rule,
    not_replayed,
    purchase_span,
    stored_purchases,
    stored_redemptions,
    stored_refunds,
    tiers_of,
    voucher_origins,
    vouchers_issued,
)
from loyalty_engine.records.purchase_writer import PurchaseWriter
from loyalty_engine.rules import CompiledProgram, LoadedProgram
from loyalty_engine.scheduler.cron import cron_trigger, fire_times
from loyalty_engine.services.jobs import BY_NAME
from loyalty_engine.services.programs import load_catalog
from loyalty_engine.services.redemptions import redeem, reverse_redemption
from loyalty_engine.services.refunds import apply_refund
from loyalty_engine.services.scheduling import run_tick
from loyalty_engine.store import migrate, tables
from loyalty_engine.store.database import open_engine, read_transaction, write_transaction
from loyalty_engine.store.unit_of_work import read_use_case

BATCH = 2000
TOP_MEMBERS = 10
# Kinds of ledger entry, as the totals name them.
_REDEEMED = ("redeem", "unredeem")


@dataclass(slots=True)
class SideTotals:
    """What one replay did in the window."""

    issued: int = 0  # points earned (kind earn), before refunds
    refunded: int = 0  # points refunds took back (positive)
    redeemed: int = 0  # points spent, net of reversals (positive)
    expired: int = 0  # points expired (positive)
    other: int = 0  # fees paid in points, debts, adjustments (signed)
    net: int = 0  # the sum of every entry (signed)
    vouchers: dict[str, tuple[int, int]] = field(default_factory=dict)  # source: n, minor
    fee_revenue_minor: int = 0
    point_value: Decimal = Decimal("0.01")
    cost_minor: int = 0  # (issued - refunded) x point value, in minor units
    tier_mix: dict[str, int] = field(default_factory=dict)
    by_rule: dict[str, int] = field(default_factory=dict)  # earned net of refunds
    rejected: dict[str, int] = field(default_factory=dict)  # events the replay refused
    job_failures: int = 0

    def as_json(self) -> dict[str, Any]:
        """Plain values (money in minor units, the point value as text)."""
        return {
            "issued": self.issued, "refunded": self.refunded, "redeemed": self.redeemed,
            "expired": self.expired, "other": self.other, "net": self.net,
            "vouchers": {k: {"count": n, "amount_minor": a}
                         for k, (n, a) in sorted(self.vouchers.items())},
            "fee_revenue_minor": self.fee_revenue_minor,
            "point_value": str(self.point_value), "cost_minor": self.cost_minor,
            "tier_mix": dict(sorted(self.tier_mix.items())),
            "by_rule": dict(sorted(self.by_rule.items())),
            "rejected": dict(sorted(self.rejected.items())), "job_failures": self.job_failures,
        }


@dataclass(frozen=True, slots=True)
class MemberDelta:
    """A member's net points in the window under both, and their tier at the end."""

    member_id: str
    live: int
    candidate: int
    live_tier: str | None
    candidate_tier: str | None

    @property
    def delta(self) -> int:
        """Candidate minus live."""
        return self.candidate - self.live

    def as_json(self) -> dict[str, Any]:
        """Plain values."""
        return {"member": self.member_id, "live": self.live, "candidate": self.candidate,
                "delta": self.delta, "live_tier": self.live_tier,
                "candidate_tier": self.candidate_tier}


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A (member, rule, kind) whose points the replay under the stored versions and the
    live ledger do not agree on."""

    member_id: str
    rule_id: str
    kind: str
    live: int
    replayed: int

    def as_json(self) -> dict[str, Any]:
        """Plain values."""
        return {"member": self.member_id, "rule": self.rule_id, "kind": self.kind,
                "live": self.live, "replayed": self.replayed}


@dataclass(slots=True)
class Simulation:
    """The outcome of a backtest: both sides' totals and the differences."""

    program_id: str
    currency: str
    start: datetime
    end: datetime
    as_new: bool
    members_filter: tuple[str, ...] | None
    purchases: int
    refunds: int
    redemptions: int
    ticks: int
    live: SideTotals
    candidate: SideTotals
    gains: list[MemberDelta]
    losses: list[MemberDelta]
    tier_changes: list[MemberDelta]
    members_changed: int
    not_replayed: dict[str, int]
    verified: list[Mismatch] | None = None  # None: the self-check was not asked for
    seconds: float = 0.0
    # Where the time went: reading the history, the warm-up, each side's window, totals.
    timings: dict[str, float] = field(default_factory=dict)
    # Purchases recorded after a later purchase of the same member: the live system counted
    # them in that order, a replay counts them in time order (docs/simulate.md, limits).
    out_of_order: int = 0

    @property
    def rule_deltas(self) -> dict[str, int]:
        """Points by rule, candidate minus live (rules of either side)."""
        rules = sorted(set(self.live.by_rule) | set(self.candidate.by_rule))
        return {r: self.candidate.by_rule.get(r, 0) - self.live.by_rule.get(r, 0)
                for r in rules}

    def as_json(self) -> dict[str, Any]:
        """The whole outcome as plain values."""
        return {
            "program": self.program_id, "currency": self.currency,
            "from": self.start.isoformat(), "to": self.end.isoformat(),
            "as_new": self.as_new,
            "members": list(self.members_filter) if self.members_filter else None,
            "replayed": {"purchases": self.purchases, "refunds": self.refunds,
                         "redemptions": self.redemptions, "job_ticks": self.ticks},
            "live": self.live.as_json(), "candidate": self.candidate.as_json(),
            "delta": {
                "issued": self.candidate.issued - self.live.issued,
                "redeemed": self.candidate.redeemed - self.live.redeemed,
                "expired": self.candidate.expired - self.live.expired,
                "net": self.candidate.net - self.live.net,
                "cost_minor": self.candidate.cost_minor - self.live.cost_minor,
                "fee_revenue_minor": (self.candidate.fee_revenue_minor
                                      - self.live.fee_revenue_minor),
                "by_rule": self.rule_deltas,
            },
            "members_changed": self.members_changed,
            "largest_gains": [m.as_json() for m in self.gains],
            "largest_losses": [m.as_json() for m in self.losses],
            "tier_changes": [m.as_json() for m in self.tier_changes],
            "not_replayed": self.not_replayed,
            "recorded_out_of_order": self.out_of_order,
            "verify": None if self.verified is None else {
                "matches": not self.verified,
                "mismatches": [m.as_json() for m in self.verified]},
            "seconds": round(self.seconds, 3),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


# --- the history, read once -----------------------------------------------------------------

@dataclass(slots=True)
class _History:
    copied: dict[Any, list[dict[str, Any]]]
    purchases: list[StoredPurchase]
    refunds: list[StoredRefund]
    redemptions: list[StoredRedemption]
    vouchers: dict[str, tuple[int | None, str | None, str]]  # code: purchase, rule, source
    not_replayed: dict[str, int]


def _read_history(conn: Connection, program_id: str, covers: Any, end: datetime,
                  members: frozenset[str] | None, stored_program: bool) -> _History:
    purchases = stored_purchases(conn, end, covers, members)
    refunds = stored_refunds(conn, end, {p.live_id for p in purchases})
    redemptions = stored_redemptions(conn, program_id, end, members) if stored_program else []
    codes = {r.request.voucher for r in redemptions if r.request.voucher is not None}
    member_ids = ({p.purchase.member_id for p in purchases if p.purchase.member_id}
                  | {r.request.member_id for r in redemptions})
    copied = copied_rows(conn, program_id if stored_program else None, member_ids)
    return _History(copied, purchases, refunds, redemptions, voucher_origins(conn, codes),
                    not_replayed(conn, program_id, end, members) if stored_program else {})


# --- the throw-away databases ---------------------------------------------------------------

def _throwaway(path: Path) -> Engine:
    """A migrated SQLite file nobody else uses: written without waiting for the disk."""
    engine = _reopen(path)
    migrate.upgrade(engine)
    return engine


def _copy_file(source: Engine, source_path: Path, target_path: Path) -> Engine:
    """A copy of a throw-away database (SQLite's backup, WAL included)."""
    source.dispose()
    with sqlite3.connect(source_path) as src, sqlite3.connect(target_path) as dst:
        src.backup(dst)
    src.close()
    dst.close()
    return _reopen(target_path)


def _reopen(path: Path) -> Engine:
    """A throw-away SQLite file opened: written without waiting for the disk."""
    engine = open_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _fast(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA synchronous=OFF")

    return engine


def _seed(engine: Engine, history: _History, program_id: str, end: datetime,
          snapshots: bool) -> None:
    """The copied rows; without `snapshots`, the rfm_snapshot job held past the end."""
    with write_transaction(engine) as conn:
        if not snapshots:
            hold_job(conn, program_id, "rfm_snapshot", end + timedelta(microseconds=1))
        for table in (tables.programs, tables.program_versions, tables.members,
                      tables.member_consents, tables.enrolments, tables.club_memberships,
                      tables.household_members, tables.fee_charges,
                      tables.group_verifications):
            rows = history.copied.get(table) or []
            for start in range(0, len(rows), 5000):
                conn.execute(table.insert(), rows[start:start + 5000])


def _install_candidate(engine: Engine, candidate: LoadedProgram, start: datetime,
                       as_new: bool) -> None:
    """The candidate as the version in force from `start`, the stored versions that would
    take effect at or after it removed (unused so far: the warm-up stops before it)."""
    with write_transaction(engine) as conn:
        install_version(conn, candidate.definition.program, candidate.definition.name,
                        candidate.content_hash, candidate.path, candidate.source_text, start,
                        as_new)


# --- one replay -----------------------------------------------------------------------------

# (time, order at that time, sequence, kind, payload): purchases, then refunds, redemptions
# and reversals made at the same instant.
_Event = tuple[datetime, int, int, str, Any]


def _events(history: _History) -> list[_Event]:
    events: list[_Event] = []
    for i, p in enumerate(history.purchases):
        events.append((p.purchase.occurred_at, 0, i, "purchase", p))
    for i, r in enumerate(history.refunds):
        events.append((r.event.occurred_at, 1, i, "refund", r))
    for i, d in enumerate(history.redemptions):
        events.append((d.request.occurred_at, 2, i, "redemption", d))
        if d.reversed_at is not None:
            events.append((d.reversal_at or d.reversed_at, 3, i, "reversal", d))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    return events


def _fires(catalog: ProgramCatalog, program_id: str, after: datetime,
           until: datetime, snapshots: bool) -> tuple[list[datetime], list[datetime]]:
    """The fire times in (after, until] of every job of every version of the program while
    that version is in force: (of the jobs that run at each, of those that coalesce).
    rfm_snapshot only with `snapshots` (see _reads_snapshots)."""
    if program_id not in catalog.program_ids:
        return [], []
    versions = catalog.versions(program_id)
    each: set[datetime] = set()
    coalescing: set[datetime] = set()
    for i, version in enumerate(versions):
        start = max(after, version.effective_from - timedelta(microseconds=1))
        stop = min(until, versions[i + 1].effective_from) if i + 1 < len(versions) else until
        if stop <= start:
            continue
        for name, job in BY_NAME.items():
            if not job.applies(version.program) or (
                    name == "clubs" and not _clocked_clubs(version.program)) or (
                    name == "rfm_snapshot" and not snapshots):
                continue
            cron = version.program.schedule.get(name, job.spec.default_cron)
            trigger = cron_trigger(cron, version.program.timezone)
            found = each if not job.spec.coalesce else coalescing
            found.update(f for f in fire_times(trigger, start, stop, limit=10**7)
                         if f < stop or stop == until)
    return sorted(each), sorted(coalescing)


def _clocked_clubs(program: CompiledProgram) -> bool:
    """Whether the clubs job has anything to move for the program: fee clubs (renewals,
    grace, lapse) or affinity groups (eligibility lapse). Open clubs have no clock, so a
    replay does not tick daily for them."""
    return bool(program.groups) or any(c.kind == "fee" for c in program.clubs.values())


def _reads_snapshots(candidate: LoadedProgram, versions: list[Any]) -> bool:
    """Whether the replays need the weekly RFM snapshot: only when the candidate or a
    stored version reads it (member.segment, member.clv, segments:, ...). Otherwise its
    weekly runs (a CLV fit each) change nothing the replays compare, and both replays hold
    the job (decided once, for both sides alike)."""
    return candidate.compiled.reads_insights or any(v.program.reads_insights
                                                    for v in versions)


def _ticks(fires: tuple[list[datetime], list[datetime]], events: list[_Event],
           end: datetime) -> list[datetime]:
    """When the replay runs the scheduler: at each fire time of a job that runs at every
    one (reviews, bonuses, rebates, clubs), and for the jobs whose effects are dated by the
    data (activation, expiry, notices: a tick runs them at their latest fire time) before
    each refund or redemption that a fire time of theirs came before, and at the end.
    Purchases read neither pending holds nor expiry, so hourly activation between two
    purchases need not run."""
    each, coalescing = fires
    ticks = set(each)
    if coalescing:
        last: datetime | None = None
        for at, _, _, kind, _ in events:
            if kind == "purchase":
                continue
            index = bisect_right(coalescing, at)
            if index and (last is None or coalescing[index - 1] > last):
                ticks.add(at)
                last = at
        ticks.add(end)
    return sorted(ticks)


class _Replay:
    """One throw-away database going through the history in time order."""

    def __init__(self, engine: Engine, program_id: str,
                 vouchers: dict[str, tuple[int | None, str | None, str]]) -> None:
        self.engine = engine
        self.program_id = program_id
        self.vouchers = vouchers
        self.replay_ids: dict[tuple[str, str], int] = {}
        self.live_keys: dict[int, tuple[str, str]] = {}
        self.done: set[str] = set()  # redemptions replayed
        self.rejected: defaultdict[str, int] = defaultdict(int)
        self.ticks = 0
        self.job_failures = 0
        self.last_tick: datetime | None = None

    def run(self, events: list[_Event], fires: list[datetime], until: datetime | None) -> None:
        """Events and the fire times (those before `until` when given), in time order:
        a fire time at or before an event's instant runs first."""
        pending = [f for f in fires if until is None or f < until]
        queue: list[_Event] = []
        i = 0
        for item in events:
            if until is not None and item[0] >= until:
                break
            while i < len(pending) and pending[i] <= item[0]:
                self._write(queue)
                queue = []
                self._tick(pending[i])
                i += 1
            queue.append(item)
        self._write(queue)
        for fire in pending[i:]:
            self._tick(fire)

    def _tick(self, fire: datetime) -> None:
        report = run_tick(self.engine, fire, lambda: fire, program_id=self.program_id,
                          strict=False)
        self.ticks += 1
        self.job_failures += report.failed
        self.last_tick = fire

    def _write(self, events: list[_Event]) -> None:
        if not events:
            return
        with write_transaction(self.engine) as conn:
            catalog = load_catalog(conn)
            writer = PurchaseWriter(conn, catalog, events[-1][0], defer_balances=True)
            batch: list[StoredPurchase] = []
            for _, _, _, kind, payload in events:
                if kind == "purchase":
                    batch.append(payload)
                    if len(batch) >= BATCH:
                        self._purchases(writer, batch)
                        batch = []
                    continue
                self._purchases(writer, batch)
                batch = []
                writer.flush_balances()
                self._other(conn, catalog, kind, payload)
            self._purchases(writer, batch)
            writer.flush_balances()

    def _purchases(self, writer: PurchaseWriter, batch: list[StoredPurchase]) -> None:
        if not batch:
            return
        result = writer.write([(i, p.purchase) for i, p in enumerate(batch)])
        for pid, plan in result.recorded:
            self.replay_ids[plan.purchase.key] = pid
        for p in batch:
            self.live_keys[p.live_id] = p.purchase.key
        if result.rejections:
            self.rejected["purchases"] += len(result.rejections)

    def _other(self, conn: Connection, catalog: ProgramCatalog, kind: str,
               payload: Any) -> None:
        savepoint = conn.begin_nested()
        try:
            if kind == "refund":
                apply_refund(conn, catalog, payload.event, payload.recorded_at)
            elif kind == "redemption":
                redeem(conn, self._mapped(payload.request), payload.recorded_at,
                       allow_backdate=True)
                self.done.add(payload.request.redemption_id)
            elif payload.request.redemption_id in self.done:
                assert payload.reversed_at is not None
                reverse_redemption(conn, payload.request.redemption_id, payload.reversed_at,
                                   payload.reversal_at or payload.reversed_at)
            else:
                self.rejected["reversals"] += 1  # its redemption was refused here
        except LoyaltyError:
            savepoint.rollback()
            self.rejected[kind + "s"] += 1
            return
        savepoint.commit()

    def _mapped(self, request: Any) -> Any:
        """A request for a stamp card's voucher names the voucher by the live purchase's
        id: here it has the replayed purchase's."""
        code = request.voucher
        origin = self.vouchers.get(code) if code is not None else None
        if origin is None or origin[2] != "stamp_card" or origin[0] is None:
            return request
        key = self.live_keys.get(origin[0])
        replayed = self.replay_ids.get(key) if key is not None else None
        if replayed is None:
            return request
        prefix = f"{request.program_id}-{origin[1]}-{origin[0]}-"
        if not code.startswith(prefix):
            return request
        return request.model_copy(update={
            "voucher": f"{request.program_id}-{origin[1]}-{replayed}-{code[len(prefix):]}"})


# --- the totals -----------------------------------------------------------------------------

def _totals(conn: Connection, program_id: str, start: datetime, end: datetime,
            members: frozenset[str] | None, by_rule: dict[tuple[str, str, str], int],
            tiers: dict[str, str], catalog: ProgramCatalog) -> SideTotals:
    """One side's totals: by_rule's points by kind, the vouchers and fees of the window,
    the tier mix of `tiers` (the members' tiers at the end), the cost at the point value."""
    totals = SideTotals()
    for (_, rule, kind), points in by_rule.items():
        totals.net += points
        if kind == "earn":
            totals.issued += points
            totals.by_rule[rule] = totals.by_rule.get(rule, 0) + points
        elif kind == "refund":
            totals.refunded -= points
            totals.by_rule[rule] = totals.by_rule.get(rule, 0) + points
        elif kind in _REDEEMED:
            totals.redeemed -= points
        elif kind == "expire":
            totals.expired -= points
        else:
            totals.other += points
    totals.vouchers = vouchers_issued(conn, program_id, start, end, members)
    totals.fee_revenue_minor = fee_revenue(conn, program_id, start, end, members)
    for tier in tiers.values():
        shown = tier or "(none)"
        totals.tier_mix[shown] = totals.tier_mix.get(shown, 0) + 1
    version = catalog.in_force(program_id, end)
    if version is not None:
        totals.point_value = version.program.insights.economics.point_value
        totals.cost_minor = value_minor(totals.issued - totals.refunded, minor_per_point(
            totals.point_value, version.program.currency))
    return totals


def _side(engine: Engine, replay: _Replay | None, program_id: str, start: datetime,
          end: datetime, members: frozenset[str] | None
          ) -> tuple[SideTotals, dict[tuple[str, str, str], int], dict[str, str]]:
    with read_transaction(engine) as conn:
        catalog = load_catalog(conn)
        by_rule = ledger_by_rule(conn, program_id, start, end, members)
        tiers = tiers_of(conn, program_id, members)
        totals = _totals(conn, program_id, start, end, members, by_rule, tiers, catalog)
    if replay is not None:
        totals.rejected = dict(replay.rejected)
        totals.job_failures = replay.job_failures
    return totals, by_rule, tiers


def _net_by_member(by_rule: dict[tuple[str, str, str], int]) -> dict[str, int]:
    found: defaultdict[str, int] = defaultdict(int)
    for (member, _, _), points in by_rule.items():
        found[member] += points
    return dict(found)


# --- the use case -----------------------------------------------------------------------------

def _covers(catalog: ProgramCatalog, candidate: LoadedProgram) -> Callable[[str], bool]:
    """Whether a store is one of the candidate's or of a stored version of its program."""
    pid = candidate.definition.program
    programs = [v.program for v in catalog.versions(pid)] if pid in catalog.program_ids else []
    programs.append(candidate.compiled)
    return lambda store_id: any(p.covers(store_id) for p in programs)


@read_use_case
def history_span(conn: Connection, candidate: LoadedProgram,
                 members: list[str] | None = None) -> tuple[datetime, datetime] | None:
    """The first and last purchase a simulation of the candidate would replay (members'
    purchases, of the members given, at the stores of the candidate or of a stored version
    of its program); None without any."""
    return purchase_span(conn, _covers(load_catalog(conn), candidate),
                         frozenset(members) if members else None)


@read_use_case
def simulate(conn: Connection, candidate: LoadedProgram, start: datetime | None,
             end: datetime, members: list[str] | None = None, as_new: bool = False,
             verify: bool = False, workdir: Path | None = None) -> Simulation:
    """Replay the stored history of the candidate's program in [start, end] under the
    candidate and under the stored versions, in throw-away databases; compare.

    start None: from the program's first stored purchase. Raises NotFoundError when the
    candidate's program was never applied (unless as_new), and a LoyaltyError for a
    window that runs backwards or holds no purchase of the program."""
    started = time.perf_counter()
    pid = candidate.definition.program
    catalog = load_catalog(conn)
    stored = pid in catalog.program_ids
    if not stored and not as_new:
        known = ", ".join(catalog.program_ids) or "none has been applied"
        raise NotFoundError(f"{candidate.path} defines program {pid!r}, which matches no "
                            f"stored program (programs: {known}); pass --as-new to simulate "
                            "it as a new program")
    if stored and as_new:
        raise LoyaltyError(f"program {pid!r} is stored already; simulate it without --as-new "
                           "to compare it with its stored versions")
    versions = catalog.versions(pid) if stored else []
    covers = _covers(catalog, candidate)
    chosen = frozenset(members) if members else None
    if start is None:
        span = purchase_span(conn, covers, chosen)
        if span is None:
            who = f" by members {', '.join(sorted(chosen))}" if chosen else ""
            raise LoyaltyError(f"there are no stored purchases at the stores of program "
                               f"{pid!r}{who} to replay")
        start = span[0]
    if start > end:
        raise LoyaltyError(f"--from {start.isoformat()} is after --to {end.isoformat()}; "
                           "give a window that runs forwards")
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    history = _read_history(conn, pid, covers, end, chosen, stored)
    in_window = sum(1 for p in history.purchases if p.purchase.occurred_at >= start)
    if in_window == 0:
        who = f" by members {', '.join(sorted(chosen))}" if chosen else ""
        raise LoyaltyError(f"there are no purchases at the stores of program {pid!r}{who} "
                           f"between {start.isoformat()} and {end.isoformat()}; choose "
                           "another window")
    if as_new:
        history.purchases = [p for p in history.purchases if p.purchase.occurred_at >= start]
        history.refunds = [r for r in history.refunds if r.event.occurred_at >= start]
    events = _events(history)
    timings["read"] = time.perf_counter() - clock
    with _folder(workdir) as folder:
        live_engine = _throwaway(folder / "live.db")
        candidate_engine: Engine | None = None
        try:
            clock = time.perf_counter()
            snapshots = _reads_snapshots(candidate, versions)
            _seed(live_engine, history, pid, end, snapshots)
            first = events[0][0] - timedelta(microseconds=1)
            live = _Replay(live_engine, pid, history.vouchers)
            with read_transaction(live_engine) as replay_conn:
                live_fires = _ticks(_fires(load_catalog(replay_conn), pid, first, end,
                                           snapshots), events, end)
            live.run(events, live_fires, until=start)  # the warm-up
            timings["warm_up"] = time.perf_counter() - clock
            candidate_engine = _copy_file(live_engine, folder / "live.db",
                                          folder / "candidate.db")
            live_engine = _reopen(folder / "live.db")
            live.engine = live_engine
            _install_candidate(candidate_engine, candidate, start, as_new)
            window = [e for e in events if e[0] >= start]
            with read_transaction(candidate_engine) as replay_conn:
                # Compiles the candidate (as applying it would), before the replays.
                cand_fires = _ticks(_fires(load_catalog(replay_conn), pid,
                                           start - timedelta(microseconds=1), end,
                                           snapshots), window, end)
            cand = _Replay(candidate_engine, pid, history.vouchers)
            # The warm-up's purchases have the same ids in the copy.
            cand.replay_ids, cand.live_keys = dict(live.replay_ids), dict(live.live_keys)
            cand.done = set(live.done)
            clock = time.perf_counter()
            live.run(window, [f for f in live_fires if f >= start], until=None)
            timings["live_replay"] = time.perf_counter() - clock
            clock = time.perf_counter()
            # A fire time at the window's start itself is the candidate's.
            cand.run(window, [f for f in cand_fires if f >= start], until=None)
            timings["candidate_replay"] = time.perf_counter() - clock
            clock = time.perf_counter()
            live_totals, live_rules, live_tiers = _side(live_engine, live, pid, start, end,
                                                        chosen)
            cand_totals, cand_rules, cand_tiers = _side(candidate_engine, cand, pid, start,
                                                        end, chosen)
        finally:
            live_engine.dispose()
            if candidate_engine is not None:
                candidate_engine.dispose()
    verified = None
    if verify:
        verified = _mismatches(ledger_by_rule(conn, pid, start, end, chosen) if stored else {},
                               live_rules)
    before, after = _net_by_member(live_rules), _net_by_member(cand_rules)
    deltas = [MemberDelta(m, before.get(m, 0), after.get(m, 0), live_tiers.get(m),
                          cand_tiers.get(m))
              for m in sorted(set(before) | set(after) | set(live_tiers) | set(cand_tiers))
              if chosen is None or m in chosen]
    changed = [d for d in deltas if d.delta]
    currency = (versions[-1].program.currency if versions else candidate.compiled.currency)
    return Simulation(
        pid, currency, start, end, as_new, tuple(sorted(chosen)) if chosen else None,
        in_window, sum(1 for r in history.refunds if r.event.occurred_at >= start),
        sum(1 for r in history.redemptions if r.request.occurred_at >= start),
        cand.ticks, live_totals, cand_totals,
        sorted((d for d in changed if d.delta > 0), key=lambda d: (-d.delta, d.member_id))
        [:TOP_MEMBERS],
        sorted((d for d in changed if d.delta < 0), key=lambda d: (d.delta, d.member_id))
        [:TOP_MEMBERS],
        [d for d in deltas if (d.live_tier or "") != (d.candidate_tier or "")],
        len(changed), history.not_replayed, verified, time.perf_counter() - started,
        {**timings, "compare": time.perf_counter() - clock}, _out_of_order(history.purchases))


def _out_of_order(purchases: list[StoredPurchase]) -> int:
    """How many purchases were recorded after (at a later instant than) a later purchase of
    the same member. Purchases recorded together (one import) are not compared: the writer
    counts each batch in time order."""
    latest: dict[str | None, datetime] = {}
    found = 0
    ordered = sorted(purchases, key=lambda p: (p.recorded_at, p.live_id))
    i = 0
    while i < len(ordered):
        j = i
        while j < len(ordered) and ordered[j].recorded_at == ordered[i].recorded_at:
            j += 1
        group = ordered[i:j]
        for p in group:
            seen = latest.get(p.purchase.member_id)
            if seen is not None and p.purchase.occurred_at < seen:
                found += 1
        for p in group:
            member, at = p.purchase.member_id, p.purchase.occurred_at
            if member not in latest or latest[member] < at:
                latest[member] = at
        i = j
    return found


def _mismatches(live: dict[tuple[str, str, str], int],
                replayed: dict[tuple[str, str, str], int]) -> list[Mismatch]:
    return [Mismatch(m, r, k, live.get((m, r, k), 0), replayed.get((m, r, k), 0))
            for m, r, k in sorted(set(live) | set(replayed))
            if live.get((m, r, k), 0) != replayed.get((m, r, k), 0)]


class _folder:
    """A temporary folder (removed afterwards), or the one given (kept, for debugging)."""

    def __init__(self, given: Path | None) -> None:
        self.given = given
        self.tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> Path:
        if self.given is not None:
            self.given.mkdir(parents=True, exist_ok=True)
            return self.given
        self.tmp = tempfile.TemporaryDirectory(prefix="loyalty-simulate-")
        return Path(self.tmp.name)

    def __exit__(self, *exc: object) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()

