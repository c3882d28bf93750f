"""The schema as typed SQLAlchemy models; services use their tables with set-based Core SQL.

Every table that belongs to a member carries member_id, so the schema can later be sharded by
member without redesign.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from loyalty_engine.store.types import BigId, UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(), dict[str, Any]: JSON()
    }


class Member(Base):
    """A customer known to the engine by the id the POS uses."""

    __tablename__ = "members"

    member_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime]
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Set when the member's personal data was erased; the id is then refused for new data.
    erased_at: Mapped[datetime | None]


class Program(Base):
    """A loyalty program, identified by the `program` key of its file."""

    __tablename__ = "programs"

    program_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]


class ProgramVersion(Base):
    """One applied definition of a program, in force from effective_from until the next one."""

    __tablename__ = "program_versions"
    __table_args__ = (
        UniqueConstraint("program_id", "version"),
        UniqueConstraint("program_id", "effective_from"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    program_id: Mapped[str] = mapped_column(ForeignKey("programs.program_id"))
    version: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    effective_from: Mapped[datetime]
    applied_at: Mapped[datetime]
    source_path: Mapped[str] = mapped_column(String(500))
    source_text: Mapped[str] = mapped_column(Text)


class Enrolment(Base):
    """A member's membership of a program."""

    __tablename__ = "enrolments"

    member_id: Mapped[str] = mapped_column(ForeignKey("members.member_id"), primary_key=True)
    program_id: Mapped[str] = mapped_column(ForeignKey("programs.program_id"), primary_key=True)
    enrolled_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(16))


class Purchase(Base):
    """A purchase, stored once per (store_id, transaction_id); body_hash detects changed replays."""

    __tablename__ = "purchases"
    __table_args__ = (
        UniqueConstraint("store_id", "transaction_id"),
        Index(None, "member_id", "occurred_at"),
        CheckConstraint("total_minor >= 0", name="total_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(64))
    transaction_id: Mapped[str] = mapped_column(String(128))
    member_id: Mapped[str | None] = mapped_column(ForeignKey("members.member_id"))
    occurred_at: Mapped[datetime]
    currency: Mapped[str] = mapped_column(String(3))
    total_minor: Mapped[int] = mapped_column(BigInteger)
    body_hash: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime]
    # How it was paid and where it was bought, when the till said (domain.events).
    tender: Mapped[str | None] = mapped_column(String(16))
    channel: Mapped[str | None] = mapped_column(String(16))


class PurchaseItem(Base):
    """A line of a purchase; quantity in thousandths, amounts in minor units."""

    __tablename__ = "purchase_items"
    __table_args__ = (UniqueConstraint("purchase_id", "line_no"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    purchase_id: Mapped[int] = mapped_column(ForeignKey("purchases.id"))
    member_id: Mapped[str | None] = mapped_column(String(64))
    line_no: Mapped[int] = mapped_column(Integer)
    sku: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(64))
    quantity_milli: Mapped[int] = mapped_column(BigInteger)
    unit_price_minor: Mapped[int] = mapped_column(BigInteger)
    amount_minor: Mapped[int] = mapped_column(BigInteger)


class LedgerEntry(Base):
    """An append-only change of a member's points, with the version, rule and reason behind it.

    UPDATE and DELETE are refused by database triggers (see the initial migration).
    """

    __tablename__ = "ledger_entries"
    __table_args__ = (
        # The natural key that makes an award happen once per purchase, program and rule.
        UniqueConstraint("purchase_id", "program_id", "rule_id", "kind"),
        # Entries that are not a purchase's earnings (refunds, redemptions, expiries, debt
        # repayments) carry a natural key of their own in ref, e.g. "expire:<lot>".
        # (A unique index rather than a constraint: SQLite can add one without rebuilding
        # the table, which would drop its append-only triggers. Partial: a purchase's
        # earnings, most of the ledger, have no ref and need no entry in it.)
        Index(None, "kind", "ref", unique=True, postgresql_where=text("ref IS NOT NULL"),
              sqlite_where=text("ref IS NOT NULL")),
        Index(None, "member_id", "program_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("members.member_id"))
    # No foreign key on program_id: program_version_id already names a version of it, and
    # every check on this hot append path costs (see scripts/bench.py ingest).
    program_id: Mapped[str] = mapped_column(String(64))
    program_version_id: Mapped[int] = mapped_column(ForeignKey("program_versions.id"))
    kind: Mapped[str] = mapped_column(String(16))
    points: Mapped[int] = mapped_column(BigInteger)
    purchase_id: Mapped[int | None] = mapped_column(ForeignKey("purchases.id"))
    rule_id: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime]
    reason: Mapped[dict[str, Any]]
    ref: Mapped[str | None] = mapped_column(String(160))


class PointLot(Base):
    """Points earned together, spent and expired first-in-first-out; one per earning entry."""

    __tablename__ = "point_lots"
    __table_args__ = (
        Index(None, "member_id", "program_id", "earned_at"),
        CheckConstraint("remaining >= 0 AND remaining <= points", name="remaining_in_range"),
    )

    # member_id and program_id copy the earning entry's (reached through entry_id) so that
    # FIFO queries need no join; the entry's foreign keys already guard them.
    entry_id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id"), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(64))
    program_id: Mapped[str] = mapped_column(String(64))
    earned_at: Mapped[datetime]
    points: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime | None]
    # Pending (not spendable) while pending_until is set and activated_at is not.
    pending_until: Mapped[datetime | None]
    activated_at: Mapped[datetime | None]


class Balance(Base):
    """Cached per-program balance, updated in the same transaction as the ledger it sums."""

    __tablename__ = "balances"

    member_id: Mapped[str] = mapped_column(ForeignKey("members.member_id"), primary_key=True)
    program_id: Mapped[str] = mapped_column(ForeignKey("programs.program_id"), primary_key=True)
    points: Mapped[int] = mapped_column(BigInteger)  # spendable (negative: owed)
    lifetime_earned: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]
    pending: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # Inactivity expiry (points.expiry.inactive_months): the member's last activity (points
    # earned by a purchase, or spent by a redemption), the instant the whole balance lapses
    # without another (set at each activity), and the last lapse that came before one: lots
    # earned before it lapsed at it (ledger/lots.py).
    last_activity_at: Mapped[datetime | None]
    lapses_at: Mapped[datetime | None]
    lapsed_at: Mapped[datetime | None]


class ProgressCounter(Base):
    """A member's running count in a program: visits, spend, stamps or cap use per period."""

    __tablename__ = "progress_counters"

    member_id: Mapped[str] = mapped_column(ForeignKey("members.member_id"), primary_key=True)
    program_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    counter: Mapped[str] = mapped_column(String(80), primary_key=True)
    period: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class PurchaseProgress(Base):
    """What a purchase added to its member's counters, so that a refund can take it back."""

    __tablename__ = "purchase_progress"

    purchase_id: Mapped[int] = mapped_column(ForeignKey("purchases.id"), primary_key=True)
    program_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    counter: Mapped[str] = mapped_column(String(80), primary_key=True)
    period: Mapped[str] = mapped_column(String(32), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(64))
    delta: Mapped[int] = mapped_column(BigInteger)


class Voucher(Base):
    """A reward issued to a member: from a stamp card, bought with points, or a rebate."""

    __tablename__ = "vouchers"
    __table_args__ = (
        Index(None, "member_id", "program_id"),
        CheckConstraint("status IN ('issued', 'redeemed', 'void', 'expired')",
                        name="status_known"),
    )

    code: Mapped[str] = mapped_column(String(160), primary_key=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("members.member_id"))
    program_id: Mapped[str] = mapped_column(String(64))
    program_version_id: Mapped[int] = mapped_column(ForeignKey("program_versions.id"))
    reward_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    percent: Mapped[str | None] = mapped_column(String(16))
    sku: Mapped[str | None] = mapped_column(String(64))
    category: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))  # stamp_card | points
    purchase_id: Mapped[int | None] = mapped_column(ForeignKey("purchases.id"))
    rule_id: Mapped[str | None] = mapped_column(String(64))
    consumed: Mapped[dict[str, Any]]  # stamps used, by local date
    issued_at: Mapped[datetime]
    valid_until: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))
    redeemed_by: Mapped[str | None] = mapped_column(String(128))
    changed_at: Mapped[datetime]


class Refund(Base):
    """A refund of (part of) a purchase, stored once per (store_id, refund_id)."""

    __tablename__ = "refunds"
    __table_args__ = (
        UniqueConstraint("store_id", "refund_id"),
        Index(None, "purchase_id"),
        CheckConstraint("amount_minor > 0", name="amount_positive"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(64))
    refund_id: Mapped[str] = mapped_column(String(128))
    purchase_id: Mapped[int] = mapped_column(ForeignKey("purchases.id"))
    member_id: Mapped[str | None] = mapped_column(String(64))
    occurred_at: Mapped[datetime]
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    items: Mapped[dict[str, Any]]  # {"lines": [{"sku", "quantity_milli", "amount_minor"}]}
    body_hash: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime]
    result: Mapped[dict[str, Any]]  # what was reversed, returned again on a replay


class Redemption(Base):
    """Points or a voucher spent by a member, once per redemption_id; may be reversed."""

    __tablename__ = "redemptions"

    redemption_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("members.member_id"))
    program_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # points | voucher | reward
    points: Mapped[int] = mapped_column(BigInteger)
    voucher_code: Mapped[str | None] = mapped_column(String(160))
    reward_id: Mapped[str | None] = mapped_column(String(64))
    consumed: Mapped[dict[str, Any]]  # lot entry id -> points taken from it
    body_hash: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime]
    reversed_at: Mapped[datetime | None]


class PointDebt(Base):
    """Points a refund should have taken back but that were already spent.

    in_balance: the balance already shows them (went negative); otherwise new points
    repay the debt with a ledger entry of their own. Either way new lots repay it first.
    """

    __tablename__ = "point_debts"
    __table_args__ = (
        Index(None, "member_id", "program_id"),
        CheckConstraint("outstanding >= 0 AND outstanding <= points", name="outstanding_in_range"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("members.member_id"))
    program_id: Mapped[str] = mapped_column(String(64))
    refund_id: Mapped[int] = mapped_column(ForeignKey("refunds.id"))
    points: Mapped[int] = mapped_column(BigInteger)
    outstanding: Mapped[int] = mapped_column(BigInteger)
    in_balance: Mapped[bool]
    created_at: Mapped[datetime]


class RebateDebt(Base):
    """Money a refund should have taken back from a rebate voucher already used: the member
    owes it, and the next rebate of the same rule is smaller by it (outstanding shrinks)."""

    __tablename__ = "rebate_debts"
    __table_args__ = (
        UniqueConstraint("member_id", "refund_id", "program_id", "rule_id", "period"),
        Index(None, "member_id", "program_id", "rule_id"),
        CheckConstraint("outstanding_minor >= 0 AND outstanding_minor <= amount_minor",
                        name="outstanding_in_range"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("members.member_id"))
    program_id: Mapped[str] = mapped_column(String(64))
    rule_id: Mapped[str] = mapped_column(String(64))
    period: Mapped[str] = mapped_column(String(32))  # of the used voucher
    voucher_code: Mapped[str] = mapped_column(String(160))
    refund_id: Mapped[int] = mapped_column(ForeignKey("refunds.id"))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    outstanding_minor: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]
    repaid_by: Mapped[str | None] = mapped_column(String(160))  # the last voucher repaying it


class TierStatus(Base):
    """A member's tier in a program: earned by credit, held, and an operator's floor."""

    __tablename__ = "tier_status"

    member_id: Mapped[str] = mapped_column(ForeignKey("members.member_id"), primary_key=True)
    program_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tier: Mapped[str] = mapped_column(String(64))  # earned ('' below the lowest threshold)
    base_tier: Mapped[str] = mapped_column(String(64))  # as of the last review (or enrolment)
    held_until: Mapped[date | None] = mapped_column(Date)  # hold_next_period
    base_held_until: Mapped[date | None] = mapped_column(Date)  # the base tier's hold
    manual_tier: Mapped[str | None] = mapped_column(String(64))
    manual_until: Mapped[datetime | None]
    manual_reason: Mapped[str | None] = mapped_column(String(200))
    enrolled_on: Mapped[date] = mapped_column(Date)  # local date anniversaries count from
    reviewed_on: Mapped[date | None] = mapped_column(Date)  # the last review day applied
    updated_at: Mapped[datetime]


class TierHistory(Base):
    """Every change of a member's tier, with its reason; ref makes a review's change once."""

    __tablename__ = "tier_history"
    __table_args__ = (
        UniqueConstraint("member_id", "program_id", "ref"),
        Index(None, "member_id", "program_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # No foreign key: only members with a tier_status row (which has one) get history, and
    # a review appends tens of thousands of rows at once (see scripts/bench.py scheduler).
    member_id: Mapped[str] = mapped_column(String(64))
    program_id: Mapped[str] = mapped_column(String(64))
    from_tier: Mapped[str] = mapped_column(String(64))
    to_tier: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(16))  # enrolment|upgrade|review|refund|manual
    changed_at: Mapped[datetime]
    detail: Mapped[dict[str, Any]]
    ref: Mapped[str | None] = mapped_column(String(160))


class ClubMembership(Base):
    """A member's membership of a club: its level, state and paid term."""

    __tablename__ = "club_memberships"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'active', 'grace', 'lapsed', 'cancelled', "
                        "'left')", name="status_known"),
        Index(None, "program_id", "club_id", "status"),
    )

    member_id: Mapped[str] = mapped_column(ForeignKey("members.member_id"), primary_key=True)
    program_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    club_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    level: Mapped[str] = mapped_column(String(64))  # '' for clubs without levels
    status: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))  # purchase | explicit | till
    joined_at: Mapped[datetime]
    term_start: Mapped[datetime | None]
    term_end: Mapped[datetime | None]  # paid through (fee clubs)
    auto_renew: Mapped[bool]
    ended_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class HouseholdMember(Base):
    """A secondary member sharing a primary's fee-club membership, from added_at until
    removed_at (or the primary's membership's end). Keyed by the secondary: one row per
    stint, so a purchase is judged by the stint it was made in."""

    __tablename__ = "household_members"
    __table_args__ = (
        Index(None, "program_id", "club_id", "primary_member_id"),
    )

    member_id: Mapped[str] = mapped_column(ForeignKey("members.member_id"), primary_key=True)
    program_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    club_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    added_at: Mapped[datetime] = mapped_column(primary_key=True)
    primary_member_id: Mapped[str] = mapped_column(ForeignKey("members.member_id"))
    removed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class FeeCharge(Base):
    """A club fee the member owes or paid; the engine keeps charges, it moves no money."""

    __tablename__ = "fee_charges"
    __table_args__ = (
        # Exactly one charge per membership term and kind: renewals can be re-run safely.
        UniqueConstraint("member_id", "program_id", "club_id", "kind", "term_start"),
        CheckConstraint("status IN ('due', 'paid', 'failed', 'refunded', 'waived')",
                        name="status_known"),
        CheckConstraint("amount_minor >= 0", name="amount_not_negative"),
        Index(None, "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("members.member_id"))
    program_id: Mapped[str] = mapped_column(String(64))
    club_id: Mapped[str] = mapped_column(String(64))
    level: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # join | renewal | upgrade | trial
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    term_start: Mapped[datetime]
    term_end: Mapped[datetime]
    due_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))
    paid_at: Mapped[datetime | None]
    paid_via: Mapped[str | None] = mapped_column(String(16))  # service | till | points
    paid_ref: Mapped[str | None] = mapped_column(String(160))
    points: Mapped[int | None] = mapped_column(BigInteger)
    refunded_minor: Mapped[int | None] = mapped_column(BigInteger)
    detail: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class GroupVerification(Base):
    """An operator's verification that a member belongs to an affinity group."""

    __tablename__ = "group_verifications"

    member_id: Mapped[str] = mapped_column(ForeignKey("members.member_id"), primary_key=True)
    program_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    group_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    evidence: Mapped[str] = mapped_column(String(200))
    verified_at: Mapped[datetime]
    verified_until: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))  # active | lapsed
    lapsed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class MemberConsent(Base):
    """A consent flag (marketing, ...) given or withdrawn, with when."""

    __tablename__ = "member_consents"

    member_id: Mapped[str] = mapped_column(ForeignKey("members.member_id"), primary_key=True)
    flag: Mapped[str] = mapped_column(String(64), primary_key=True)
    given: Mapped[bool]
    given_at: Mapped[datetime | None]
    withdrawn_at: Mapped[datetime | None]
    changed_at: Mapped[datetime]


class MemberEvent(Base):
    """The outbox: things that happened to a member that a CRM or e-mail system may act on.

    id increases monotonically (readers page with `since`); key is the event's natural key,
    so a step run twice (or by two processes) records it once.
    """

    __tablename__ = "member_events"
    __table_args__ = (
        UniqueConstraint("key"),
        Index(None, "member_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(240))
    kind: Mapped[str] = mapped_column(String(32))
    member_id: Mapped[str] = mapped_column(String(64))
    program_id: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime]
    data: Mapped[dict[str, Any]]
    recorded_at: Mapped[datetime]


class SchedulerWatermark(Base):
    """How far the scheduler has run a job for a program: its last fire time done."""

    __tablename__ = "scheduler_watermarks"

    program_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    job: Mapped[str] = mapped_column(String(32), primary_key=True)
    ran_to: Mapped[datetime]
    runs: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class JobEffect(Base):
    """An effect a scheduled job had on a member, under its natural key: the job writes it
    insert-if-absent and applies only what it inserted, so the effect happens once."""

    __tablename__ = "job_effects"

    program_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    job: Mapped[str] = mapped_column(String(32), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    effect_key: Mapped[str] = mapped_column(String(160), primary_key=True)  # rule:period, ...
    detail: Mapped[dict[str, Any]]
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime]


class JobFailure(Base):
    """A job that failed, for one member or (member_id '*') for a whole program: retried on
    the next run, and marked resolved when that succeeds."""

    __tablename__ = "job_failures"
    __table_args__ = (UniqueConstraint("program_id", "job", "member_id", "failure_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    program_id: Mapped[str] = mapped_column(String(64))
    job: Mapped[str] = mapped_column(String(32))
    member_id: Mapped[str] = mapped_column(String(64))
    failure_key: Mapped[str] = mapped_column(String(160))  # the period or review day
    reason: Mapped[str] = mapped_column(Text)
    as_of: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(BigInteger)
    first_failed_at: Mapped[datetime]
    last_failed_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]


class ApiKey(Base):
    """A key the HTTP API accepts: its public id, a hash of its secret (the secret itself is
    shown once and never stored), its scope and, for a POS key, the stores it may write for."""

    __tablename__ = "api_keys"
    __table_args__ = (
        # A name belongs to one live key; a revoked key's name may be given to a new one
        # (the revoked row stays, for the record).
        Index(None, "name", unique=True, postgresql_where=text("revoked_at IS NULL"),
              sqlite_where=text("revoked_at IS NULL")),
        UniqueConstraint("key_id"),
        CheckConstraint("scope IN ('pos', 'admin')", name="scope_known"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    key_id: Mapped[str] = mapped_column(String(32))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(8))
    stores: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class ApiResponse(Base):
    """The first response to an HTTP write, kept under the write's natural key (a purchase's
    store and transaction, a redemption's id, ...) so that a replay returns it unchanged."""

    __tablename__ = "api_responses"

    endpoint: Mapped[str] = mapped_column(String(32), primary_key=True)
    idem_key: Mapped[str] = mapped_column(String(300), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)  # the JSON exactly as first sent
    created_at: Mapped[datetime]


class AuditRecord(Base):
    """An operator's act on the books (a points adjustment, an erasure): who (an API key's
    name or the operator's name), what, on which member, when and why."""

    __tablename__ = "audit_records"
    __table_args__ = (Index(None, "member_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(32))
    member_id: Mapped[str | None] = mapped_column(String(64))
    program_id: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)


class RfmSnapshot(Base):
    """A member's relationship measures in one program as of one run date (program time):
    recency, frequency and monetary value net of refunds, their 1-5 scores, the segment
    the program's map gives them, and the CLV model's figures when it could be fitted.
    Written once per (member, program, date) by the rfm_snapshot job; a purchase reads the
    latest one taken at or before it (member.segment)."""

    __tablename__ = "rfm_snapshots"
    __table_args__ = (
        Index(None, "program_id", "as_of_date"),
    )

    member_id: Mapped[str] = mapped_column(ForeignKey("members.member_id"), primary_key=True)
    program_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    as_of_date: Mapped[date] = mapped_column(primary_key=True)
    taken_at: Mapped[datetime]  # the instant the figures are as of (UTC)
    recency_days: Mapped[int]
    frequency: Mapped[int]  # purchases, net of those refunded in full
    monetary_minor: Mapped[int] = mapped_column(BigInteger)
    r: Mapped[int] = mapped_column(SmallInteger)
    f: Mapped[int] = mapped_column(SmallInteger)
    m: Mapped[int] = mapped_column(SmallInteger)
    segment: Mapped[str] = mapped_column(String(64))
    clv_minor: Mapped[int | None] = mapped_column(BigInteger)
    p_alive: Mapped[float | None] = mapped_column(Float)
    recorded_at: Mapped[datetime]


class WalletTotal(Base):
    """A member's total spend in a category and period at every supplier, from a survey or
    a data provider (loyalty analytics wallet import): the denominator of share of wallet."""

    __tablename__ = "wallet_totals"

    member_id: Mapped[str] = mapped_column(ForeignKey("members.member_id"), primary_key=True)
    category: Mapped[str] = mapped_column(String(64), primary_key=True)
    period: Mapped[str] = mapped_column(String(32), primary_key=True)  # 2026, 2026-Q1, 2026-03
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(200))
    recorded_at: Mapped[datetime]


class MemberSurvey(Base):
    """An attitudinal answer of a member: an NPS score (0-10) or a commitment score (1-7),
    dated; the latest answer of a kind is the member's attitude."""

    __tablename__ = "member_surveys"
    __table_args__ = (
        UniqueConstraint("member_id", "kind", "answered_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("members.member_id"))
    kind: Mapped[str] = mapped_column(String(16))  # nps | commitment
    score: Mapped[int] = mapped_column(SmallInteger)
    answered_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(200))
    recorded_at: Mapped[datetime]


metadata = Base.metadata

# The tables as Core objects, for the set-based SQL of services.
members = cast(Table, Member.__table__)
programs = cast(Table, Program.__table__)
program_versions = cast(Table, ProgramVersion.__table__)
enrolments = cast(Table, Enrolment.__table__)
purchases = cast(Table, Purchase.__table__)
purchase_items = cast(Table, PurchaseItem.__table__)
ledger_entries = cast(Table, LedgerEntry.__table__)
point_lots = cast(Table, PointLot.__table__)
balances = cast(Table, Balance.__table__)
progress_counters = cast(Table, ProgressCounter.__table__)
purchase_progress = cast(Table, PurchaseProgress.__table__)
vouchers = cast(Table, Voucher.__table__)
refunds = cast(Table, Refund.__table__)
redemptions = cast(Table, Redemption.__table__)
point_debts = cast(Table, PointDebt.__table__)
rebate_debts = cast(Table, RebateDebt.__table__)
tier_status = cast(Table, TierStatus.__table__)
tier_history = cast(Table, TierHistory.__table__)
club_memberships = cast(Table, ClubMembership.__table__)
fee_charges = cast(Table, FeeCharge.__table__)
household_members = cast(Table, HouseholdMember.__table__)
group_verifications = cast(Table, GroupVerification.__table__)
member_consents = cast(Table, MemberConsent.__table__)
scheduler_watermarks = cast(Table, SchedulerWatermark.__table__)
job_effects = cast(Table, JobEffect.__table__)
JOB_EFFECT_KEY = ("program_id", "job", "member_id", "effect_key")  # job_effects' natural key
api_keys = cast(Table, ApiKey.__table__)
api_responses = cast(Table, ApiResponse.__table__)
job_failures = cast(Table, JobFailure.__table__)
member_events = cast(Table, MemberEvent.__table__)
audit_records = cast(Table, AuditRecord.__table__)
rfm_snapshots = cast(Table, RfmSnapshot.__table__)
wallet_totals = cast(Table, WalletTotal.__table__)
member_surveys = cast(Table, MemberSurvey.__table__)
