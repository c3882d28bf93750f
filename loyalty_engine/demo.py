"""The demo: a seeded year of a coffee chain's customers run through the engine.

Frequent customers come every week or more, occasional ones a few times a month, lapsed
ones were regulars who stopped coming; some purchases are anonymous. Many of them also shop
at a beauty retailer with a tiered program, whose tier review runs at the end. The same
seed and as-of always give the same purchases.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from loyalty_engine.analytics.clv import MODELS, RETENTION
from loyalty_engine.domain.events import PurchaseEvent
from loyalty_engine.domain.money import currency_exponent, format_minor
from loyalty_engine.domain.purchases import Purchase
from loyalty_engine.domain.redemptions import RedemptionRequest
from loyalty_engine.domain.refunds import RefundEvent
from loyalty_engine.records.member_figures import segment_mix, snapshot_clv
from loyalty_engine.records.purchase_writer import PurchaseWriter
from loyalty_engine.services.analytics_members import take_snapshot
from loyalty_engine.services.analytics_retention import retention_report
from loyalty_engine.services.clubs import advance_clubs
from loyalty_engine.services.points import activate_pending
from loyalty_engine.services.programs import apply_program_files, load_catalog
from loyalty_engine.services.redemptions import redeem
from loyalty_engine.services.refunds import record_refund
from loyalty_engine.services.tiers import review_tiers
from loyalty_engine.store.database import read_transaction, write_transaction
from loyalty_engine.store.tables import (
    Balance,
    ClubMembership,
    LedgerEntry,
    TierStatus,
    Voucher,
)
from loyalty_engine.store.tables import Purchase as PurchaseRow

# sku, category, unit price in cents: what a coffee bar sells.
CATALOGUE: tuple[tuple[str, str, int], ...] = (
    ("ESPRESSO", "coffee", 240), ("FLAT-WHITE", "coffee", 360), ("CAPPUCCINO", "coffee", 340),
    ("OAT-LATTE", "coffee", 410), ("CHAI", "tea", 350), ("GREEN-TEA", "tea", 290),
    ("CROISSANT", "pastry", 220), ("CINNAMON-BUN", "pastry", 310),
    ("SANDWICH", "lunch", 695), ("SOUP", "lunch", 550),
    ("BEANS-HOUSE-250G", "coffee-beans", 895), ("BEANS-ETHIOPIA-250G", "coffee-beans", 1295),
    ("SPARKLING-WATER", "drinks", 275), ("DEPOSIT-BOTTLE", "drinks", 15),
    ("GIFT-CARD-25", "gift-cards", 2500),
)
STORES = ("AMS-CENTRAAL", "AMS-ZUID", "UTR-01", "RTM-01")
# What the beauty retailer next door sells (Glow Beauty, rules/glow-beauty.yaml).
BEAUTY: tuple[tuple[str, str, int], ...] = (
    ("LIPSTICK", "makeup", 2400), ("MASCARA", "makeup", 2900), ("SERUM", "skincare", 6500),
    ("DAY-CREAM", "skincare", 4200), ("PERFUME-50ML", "fragrance", 8900),
    ("GIFT-CARD-50", "gift-cards", 5000),
)
BEAUTY_STORES = ("GB-PARIS-01", "GB-LYON-01")
# How often each kind of customer visits the beauty stores: mean days between visits.
BEAUTY_GAP = {"frequent": 21.0, "occasional": 45.0, "lapsed": 90.0}
SEGMENTS = {"frequent": 0.2, "occasional": 0.5, "lapsed": 0.3}


@dataclass(slots=True)
class SegmentStats:
    """Per-segment totals for the summary."""

    members: int = 0
    purchases: int = 0
    spend_minor: int = 0
    points: dict[str, int] = field(default_factory=dict)  # per program


@dataclass(slots=True)
class DemoSummary:
    """What the demo did, for printing."""

    database: str
    as_of: datetime
    programs: list[str]
    members: int
    purchases: int
    anonymous: int
    points: dict[str, int]  # in the ledger, per program
    currency: str
    segments: dict[str, SegmentStats] = field(default_factory=dict)
    top: list[tuple[str, str, int]] = field(default_factory=list)  # program, member, points
    replay_changed: int = 0
    refunds: int = 0
    points_refunded: dict[str, int] = field(default_factory=dict)
    stamp_vouchers: int = 0
    redemptions: int = 0
    points_redeemed: int = 0
    pending_activated: dict[str, int] = field(default_factory=dict)
    tiers: dict[str, int] = field(default_factory=dict)  # glow-beauty tier -> members
    tier_reviews: int = 0
    tier_review_seconds: float = 0.0
    tier_review_days: list[str] = field(default_factory=list)
    club_members: int = 0
    # What the engine knows about Bean There's members at the year's end (its RFM snapshot,
    # retention, lifetime value): segment -> members, the last complete quarter's retention
    # (its label and rate), the customer base value and how it was worked out.
    segment_mix: dict[str, int] = field(default_factory=dict)
    retention: tuple[str, float | None] | None = None
    base_value_minor: int = 0
    clv_method: str = ""

    def money(self, minor: int) -> str:
        """Minor units in the demo's currency."""
        return f"{format_minor(minor, currency_exponent(self.currency))} {self.currency}"


def generate(seed: int, as_of: datetime, members: int) -> Iterator[tuple[str, Purchase]]:
    """Seeded purchases over the year before as_of, each with its member's segment."""
    rng = random.Random(seed)
    beauty = random.Random(seed + 7)  # its own stream: the coffee year stays as it was
    start = as_of - timedelta(days=365)
    serial = 0
    for number in range(1, members + 1):
        member_id = f"M{number:05d}"
        segment = rng.choices(list(SEGMENTS), weights=list(SEGMENTS.values()))[0]
        home = rng.choice(STORES)
        if segment == "frequent":
            gap_days, stop = 7 / rng.uniform(0.6, 1.4), as_of
        elif segment == "occasional":
            gap_days, stop = 30 / rng.uniform(0.6, 1.8), as_of
        else:
            gap_days, stop = 7 / rng.uniform(0.5, 1.0), start + timedelta(days=rng.randint(60, 180))
        at = start + timedelta(days=rng.uniform(0, gap_days))
        while at < stop:
            serial += 1
            yield segment, _basket(rng, serial, member_id, rng.choice([home, home, *STORES]), at)
            if rng.random() < 0.1:  # an anonymous walk-in at the same store
                serial += 1
                yield "anonymous", _basket(rng, serial, None, home, at + timedelta(minutes=7))
            at += timedelta(days=rng.expovariate(1 / gap_days))
        if beauty.random() < 0.6:
            gap = BEAUTY_GAP[segment] / beauty.uniform(0.5, 1.5)
            at = start + timedelta(days=beauty.uniform(0, gap))
            while at < as_of:
                serial += 1
                yield segment, _basket(beauty, serial, member_id, beauty.choice(BEAUTY_STORES),
                                       at, BEAUTY, "BEAUTY")
                at += timedelta(days=beauty.expovariate(1 / gap))


def _basket(rng: random.Random, serial: int, member_id: str | None, store: str,
            at: datetime, catalogue: tuple[tuple[str, str, int], ...] = CATALOGUE,
            prefix: str = "DEMO") -> Purchase:
    picks = [rng.choice(catalogue[:6])]
    for _ in range(rng.choice([0, 0, 1, 1, 2])):
        picks.append(rng.choice(catalogue))
    exponent = currency_exponent("EUR")
    items = []
    total = 0
    for sku, category, price in picks:
        quantity = rng.choice([1, 1, 1, 2])
        total += quantity * price
        items.append({"sku": sku, "category": category, "quantity": str(quantity),
                      "unit_price": format_minor(price, exponent)})
    occurred = at.replace(hour=rng.randint(7, 18), minute=rng.randint(0, 59), second=0,
                          microsecond=0)
    # Through the same validated event model as files and HTTP, so the demo's data is real.
    return PurchaseEvent.model_validate({
        "transaction_id": f"{prefix}-{serial:06d}", "store_id": store, "member_id": member_id,
        "occurred_at": occurred, "currency": "EUR", "total": format_minor(total, exponent),
        "items": items,
    }).to_purchase()


def run_demo(engine: Engine, rules_dir: Path, as_of: datetime, seed: int,
             members: int) -> DemoSummary:
    """Apply rules_dir, run a seeded year of purchases through the engine, then replay it."""
    applied = apply_program_files(engine, [rules_dir], as_of)
    segment_of: dict[str, str] = {}
    stats: dict[str, SegmentStats] = {s: SegmentStats() for s in (*SEGMENTS, "anonymous")}
    generated = list(generate(seed, as_of, members))
    with write_transaction(engine) as conn:
        writer = PurchaseWriter(conn, load_catalog(conn), as_of, defer_balances=True)
        for start in range(0, len(generated), 2000):
            chunk = generated[start : start + 2000]
            result = writer.write([(i, p) for i, (_, p) in enumerate(chunk, start=start)])
            for ref, outcome in result.outcomes:
                segment, purchase = generated[ref]
                s = stats[segment]
                s.purchases += 1
                s.spend_minor += purchase.total_minor
                for award in outcome.awards:
                    s.points[award.program_id] = s.points.get(award.program_id, 0) + award.points
                if purchase.member_id:
                    segment_of[purchase.member_id] = segment
        writer.flush_balances()
    for segment in segment_of.values():
        stats[segment].members += 1
    # Post the whole year a second time, as a POS retrying everything would: nothing changes.
    with write_transaction(engine) as conn:
        writer = PurchaseWriter(conn, load_catalog(conn), as_of)
        again = writer.write([(i, p) for i, (_, p) in enumerate(generated)])
        changed = sum(1 for _, outcome in again.outcomes if not outcome.replayed)
    extras = _after_the_year(engine, generated, as_of, seed)
    extras.update(_know_the_members(engine, as_of))
    with read_transaction(engine) as conn:
        # The three members with the most spendable points in each program.
        ranked = select(Balance.program_id, Balance.member_id, Balance.points,
                        func.row_number().over(
                            partition_by=Balance.program_id,
                            order_by=(Balance.points.desc(), Balance.member_id)).label("rank")
                        ).subquery()
        top = conn.execute(select(ranked.c.program_id, ranked.c.member_id, ranked.c.points)
                           .where(ranked.c.rank <= 3, ranked.c.points > 0)
                           .order_by(ranked.c.program_id, ranked.c.rank)).all()
        points = dict(conn.execute(
            select(LedgerEntry.program_id, func.sum(LedgerEntry.points))
            .group_by(LedgerEntry.program_id).order_by(LedgerEntry.program_id)).all())
        purchases = conn.execute(select(func.count()).select_from(PurchaseRow)).scalar_one()
    return DemoSummary(
        database=str(engine.url.render_as_string(hide_password=True)), as_of=as_of,
        programs=[f"{r.program_id} v{r.version}" for r in applied],
        members=len(segment_of), purchases=int(purchases),
        anonymous=stats["anonymous"].purchases,
        points={pid: int(n) for pid, n in points.items()}, currency="EUR", segments=stats,
        top=[(pid, m, int(p)) for pid, m, p in top], replay_changed=changed, **extras,
    )


def _know_the_members(engine: Engine, as_of: datetime) -> dict[str, Any]:
    """Bean There's members measured at the year's end, as the weekly rfm_snapshot job
    would: the snapshot (segments, CLV), retention by quarter, the customer base value."""
    program = "bean-there"
    with read_transaction(engine) as conn:
        zone = load_catalog(conn).versions(program)[-1].program.timezone
    run_date = as_of.astimezone(zone).date()
    take_snapshot(engine, program, as_of, run_date, as_of)
    with read_transaction(engine) as conn:
        # Largest segment first.
        mix = dict(sorted(segment_mix(conn, program, as_of).items(),
                          key=lambda item: (-item[1], item[0])))
        # The snapshot stored every member's CLV (Bean There has no RFM window: all its
        # purchasing members are in it), so the base value is their sum: no second fit.
        base_value, fitted = snapshot_clv(conn, program, run_date)
    quarters = retention_report(engine, program, as_of, period="quarter", periods=4)
    complete = [p for p in quarters.periods if not p.partial and p.at_start]
    return {"segment_mix": mix,
            "retention": (complete[-1].period, complete[-1].retention) if complete else None,
            "base_value_minor": base_value, "clv_method": MODELS if fitted else RETENTION}


def _after_the_year(engine: Engine, generated: list[tuple[str, Purchase]], as_of: datetime,
                    seed: int) -> dict[str, Any]:
    """Refund a few purchases, let pending points become spendable, and let the members
    with enough points buy a voucher: the rest of the program language at work."""
    rng = random.Random(seed + 1)
    refunds = 0
    refunded: dict[str, int] = {}
    for _, purchase in generated:
        if purchase.member_id is None or rng.random() >= 0.02:
            continue
        when = purchase.occurred_at + timedelta(days=rng.randint(1, 10))
        if when > as_of:
            continue
        exponent = currency_exponent(purchase.currency)
        # Half of them in full, the rest in part: points come back pro rata either way.
        share = purchase.total_minor if rng.random() < 0.5 else purchase.total_minor // 2
        if share == 0:
            continue
        outcome = record_refund(engine, RefundEvent.model_validate({
            "refund_id": f"RF-{purchase.transaction_id}", "store_id": purchase.store_id,
            "original_transaction_id": purchase.transaction_id, "occurred_at": when,
            "amount": format_minor(share, exponent)}), as_of)
        refunds += 1
        for program_id, points in outcome.points.items():
            refunded[program_id] = refunded.get(program_id, 0) + points
    activated = activate_pending(engine, as_of)
    # The tier review of every year-end the demo's year spans, set-based, timed.
    started = time.perf_counter()
    review = review_tiers(engine, as_of, as_of)
    review_seconds = time.perf_counter() - started
    advance_clubs(engine, as_of, as_of)
    redemptions = redeemed = 0
    with read_transaction(engine) as conn:
        rich = conn.execute(
            select(Balance.member_id).where(Balance.program_id == "bean-there",
                                            Balance.points >= 250).order_by(Balance.member_id)
        ).scalars().all()
        stamp_vouchers = conn.execute(
            select(func.count()).select_from(Voucher).where(Voucher.source == "stamp_card")
        ).scalar_one()
    for member_id in rich:
        bought = redeem(engine, RedemptionRequest(
            redemption_id=f"RD-{member_id}", member_id=member_id, program_id="bean-there",
            occurred_at=as_of, reward="five-euro-off"), as_of)
        redemptions += 1
        redeemed += bought.points
    with read_transaction(engine) as conn:
        tiers = {tier: int(n) for tier, n in conn.execute(
            select(TierStatus.tier, func.count()).where(TierStatus.program_id == "glow-beauty")
            .group_by(TierStatus.tier).order_by(TierStatus.tier))}
        club_members = conn.execute(
            select(func.count()).select_from(ClubMembership)
            .where(ClubMembership.club_id == "bean-club")).scalar_one()
    return {"refunds": refunds, "points_refunded": refunded, "stamp_vouchers": stamp_vouchers,
            "redemptions": redemptions, "points_redeemed": redeemed,
            "pending_activated": activated.by_program, "tiers": tiers,
            "tier_reviews": review.reviewed.get("glow-beauty", 0),
            "tier_review_seconds": review_seconds,
            "tier_review_days": review.review_days.get("glow-beauty", []),
            "club_members": int(club_members)}
