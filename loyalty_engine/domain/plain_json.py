"""JSON of reports as the CLI's --json and the API's report endpoints both write it: instants
and dates in ISO 8601 (with their offset), exact decimals as strings."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any


def json_default(value: object) -> Any:
    """What json.dumps cannot write by itself."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def dumps(data: Any, indent: int | None = None) -> str:
    """data as JSON text, the same for the CLI and the API."""
    return json.dumps(data, default=json_default, indent=indent, ensure_ascii=False)
