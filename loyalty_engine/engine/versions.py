"""Choosing the program version in force at an instant."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from datetime import datetime
from typing import TypeVar

T = TypeVar("T")


def version_in_force(
    effective_froms: Sequence[datetime], versions: Sequence[T], at: datetime
) -> T | None:
    """The version with the latest effective_from <= at, or None before the first one.

    effective_froms must be sorted ascending and parallel to versions.
    """
    index = bisect_right(effective_froms, at)
    return versions[index - 1] if index else None
