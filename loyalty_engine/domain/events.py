"""The purchase event: one pydantic model for files now and for HTTP later.

Amount rules (also in docs/architecture.md): amounts are decimal strings (or integers) with at
most as many decimals as the currency's minor unit; nothing is negative; a line's amount is
quantity x unit_price rounded half-up to the minor unit; and ``total`` must equal the sum of the
line amounts exactly.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import to_json

from loyalty_engine.domain.money import (
    CurrencyCode,
    MoneyError,
    currency_exponent,
    format_minor,
    parse_decimal,
    to_minor,
)
from loyalty_engine.domain.purchases import LineItem, Purchase

MAX_ITEMS = 1000
# How far ahead of now an event may be dated (a till's or a tablet's clock may run fast):
# purchases and the like posted to the API, survey answers posted or imported.
MAX_AHEAD = timedelta(minutes=15)
_CACHE = "_purchase"
MAX_QUANTITY = Decimal(1_000_000)


def _money_input(value: object) -> Decimal:
    try:
        return parse_decimal(value, "amount")
    except MoneyError as exc:
        raise ValueError(str(exc)) from None


# In the OpenAPI document: a decimal string (or an integer); JSON numbers with a fraction
# are refused, since binary floats lose cents.
Amount = Annotated[Decimal, BeforeValidator(_money_input), WithJsonSchema({
    "anyOf": [{"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"}, {"type": "integer",
                                                                     "minimum": 0}],
    "examples": ["12.50"]})]


def _plausible_instant(value: datetime) -> datetime:
    # Outside these years an offset conversion can overflow, and no till has such a clock.
    if not 1970 <= value.year <= 9998:
        raise ValueError("must be a date between the years 1970 and 9998")
    return value
# What an identifier may not hold: C0 and C1 controls and DEL, line and paragraph
# separators, and the bidirectional controls (which make one id display as another); nor
# may it begin or end with a space ("AMS-01 " would be another store, paid twice).
_NOT_IN_IDS = r"\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
ID_PATTERN = rf"^[^\s{_NOT_IN_IDS}](?:[^{_NOT_IN_IDS}]*[^\s{_NOT_IN_IDS}])?$"
ID_RULE = ("may not begin or end with a space, nor hold control, line-separator or "
           "text-direction characters")
Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN)]
Key = Annotated[str, Field(min_length=1, max_length=128, pattern=ID_PATTERN)]


def _not_a_number(value: object) -> object:
    # A JSON number would be read as seconds since 1970 (0 is New Year 1970): a till that
    # sends one has a bug, not a timestamp.
    if isinstance(value, int | float):
        raise ValueError("must be an ISO 8601 date-time string with an offset, such as "
                         "2026-03-01T09:30:00+01:00, not a number")
    return value


Instant = Annotated[AwareDatetime, BeforeValidator(_not_a_number),
                    AfterValidator(_plausible_instant)]

# How a purchase was paid and where it was made (both optional). One tender per purchase:
# a split payment sends the method that paid the largest part (the first of equal parts),
# and rules on tenders then treat the whole purchase as paid that way (docs/program-language.md).
TENDERS = ("card", "app", "cash", "gift_card", "points")
CHANNELS = ("store", "web", "app")
Tender = Literal["card", "app", "cash", "gift_card", "points"]
Channel = Literal["store", "web", "app"]


class PurchaseItemIn(BaseModel):
    """One basket line as a POS sends it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sku: Identifier
    category: Identifier
    quantity: Annotated[Decimal, Field(gt=0, le=MAX_QUANTITY, decimal_places=3)] = Decimal(1)
    unit_price: Amount


class PurchaseEvent(BaseModel):
    """A purchase posted by a POS or read from an import file."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "transaction_id": "T-1001",
                    "store_id": "AMS-01",
                    "member_id": "M-42",
                    "occurred_at": "2026-03-14T09:30:00+01:00",
                    "currency": "EUR",
                    "total": "7.40",
                    "items": [
                        {"sku": "FLAT-WHITE", "category": "coffee", "quantity": "2",
                         "unit_price": "3.20"},
                        {"sku": "CROISSANT", "category": "pastry", "quantity": "1",
                         "unit_price": "1.00"},
                    ],
                }
            ]
        },
    )

    type: Literal["purchase"] = Field(
        default="purchase", description="in import files, tells purchases from refunds")
    transaction_id: Key
    store_id: Identifier
    member_id: Identifier | None = None
    occurred_at: Instant
    currency: CurrencyCode
    total: Amount
    items: Annotated[list[PurchaseItemIn], Field(min_length=1, max_length=MAX_ITEMS)]
    tender: Tender | None = Field(
        default=None, description="how it was paid: card, app, cash, gift_card or points; for "
                                  "a split payment, the method that paid the largest part")
    channel: Channel | None = Field(
        default=None, description="where it was bought: store, web or app")

    @model_validator(mode="after")
    def _amounts_agree(self) -> PurchaseEvent:
        try:
            purchase = _to_purchase(self)
        except MoneyError:
            raise  # a ValueError naming its field, which the API reports by path
        except (ArithmeticError, OverflowError):
            raise ValueError("an amount or quantity is too large or too precise") from None
        # Kept in the instance dict rather than a PrivateAttr: private-attribute set-up
        # cost about a third of validation time on the bulk import path.
        self.__dict__[_CACHE] = purchase
        return self

    def to_purchase(self) -> Purchase:
        """The validated purchase in minor units (computed once, during validation)."""
        purchase: Purchase = self.__dict__[_CACHE]
        return purchase


def _to_purchase(event: PurchaseEvent) -> Purchase:
    currency = event.currency
    exponent = currency_exponent(currency)
    total_minor = to_minor(event.total, exponent, "total", currency)
    items: list[LineItem] = []
    line_sum = 0
    for index, item in enumerate(event.items):
        unit_minor = to_minor(item.unit_price, exponent, f"items[{index}].unit_price", currency)
        quantity = item.quantity
        if quantity == quantity.to_integral_value():
            amount_minor = int(quantity) * unit_minor
        else:
            amount_minor = int((quantity * unit_minor).quantize(_ONE, rounding=ROUND_HALF_UP))
        line_sum += amount_minor
        items.append(LineItem(index + 1, item.sku, item.category, int(quantity * 1000),
                              unit_minor, amount_minor))
    if line_sum != total_minor:
        raise MoneyError(
            f"total {event.total} does not equal the sum of the items "
            f"(quantity x unit_price, rounded to the minor unit: "
            f"{format_minor(line_sum, exponent)})", "total"
        )
    occurred_utc = event.occurred_at.astimezone(UTC)
    # The body hash covers the normalised event, so "12.5" and "12.50", or the same instant
    # written with another offset, are the same purchase.
    body: tuple[Any, ...] = (
        event.store_id, event.transaction_id, event.member_id, occurred_utc.isoformat(),
        currency, total_minor,
        [(i.sku, i.category, i.quantity_milli, i.unit_price_minor) for i in items],
    )
    if event.tender is not None or event.channel is not None:
        # Only then: a purchase without them hashes as it did before they existed.
        body = (*body, event.tender, event.channel)
    return Purchase(
        store_id=event.store_id,
        transaction_id=event.transaction_id,
        member_id=event.member_id,
        occurred_at=occurred_utc,
        currency=currency,
        total_minor=total_minor,
        items=tuple(items),
        body_hash=hashlib.sha256(to_json(body)).hexdigest(),
        tender=event.tender,
        channel=event.channel,
    )


_ONE = Decimal(1)


_FRIENDLY = {
    "extra_forbidden": "unknown field",
    "missing": "required field is missing",
    "timezone_aware": "needs a UTC offset, e.g. 2026-03-01T09:30:00+01:00 (a time without one "
                      "is ambiguous)",
}


def id_rule(error: Any) -> str | None:
    """What an identifier must be, for pydantic's error of a value that broke ID_PATTERN."""
    ctx = error.get("ctx") or {}
    if error.get("type") == "string_pattern_mismatch" and ctx.get("pattern") == ID_PATTERN:
        return ID_RULE
    return None


def describe_errors(exc: ValidationError, item_lines: list[int] | None = None) -> list[str]:
    """Readable messages for a failed event validation, each naming the field by its path.

    With item_lines (CSV: the line of each item's row), item errors name their line too.
    """
    messages = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        path = ""
        for part in loc:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        message = error["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        message = _FRIENDLY.get(error["type"], id_rule(error) or message)
        if item_lines and len(loc) >= 2 and loc[0] == "items" and isinstance(loc[1], int):
            path = f"line {item_lines[loc[1]]}: {path}"
        messages.append(f"{path}: {message}" if path else message)
    return messages
