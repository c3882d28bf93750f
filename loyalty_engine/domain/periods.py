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


def month_index(key: str) -> int:
    """A 'YYYY-MM' month as a count of months (consecutive months differ by one)."""
    year, month = key.split("-")
    return int(year) * 12 + int(month) - 1


def month_key(index: int) -> str:
    """The 'YYYY-MM' key of a month index."""
    year, month = divmod(index, 12)
    return f"{year:04d}-{month + 1:02d}"


def months_between(first: str, last: str) -> list[str]:
    """The 'YYYY-MM' months from first to last, both included (none when last is earlier)."""
    return [month_key(i) for i in range(month_index(first), month_index(last) + 1)]


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


def period_start(period: str, key: str) -> date:
    """The first local date of the period a key names (2026-Q2 -> 2026-04-01)."""
    if period == "day":
        return date.fromisoformat(key)
    if period == "week":
        iso_year, iso_week = key.split("-W")
        return date.fromisocalendar(int(iso_year), int(iso_week), 1)
    if period == "month":
        year, month = (int(part) for part in key.split("-"))
        return date(year, month, 1)
    if period == "quarter":
        year_text, quarter = key.split("-Q")
        return date(int(year_text), 3 * (int(quarter) - 1) + 1, 1)
    if period == "year":
        return date(int(key), 1, 1)
    raise ValueError(f"no start for a {period!r} period")


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


# Membership years: periods that follow the member, not the calendar. A rule's period is
# "membership_year" (from the member's enrolment in the program) or
# "membership_year:CLUB" (a fee club's term, from its first paid term, renewed term by
# term). Their keys name the year's first and first-after local dates, so that the end of
# every member's year is read from the key alone, in Python or in SQL.
MEMBERSHIP_YEAR = "membership_year"
_SEPARATOR = "--"  # ISO 8601's interval separator that needs no escaping in a voucher code


def is_membership_year(period: str) -> bool:
    """Whether a rule's period follows the member (their enrolment or a club's term)."""
    return period == MEMBERSHIP_YEAR or period.startswith(MEMBERSHIP_YEAR + ":")


def membership_year_club(period: str) -> str | None:
    """The fee club whose term a period follows (None: the enrolment)."""
    return period.split(":", 1)[1] if period.startswith(MEMBERSHIP_YEAR + ":") else None


def membership_year(anchor: date, day: date, months: int = 12, *,
                    chained: bool = False) -> tuple[date, date]:
    """The membership year (first day, first day after) that holds a local date.

    From the enrolment (chained False) the k-th year starts k x months after the anchor,
    each computed from the anchor itself: a member who joined on 29 February has years
    from 28 February in common years and from 29 February again in leap years. A club's
    term (chained True) runs term after term from the end of the last, as renewals do
    (records/memberships.term_end), so 29 February 2024 is followed by 28 February ever
    after. A day before the anchor (a purchase posted from before the enrolment) counts
    in the first year."""
    if day < anchor:
        return anchor, add_months(anchor, months)
    if chained:
        start = anchor
        while True:
            end = add_months(start, months)
            if day < end:
                return start, end
            start = end
    elapsed = (day.year - anchor.year) * 12 + day.month - anchor.month
    index = max(0, elapsed // months)
    start = add_months(anchor, index * months)
    if start > day:
        index -= 1
        start = add_months(anchor, index * months)
    return start, add_months(anchor, (index + 1) * months)


def membership_year_key(start: date, end: date) -> str:
    """The counter key of a membership year: '2026-03-15--2027-03-15' (sorts by start)."""
    return f"{start.isoformat()}{_SEPARATOR}{end.isoformat()}"


# Where a membership year's end sits in its key (1-based, for SQL's substr).
MEMBERSHIP_YEAR_END_AT = 13


def membership_year_end(key: str) -> date:
    """The first local date after the membership year a key names."""
    return date.fromisoformat(key.split(_SEPARATOR, 1)[1])


def key_end(period: str, key: str) -> date:
    """The first local date after the period a counter key names, calendar or member's."""
    if is_membership_year(period):
        return membership_year_end(key)
    return period_end(period, key)


def day_in_period(period: str, key: str, day: date) -> bool:
    """Whether a local date lies in the period a counter key names (a calendar period, or a
    member's membership year: its start up to, not including, its end)."""
    if is_membership_year(period):
        start, _, end = key.partition(_SEPARATOR)
        return date.fromisoformat(start) <= day < date.fromisoformat(end)
    return period_key(period, day) == key
