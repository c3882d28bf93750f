"""Builders shared by the unit tests: purchases and programs from plain, readable values."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any

from loyalty_engine.domain.events import PurchaseEvent
from loyalty_engine.domain.purchases import Purchase
from loyalty_engine.rules import CompiledProgram, load_program_text

EXPONENTS = {"EUR": 2, "JPY": 0, "BHD": 3}

# (sku, category, quantity, unit_price) as a POS would send them.
Line = tuple[str, str, str, str]


def event_dict(
    lines: Sequence[Line],
    *,
    currency: str = "EUR",
    total: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A purchase event body; the total is computed (half-up per line) unless given."""
    if total is None:
        quantum = Decimal(1).scaleb(-EXPONENTS[currency])
        total_value = sum(
            (
                (Decimal(qty) * Decimal(price)).quantize(quantum, rounding=ROUND_HALF_UP)
                for _, _, qty, price in lines
            ),
            Decimal(0),
        )
        total = str(total_value)
    body: dict[str, Any] = {
        "transaction_id": "T-1001",
        "store_id": "AMS-01",
        "member_id": "M-42",
        "occurred_at": "2026-03-14T09:30:00+01:00",
        "currency": currency,
        "total": total,
        "items": [
            {"sku": sku, "category": category, "quantity": qty, "unit_price": price}
            for sku, category, qty, price in lines
        ],
    }
    body.update(overrides)
    return body


def purchase(lines: Sequence[Line], *, currency: str = "EUR", **overrides: Any) -> Purchase:
    """A validated purchase in minor units."""
    return PurchaseEvent.model_validate(
        event_dict(lines, currency=currency, **overrides)
    ).to_purchase()


def program_yaml(
    *,
    points_per_unit: str = "1",
    rounding: str = "floor",
    minimum_purchase: str = "0",
    multipliers: Mapping[str, str] | None = None,
    exclude_categories: Iterable[str] = (),
    exclude_skus: Iterable[str] = (),
    currency: str = "EUR",
    rule_id: str = "points",
) -> str:
    """Program YAML with a single points_per_spend rule."""
    lines = [
        "program: test-program",
        "name: Test Program",
        f"currency: {currency}",
        "timezone: Europe/Amsterdam",
        "enrolment: open",
        "exclude:",
        f"  categories: [{', '.join(exclude_categories)}]",
        f"  skus: [{', '.join(exclude_skus)}]",
        "rules:",
        f"  - id: {rule_id}",
        "    kind: points_per_spend",
        f'    points_per_unit: "{points_per_unit}"',
        f"    rounding: {rounding}",
        f'    minimum_purchase: "{minimum_purchase}"',
    ]
    if multipliers:
        lines.append("    category_multipliers:")
        lines.extend(f'      {cat}: "{mult}"' for cat, mult in multipliers.items())
    return "\n".join(lines) + "\n"


@lru_cache(maxsize=512)
def _compiled(text: str) -> CompiledProgram:
    return load_program_text(text).compiled


def program(**options: Any) -> CompiledProgram:
    """A compiled single-rule program, built through the real YAML loader (options as for
    program_yaml)."""
    return _compiled(program_yaml(**options))
