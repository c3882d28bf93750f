"""Share of wallet, pure: a member's spend with the program in a category and period over
their whole spend in it (the wallet total, from a survey or a data provider), the program's
share over the members who have a total, and the growth potential (wallet - spend) ranked.

Spend comes in by calendar month of the program's time zone (`YYYY-MM` keys); a wallet
total is for a year (`2026`), a quarter (`2026-Q1`) or a month (`2026-03`), and its spend is
the sum of the months it covers. A spend above the supplied total is counted as the whole
wallet (share 1, growth 0) and flagged `exceeds_wallet`, so that one member's inconsistent
data cannot take a share above 100 %; the raw spend is kept beside it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from fractions import Fraction

from loyalty_engine.domain.periods import add_months, period_end, period_start

PERIOD_HELP = "a year (2026), a quarter (2026-Q1) or a month (2026-03)"
_PERIOD = re.compile(r"(?P<year>[0-9]{4})(?:-Q(?P<quarter>[0-9])|-(?P<month>[0-9]{2}))?",
                     re.ASCII)
# Years a wallet total may be for (the years a purchase may be dated in, domain/events).
FIRST_YEAR, LAST_YEAR = 1970, 2199


@dataclass(frozen=True, slots=True)
class WalletPeriod:
    """A wallet total's period: its key, its kind, and the local dates it covers."""

    key: str
    kind: str  # year | quarter | month
    start: date
    end: date  # the first day after it

    @property
    def months(self) -> tuple[str, ...]:
        """The `YYYY-MM` keys of the months it covers, in order."""
        found = []
        day = self.start
        while day < self.end:
            found.append(f"{day.year}-{day.month:02d}")
            day = add_months(day, 1)
        return tuple(found)

    def sort_key(self) -> tuple[date, int]:
        """Later periods last; of periods that begin together, the longer first."""
        return (self.start, -(self.end - self.start).days)


def parse_period(text: str) -> WalletPeriod:
    """A period key as written in a wallet file; ValueError saying what is wrong."""
    found = _PERIOD.fullmatch(text)
    if found is None:
        raise ValueError(f"period {text!r} is not {PERIOD_HELP}")
    year = int(found["year"])
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise ValueError(f"period {text}: the year must be between {FIRST_YEAR} and "
                         f"{LAST_YEAR}")
    kind = "year"
    if found["quarter"] is not None:
        kind = "quarter"
        if not 1 <= int(found["quarter"]) <= 4:
            raise ValueError(f"period {text}: a quarter is Q1 to Q4")
    elif found["month"] is not None:
        kind = "month"
        if not 1 <= int(found["month"]) <= 12:
            raise ValueError(f"period {text}: a month is 01 to 12")
    return WalletPeriod(text, kind, period_start(kind, text), period_end(kind, text))


@dataclass(frozen=True, slots=True)
class WalletTotal:
    """A member's total spend in a category and period, everywhere, as supplied."""

    member_id: str
    category: str
    period: str
    currency: str
    amount_minor: int


@dataclass(frozen=True, slots=True)
class WalletShare:
    """One member, category and period: the program's spend there and the wallet."""

    member_id: str
    category: str
    period: str
    currency: str
    spend_minor: int  # counted spend with the program, as measured
    wallet_minor: int

    @property
    def counted_minor(self) -> int:
        """The spend the share is of: the measured spend, at most the wallet."""
        return min(self.spend_minor, self.wallet_minor)

    @property
    def share(self) -> Fraction | None:
        """counted / wallet; None for a wallet of zero."""
        return Fraction(self.counted_minor, self.wallet_minor) if self.wallet_minor else None

    @property
    def growth_minor(self) -> int:
        """What the member spends in the category elsewhere: wallet - spend, never below 0."""
        return self.wallet_minor - self.counted_minor

    @property
    def exceeds_wallet(self) -> bool:
        """The program measured more spend than the supplied total (check the data)."""
        return self.spend_minor > self.wallet_minor


MonthlySpend = Mapping[tuple[str, str], Mapping[str, int]]  # (member, category) -> month -> minor


def spend_in(period: WalletPeriod, months: Mapping[str, int]) -> int:
    """The spend of the months a period covers."""
    return sum(months.get(month, 0) for month in period.months)


def member_shares(totals: Iterable[WalletTotal], spend: MonthlySpend) -> list[WalletShare]:
    """Each wallet total with the program's spend in its category and period, in the order
    given. Totals in another currency than the spend's are the caller's to leave out."""
    rows = []
    for total in totals:
        period = parse_period(total.period)
        months = spend.get((total.member_id, total.category), {})
        rows.append(WalletShare(total.member_id, total.category, total.period,
                                total.currency, spend_in(period, months),
                                total.amount_minor))
    return rows


@dataclass(frozen=True, slots=True)
class ProgramShare:
    """The program's share of its members' wallets in a category and period: the counted
    spend over the wallet, summed over the members who have a total there."""

    category: str
    period: str
    members: int
    spend_minor: int  # counted (each member's at most their wallet)
    wallet_minor: int

    @property
    def share(self) -> Fraction | None:
        """spend / wallet; None when the wallets sum to zero."""
        return Fraction(self.spend_minor, self.wallet_minor) if self.wallet_minor else None

    @property
    def growth_minor(self) -> int:
        """wallet - spend, summed."""
        return self.wallet_minor - self.spend_minor


def program_shares(rows: Iterable[WalletShare], *, by_category: bool = True
                   ) -> list[ProgramShare]:
    """The program's share per category and period (by_category False: per period, every
    category together, category "*"), in period then category order. Periods are never
    added together: a member's year and its quarters would count the same spend twice."""
    sums: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        key = (row.category if by_category else "*", row.period)
        acc = sums.setdefault(key, [0, 0, 0])
        acc[0] += 1
        acc[1] += row.counted_minor
        acc[2] += row.wallet_minor
    ordered = sorted(sums, key=lambda k: (parse_period(k[1]).sort_key(), k[1], k[0]))
    return [ProgramShare(category, period, *sums[(category, period)])
            for category, period in ordered]


def growth_ranking(rows: Iterable[WalletShare]) -> list[WalletShare]:
    """The rows by growth potential, the largest first (ties: the lower share first, then
    by member, category and period), those with none left out."""
    def key(row: WalletShare) -> tuple[int, Fraction, str, str, str]:
        # A row with growth has a wallet above zero, so a share.
        return (-row.growth_minor, row.share or Fraction(0), row.member_id, row.category,
                row.period)

    return sorted((r for r in rows if r.growth_minor > 0), key=key)


def latest_member_shares(rows: Iterable[WalletShare], as_of_day: date
                         ) -> dict[str, Fraction | None]:
    """Each member's share of wallet as one figure (what the loyalty matrix reads): over
    every category of their latest period that has begun by as_of_day (of periods that
    begin together, the longest: a year over its first quarter and month), the counted
    spend over the wallet. None for a wallet of zero; a member whose totals all lie
    ahead has no entry."""
    rows = list(rows)
    best: dict[str, tuple[tuple[date, int], str]] = {}
    for row in rows:
        period = parse_period(row.period)
        if period.start > as_of_day:
            continue
        rank = (period.sort_key()[0], (period.end - period.start).days)
        held = best.get(row.member_id)
        if held is None or rank > held[0]:
            best[row.member_id] = (rank, row.period)
    sums: dict[str, list[int]] = {}
    for row in rows:
        chosen = best.get(row.member_id)
        if chosen is not None and chosen[1] == row.period:
            acc = sums.setdefault(row.member_id, [0, 0])
            acc[0] += row.counted_minor
            acc[1] += row.wallet_minor
    return {member: (Fraction(s, w) if w else None) for member, (s, w) in sums.items()}
