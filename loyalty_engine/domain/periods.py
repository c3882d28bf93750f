"""Calendar periods in program time: the keys that visit, spend and cap counters are kept by."""

from __future__ import annotations

import calendar
from datetime import date, datetime, time, timedelta, tzinfo


def add_months(day: date, months: int) -> date:
    """The same day `months` later, clamped to the end of a shorter month (31 Jan + 1 = 28 Feb)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


def period_key(period: str, day: date) -> str:
    """A sortable, readable key of the calendar period that holds a local date.

    day 2026-03-03, week 2026-W10 (ISO weeks), month 2026-03, quarter 2026-Q1, year 2026.
    """
    if period == "day":
        return day.isoformat()
    if period == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "month":
        return f"{day.year}-{day.month:02d}"
    if period == "quarter":
        return f"{day.year}-Q{(day.month - 1) // 3 + 1}"
    if period == "year":
        return str(day.year)
    raise ValueError(f"unknown period {period!r}")


def period_end(period: str, key: str) -> date:
    """The first local date after a period's key (2026-03 -> 2026-04-01)."""
    if period == "day":
        return date.fromisoformat(key) + timedelta(days=1)
    if period == "week":
        iso_year, iso_week = key.split("-W")
        return date.fromisocalendar(int(iso_year), int(iso_week), 1) + timedelta(days=7)
    if period == "month":
        year, month = (int(part) for part in key.split("-"))
        return add_months(date(year, month, 1), 1)
    if period == "quarter":
        year_text, quarter = key.split("-Q")
        return add_months(date(int(year_text), 3 * (int(quarter) - 1) + 1, 1), 3)
    if period == "year":
        return date(int(key) + 1, 1, 1)
    raise ValueError(f"no end for a {period!r} period")


def start_of_day(day: date, zone: tzinfo) -> datetime:
    """The instant a local date begins in a time zone (its midnight)."""
    return datetime.combine(day, time(0), zone)
