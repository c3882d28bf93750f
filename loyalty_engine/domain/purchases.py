"""The purchase as the engine sees it: validated, amounts in integer minor units."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple


class LineItem(NamedTuple):
    """One line of a basket; amount_minor is quantity x unit price, rounded half-up."""

    line_no: int
    sku: str
    category: str
    quantity_milli: int
    unit_price_minor: int
    amount_minor: int


@dataclass(slots=True)
class Purchase:
    """A purchase event after validation; occurred_at is timezone-aware. Treat as immutable."""

    store_id: str
    transaction_id: str
    member_id: str | None
    occurred_at: datetime
    currency: str
    total_minor: int
    items: tuple[LineItem, ...]
    body_hash: str
    tender: str | None = None  # card, app, cash, gift_card, points (domain.events.TENDERS)
    channel: str | None = None  # store, web, app
    key: tuple[str, str] = ("", "")

    def __post_init__(self) -> None:
        # The natural key that makes a purchase count once: (store_id, transaction_id).
        self.key = (self.store_id, self.transaction_id)
