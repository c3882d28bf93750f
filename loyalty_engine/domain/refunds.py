"""The refund event: one pydantic model for files and HTTP, like the purchase event."""

from __future__ import annotations

import hashlib
from datetime import UTC
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import to_json

from loyalty_engine.domain.events import (
    MAX_ITEMS,
    MAX_QUANTITY,
    Amount,
    Identifier,
    Instant,
    Key,
)
from loyalty_engine.domain.money import MoneyError


class RefundItemIn(BaseModel):
    """A line given back: which SKU, how many, and the money returned for it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sku: Identifier
    quantity: Annotated[Decimal, Field(gt=0, le=MAX_QUANTITY, decimal_places=3)] = Decimal(1)
    amount: Amount


class RefundEvent(BaseModel):
    """A full or partial refund of a recorded purchase, once per (store_id, refund_id).

    The refund reverses, pro rata to amount / the purchase's total, everything the purchase
    earned. items, when given, must add up to amount and may not give back more of a SKU
    than was bought (over all refunds of the purchase).
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"examples": [{
            "type": "refund", "refund_id": "R-77", "store_id": "AMS-01",
            "original_transaction_id": "T-1001", "occurred_at": "2026-03-20T10:00:00+01:00",
            "amount": "3.20", "items": [{"sku": "FLAT-WHITE", "quantity": "1",
                                         "amount": "3.20"}],
        }]},
    )

    type: Literal["refund"] = "refund"
    refund_id: Key
    store_id: Identifier
    original_transaction_id: Key
    original_store_id: Identifier | None = Field(
        default=None, description="store of the purchase, when it is not the refunding store")
    occurred_at: Instant
    amount: Amount
    items: Annotated[list[RefundItemIn], Field(min_length=1, max_length=MAX_ITEMS)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> RefundEvent:
        if self.amount <= 0:
            raise MoneyError("amount must be more than zero", "amount")
        if self.items is not None:
            total = sum((item.amount for item in self.items), Decimal(0))
            if total != self.amount:
                raise MoneyError(f"amount {self.amount} does not equal the sum of the items' "
                                 f"amounts ({total})", "amount")
        return self

    @property
    def purchase_key(self) -> tuple[str, str]:
        """(store_id, transaction_id) of the purchase refunded."""
        return (self.original_store_id or self.store_id, self.original_transaction_id)

    def body_hash(self) -> str:
        """Hash of the normalised refund, to tell a replay from a conflicting reuse of its id."""
        body = (
            self.store_id, self.refund_id, *self.purchase_key,
            self.occurred_at.astimezone(UTC).isoformat(), format(self.amount.normalize(), "f"),
            None if self.items is None else [
                (i.sku, format(i.quantity.normalize(), "f"), format(i.amount.normalize(), "f"))
                for i in self.items],
        )
        return hashlib.sha256(to_json(body)).hexdigest()
