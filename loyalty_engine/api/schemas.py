"""The API's own request and response bodies (purchases, refunds and redemptions come in as
the domain's event models, shared with the file import)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator
from pydantic_core import to_json

from loyalty_engine.domain.events import ID_PATTERN, Identifier, Instant
from loyalty_engine.services.surveys import score_in_kind_range

# A member's id in a URL path.
MemberId = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]
AttributeName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")]
ConsentFlag = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")]
AttributeValue = Annotated[str, Field(max_length=500, pattern=r"^[^\x00]*$")] | Annotated[
    int, Field(ge=-(2**53), le=2**53)] | bool | None


def request_digest(*parts: Any) -> str:
    """The digest of a request's normalised parts (its request_hash)."""
    return hashlib.sha256(to_json(parts)).hexdigest()


def utc_text(value: datetime | None) -> str | None:
    """An instant in UTC as ISO 8601 text, as request hashes and keys hold it."""
    return None if value is None else value.astimezone(UTC).isoformat()


class RequestBody(BaseModel):
    """A request body: no unknown fields, not changed once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class EnrolRequest(RequestBody):
    """A member to create (or whose attributes and consents to add to)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "member_id": "M-42", "program_id": "bean-there",
        "attributes": {"date_of_birth": "1990-05-17", "home_store": "AMS-01"},
        "consents": {"marketing": True}}]})

    member_id: Identifier
    program_id: Identifier | None = Field(
        default=None, description="also enrol the member in this program")
    attributes: Annotated[dict[AttributeName, AttributeValue], Field(max_length=50)] = {}
    consents: Annotated[dict[ConsentFlag, bool], Field(max_length=50)] = Field(
        default={}, description="consent flags given (true) or withdrawn (false)")
    occurred_at: Instant | None = Field(
        default=None, description="when the member signed up (default: now)")

    def request_hash(self) -> str:
        """Hash of the normalised request, to tell a replay from a reuse of the member id."""
        return request_digest(self.member_id, self.program_id, sorted(self.attributes.items()),
                     sorted(self.consents.items()), utc_text(self.occurred_at))


class ReverseRequest(RequestBody):
    """When the reversal happened (default: now)."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"occurred_at": "2026-03-20T10:05:00+01:00"}]})

    occurred_at: Instant | None = None

    def request_hash(self) -> str:
        """Hash of the normalised request."""
        return request_digest(utc_text(self.occurred_at))


class FeePayment(RequestBody):
    """A fee charge paid in money (recorded; the engine moves none) or in points."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"paid_at": "2026-03-20T10:05:00+01:00", "reference": "PSP-98311"},
        {"in_points": True}]})

    paid_at: Instant | None = Field(default=None, description="when it was paid (default: now)")
    in_points: bool = Field(default=False, description="pay with the level's points price")
    reference: Annotated[str, Field(min_length=1, max_length=160,
                                    pattern=ID_PATTERN)] | None = Field(
        default=None, description="the payment provider's reference")

    def request_hash(self) -> str:
        """Hash of the normalised request."""
        return request_digest(utc_text(self.paid_at), self.in_points, self.reference)


class SurveyRequest(RequestBody):
    """An attitudinal answer of a member: an NPS score (0-10) or a commitment score (1-7)."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"kind": "nps", "score": 9, "answered_at": "2026-05-30T18:20:00+02:00"},
        {"kind": "commitment", "score": 6, "answered_at": "2026-05-30T18:20:00+02:00"}]})

    kind: Literal["nps", "commitment"] = Field(description="nps: would recommend us, 0-10; "
                                               "commitment: feels committed to us, 1-7")
    score: StrictInt = Field(description="a whole number in the kind's range")
    answered_at: Instant = Field(description="when the member answered; with the member "
                                 "and the kind, the answer's natural key")

    _in_range = field_validator("score")(score_in_kind_range)

    def request_hash(self) -> str:
        """Hash of the normalised request."""
        return request_digest(self.kind, self.score, utc_text(self.answered_at))


class SurveyRecorded(BaseModel):
    """An answer as stored."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": 17, "member_id": "M-42", "kind": "nps", "score": 9,
        "answered_at": "2026-05-30T16:20:00Z", "source": "api:till-ams"}]})

    id: int
    member_id: str
    kind: str
    score: int
    answered_at: datetime
    source: str = Field(description="where it came from: api:<key name>, or file:<name> "
                        "for an import")


class Award(BaseModel):
    """Points one rule gave."""

    program_id: str
    program_version: int
    rule_id: str
    points: int


class PurchaseRecorded(BaseModel):
    """A purchase recorded, with the points each program and each rule gave it."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "purchase_id": 1, "store_id": "AMS-01", "transaction_id": "T-1001",
        "member_id": "M-42", "points": {"bean-there": 8},
        "awards": [{"program_id": "bean-there", "program_version": 1,
                    "rule_id": "points-per-euro", "points": 7},
                   {"program_id": "bean-there", "program_version": 1,
                    "rule_id": "first-visit", "points": 1}]}]})

    purchase_id: int
    store_id: str
    transaction_id: str
    member_id: str | None
    points: dict[str, int] = Field(description="points earned per program (programs that "
                                   "gave none are left out)")
    awards: list[Award]
    tender: str | None = Field(default=None, description="how it was paid, as posted")
    channel: str | None = Field(default=None, description="where it was bought, as posted")


class RefundRecorded(BaseModel):
    """What a refund took back, per program; amounts in minor units."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "refund_id": "R-77", "store_id": "AMS-01", "purchase_id": 1, "member_id": "M-42",
        "amount_minor": 320, "refunded_minor": 320, "total_minor": 740,
        "points": {"bean-there": 3}, "debts": {}, "stamps": {}, "vouchers_voided": [],
        "vouchers_reissued": [], "tiers": {}, "fees_refunded": []}]})

    refund_id: str
    store_id: str
    purchase_id: int
    member_id: str | None
    amount_minor: int
    refunded_minor: int
    total_minor: int
    points: dict[str, int]
    debts: dict[str, int]
    stamps: dict[str, int]
    vouchers_voided: list[str]
    vouchers_reissued: list[str]
    tiers: dict[str, str]
    fees_refunded: list[int]


class RedemptionDone(BaseModel):
    """A redemption, or its reversal."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "redemption_id": "RD-1", "member_id": "M-42", "program_id": "bean-there",
        "kind": "points", "points": 150, "voucher": None, "reversed": False,
        "restored": None}]})

    redemption_id: str
    member_id: str
    program_id: str
    kind: str
    points: int
    voucher: str | None
    reversed: bool
    restored: int | None = Field(description="after a reversal: points put back")


class FeePaid(BaseModel):
    """The charge after payment and the membership it serves."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "charge": {"charge_id": 7, "member_id": "M-42", "program_id": "big-box",
                   "club_id": "warehouse", "level": "basic", "kind": "join",
                   "amount_minor": 6000, "status": "paid"},
        "membership": {"club_id": "warehouse", "level": "basic", "status": "active"},
        "message": "charge 7 paid"}]})

    charge: dict[str, Any]
    membership: dict[str, Any] | None
    message: str


class Consent(BaseModel):
    """A consent flag and when it was given or withdrawn."""

    flag: str
    given: bool
    given_at: datetime | None
    withdrawn_at: datetime | None


class MemberEnrolled(BaseModel):
    """A member after enrolment."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "member_id": "M-42", "created_at": "2026-03-14T08:30:00Z",
        "attributes": {"date_of_birth": "1990-05-17"},
        "consents": [{"flag": "marketing", "given": True,
                      "given_at": "2026-03-14T08:30:00Z", "withdrawn_at": None}]}]})

    member_id: str
    created_at: datetime
    attributes: dict[str, Any]
    consents: list[Consent]


class TierProgress(BaseModel):
    """A member's tier in a program and what the next tier lacks."""

    tier: str | None
    earned_tier: str | None
    measure: str
    credit: int = Field(description="the current window's spend (minor units), visits or "
                                    "points")
    window: list[Any]
    next_tier: str | None
    next_tier_lacks: int | None
    next_review: Any = None
    held_until: Any = None
    credits: dict[str, int] | None = Field(
        default=None, description="a ladder of several measures: the credit per measure "
                                  "(quantities in thousandths); credit is the first's")
    lacking: dict[str, int] | None = Field(
        default=None, description="a ladder of several measures: what each lacks for the "
                                  "next tier")
    next_tier_short: str | None = Field(
        default=None, description="what the next tier lacks, for people: '3 nights or "
                                  "12,000 points short'")


class ProgramStanding(BaseModel):
    """A member's points and tier in one program."""

    program_id: str
    enrolled_at: datetime
    points: int = Field(description="spendable now")
    pending: int = Field(description="earned, not yet spendable")
    lifetime_earned: int
    tier: TierProgress | None
    stamp_cards: list[dict[str, Any]]


class Voucher(BaseModel):
    """A voucher the member can use now."""

    code: str
    program_id: str
    reward_id: str | None
    kind: str
    amount_minor: int | None
    percent: Any = None
    sku: str | None
    category: str | None
    issued_at: datetime
    valid_until: datetime


class MemberView(BaseModel):
    """What a till shows about a member."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "member_id": "M-42", "created_at": "2026-03-14T08:30:00Z", "attributes": {},
        "programs": [{"program_id": "bean-there", "enrolled_at": "2026-03-14T08:30:00Z",
                      "points": 120, "pending": 8, "lifetime_earned": 128, "tier": None,
                      "stamp_cards": [{"program_id": "bean-there", "rule_id": "coffee-card",
                                       "stamps": 3, "card_size": 10,
                                       "reward_id": "free-coffee"}]}],
        "clubs": [], "open_charges": [], "vouchers": []}]})

    member_id: str
    created_at: datetime
    attributes: dict[str, Any]
    programs: list[ProgramStanding]
    clubs: list[dict[str, Any]]
    open_charges: list[dict[str, Any]] = Field(description="fee charges due or failed")
    vouchers: list[Voucher] = Field(description="vouchers valid now")


class LedgerEntry(BaseModel):
    """One change of the member's points and why."""

    id: int
    program_id: str
    program_version: int
    rule_id: str | None
    kind: str
    points: int
    occurred_at: datetime
    store_id: str | None
    transaction_id: str | None
    reason: dict[str, Any]


class LedgerPage(BaseModel):
    """A page of ledger entries, oldest first; `next_after` fetches the next page."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "member_id": "M-42",
        "entries": [{"id": 1, "program_id": "bean-there", "program_version": 1,
                     "rule_id": "points-per-euro", "kind": "earn", "points": 7,
                     "occurred_at": "2026-03-14T08:30:00Z", "store_id": "AMS-01",
                     "transaction_id": "T-1001", "reason": {"spend_minor": 740}}],
        "next_after": None}]})

    member_id: str
    entries: list[LedgerEntry]
    next_after: int | None = Field(description="pass as ?after= for the next page; null at "
                                               "the end")


class Health(BaseModel):
    """The process is up."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: str


class Ready(BaseModel):
    """The database answers and its schema is current."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "status": "ready", "database": "postgresql", "schema_revision": "0013"}]})

    status: str
    database: str
    schema_revision: str
