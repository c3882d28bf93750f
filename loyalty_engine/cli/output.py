"""Printing for the CLI: rich tables for people, --json for scripts, errors as one sentence."""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from typing import Any

from rich.console import Console

from loyalty_engine.domain.money import currency_exponent, format_minor

# soft_wrap: long lines stay whole when piped, so scripts and grep see one line per record.
# Piped output is read by scripts and people alike: wide enough that tables never cut a
# voucher code or a timestamp short (a terminal keeps its own width).
console = Console(highlight=False, soft_wrap=True,
                  width=None if Console().is_terminal else 240)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def _default(value: object) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def emit_json(data: Any) -> None:
    """Write data as indented JSON to standard output."""
    sys.stdout.write(json.dumps(data, default=_default, indent=2, ensure_ascii=False) + "\n")


def fail(message: str, code: int = 1) -> None:
    """Print `error: message` to standard error and exit with code."""
    err_console.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    raise SystemExit(code)


def when(value: datetime | None, zone: tzinfo | None = None) -> str:
    """A timestamp for people: ISO 8601 to the second, in the given zone (the program's;
    UTC when there is none), with its offset so that it is never ambiguous."""
    if value is None:
        return "-"
    return value.astimezone(zone or UTC).replace(microsecond=0).isoformat()


def money(minor: int, currency: str) -> str:
    """An amount for people: major units with the currency (6000, "EUR" -> "60.00 EUR")."""
    return f"{format_minor(minor, currency_exponent(currency))} {currency}"
