"""Shared set-up for the HTTP API tests: a migrated database with the shipped programs, API
keys of each kind, and purchase bodies dated before a fixed "now"."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from loyalty_engine.services.apikeys import create_api_key
from loyalty_engine.services.programs import apply_program_files

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "rules"
# The API's clock in in-process tests; events are dated before it.
API_NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Keys:
    """Tokens of the keys every API test has: a till in Amsterdam, one in Utrecht, the
    office (admin)."""

    ams: str
    utr: str
    admin: str


def prepare(engine: Engine, now: datetime = API_NOW) -> Keys:
    """The shipped programs in force, and one key of each kind."""
    apply_program_files(engine, sorted(RULES.glob("*.yaml")), now)
    return Keys(
        ams=create_api_key(engine, "till-ams", "pos", ["AMS-*", "BB-*"], now)[1],
        utr=create_api_key(engine, "till-utr", "pos", ["UTR-01"], now)[1],
        admin=create_api_key(engine, "office", "admin", [], now)[1],
    )


def bearer(token: str) -> dict[str, str]:
    """The Authorization header of a token."""
    return {"Authorization": f"Bearer {token}"}


def purchase(transaction_id: str, member_id: str | None = "M-1", store_id: str = "AMS-01",
             occurred_at: str = "2026-05-30T09:30:00+02:00", unit_price: str = "3.60",
             quantity: str = "2", sku: str = "FLAT-WHITE", category: str = "coffee"
             ) -> dict[str, Any]:
    """A one-line purchase body (total = quantity x unit_price, in EUR)."""
    from decimal import ROUND_HALF_UP, Decimal

    total = (Decimal(quantity) * Decimal(unit_price)).quantize(Decimal("0.01"), ROUND_HALF_UP)
    body: dict[str, Any] = {
        "transaction_id": transaction_id, "store_id": store_id, "occurred_at": occurred_at,
        "currency": "EUR", "total": str(total),
        "items": [{"sku": sku, "category": category, "quantity": quantity,
                   "unit_price": unit_price}],
    }
    if member_id is not None:
        body["member_id"] = member_id
    return body
