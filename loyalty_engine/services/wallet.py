"""Share of wallet: wallet totals imported from a file (a survey's answers or a data
provider's figures), and the report of the program's share of them.

The import is all-or-nothing: every line is checked (columns, member, category, period,
currency, amount) and every problem reported as `file:line: message` before anything is
written; with one problem, nothing is. A total given again for the same member, category
and period (in a later file) replaces the one stored: a provider's corrected figures are
imported over the old ones. The same key twice in one file is refused (which one would
count?)."""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from sqlalchemy import Connection, select

from loyalty_engine.analytics.wallet import parse_period
from loyalty_engine.domain.errors import ImportFileError
from loyalty_engine.domain.events import Identifier, describe_errors
from loyalty_engine.domain.money import (
    CurrencyCode,
    MoneyError,
    currency_exponent,
    parse_decimal,
    to_minor,
)
from loyalty_engine.services.importing import MAX_LINE_BYTES, LineError
from loyalty_engine.store import tables
from loyalty_engine.store.bulk import (
    IN_CHUNK,
    Converters,
    chunked,
    insert_rows,
    select_by_keys,
)
from loyalty_engine.store.unit_of_work import write_use_case

WALLET_COLUMNS = ("member_id", "category", "period", "currency", "amount")
_wallets = tables.wallet_totals
_members = tables.members
SOURCE_LENGTH = 200


# --- reading a CSV file line by line (shared with the survey import) ----------------------

def _lines(handle: Any, path: Path) -> Iterator[str]:
    """The file's lines as text, each decoded alone so that an error names its line; a
    leading UTF-8 byte-order mark dropped; a line over MAX_LINE_BYTES refused."""
    number = 0
    while raw := handle.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            raise ImportFileError(f"{path}:{number}: the line is longer than "
                                  f"{MAX_LINE_BYTES:,} bytes (1 MiB); it was not read")
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ImportFileError(f"{path}:{number}: the file is not UTF-8 text (byte "
                                  f"{exc.start + 1} of the line)") from None


def csv_rows(path: Path, columns: Sequence[str], what: str
             ) -> Iterator[tuple[int, dict[str, str] | str]]:
    """(line, {column: stripped cell}) per non-blank row of a CSV file with exactly
    `columns` as its header (in any order), or (line, problem) for a row of the wrong
    width. A file that cannot be read, or whose header is wrong, is an ImportFileError
    naming the line; one without rows says it is empty (`what`: what the rows are)."""
    if path.is_dir():
        raise ImportFileError(f"{path} is a directory; import one CSV file at a time")
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot be read: {exc.strerror}") from None
    with handle:
        reader = csv.reader(_lines(handle, path))
        try:
            header = next(reader)
        except StopIteration:
            raise ImportFileError(f"{path}: the file is empty; expected a header "
                                  f"({','.join(columns)}) and {what}") from None
        except csv.Error as exc:
            raise ImportFileError(f"{path}:1: malformed CSV: {exc}") from None
        names = [h.strip() for h in header]
        doubled = sorted({n for n in names if names.count(n) > 1})
        missing = [c for c in columns if c not in names]
        unknown = [n for n in names if n not in columns]
        if doubled or missing or unknown:
            parts = ([f"column(s) named twice: {', '.join(doubled)}"] if doubled else []) + (
                [f"missing column(s): {', '.join(missing)}"] if missing else []) + (
                [f"unknown column(s): {', '.join(unknown)}"] if unknown else [])
            raise ImportFileError(f"{path}:1: " + "; ".join(parts) + " (expected: "
                                  + ",".join(columns) + ")")
        index = {name: names.index(name) for name in columns}
        line = reader.line_num
        seen = 0
        try:
            for row in reader:
                start, line = line + 1, reader.line_num
                if not any(cell.strip() for cell in row):
                    continue
                seen += 1
                if len(row) != len(names):
                    yield start, f"expected {len(names)} columns, found {len(row)}"
                    continue
                yield start, {name: row[i].strip() for name, i in index.items()}
        except csv.Error as exc:
            raise ImportFileError(f"{path}:{reader.line_num}: malformed CSV: {exc}") from None
        if not seen:
            raise ImportFileError(f"{path}: the file has a header but no rows; expected "
                                  f"{what}")


def source_of(path: Path) -> str:
    """What a row imported from a file says it came from."""
    return f"file:{path.name}"[:SOURCE_LENGTH]


def known_members(conn: Connection, member_ids: set[str]) -> dict[str, bool]:
    """Of the ids given, those that are members: id -> whether their data was erased (a
    few statements of up to IN_CHUNK ids each, whatever the file's size)."""
    found: dict[str, bool] = {}
    ordered = sorted(member_ids)
    for part in chunked(ordered, IN_CHUNK):
        for member_id, erased_at in conn.execute(
                select(_members.c.member_id, _members.c.erased_at)
                .where(_members.c.member_id.in_(part))):
            found[member_id] = erased_at is not None
    return found


def member_problem(member_id: str, known: dict[str, bool]) -> str | None:
    """Why a line's member cannot take new data: unknown, or erased."""
    if member_id not in known:
        return (f"member_id: no member with id {member_id!r} (enrol them first, or correct "
                "the id)")
    if known[member_id]:
        return (f"member_id: member {member_id!r} was erased and takes no new personal "
                "data")
    return None


# --- the wallet import -------------------------------------------------------------------

class WalletLine(BaseModel):
    """One row of a wallet file, checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    member_id: Identifier
    category: Identifier
    period: str
    currency: CurrencyCode
    amount: str

    @field_validator("period")
    @classmethod
    def _period(cls, value: str) -> str:
        parse_period(value)  # its ValueError says what is wrong
        return value

    def amount_minor(self) -> int:
        """The amount in the currency's minor units (MoneyError: why not)."""
        amount = parse_decimal(self.amount, "amount")
        if amount < 0:
            raise MoneyError(f"amount must not be negative (got {self.amount}); a wallet "
                             "total is what the member spends in all", "amount")
        return to_minor(amount, currency_exponent(self.currency), "amount", self.currency)


@dataclass(slots=True)
class WalletImportReport:
    """What a wallet import did; nothing was written when committed is False."""

    path: str
    read: int = 0
    added: int = 0
    replaced: int = 0
    unchanged: int = 0
    errors: list[LineError] = field(default_factory=list)
    committed: bool = False

    def as_json(self) -> dict[str, Any]:
        """The report as the CLI's --json prints it."""
        return {"file": self.path, "read": self.read, "added": self.added,
                "replaced": self.replaced, "unchanged": self.unchanged,
                "committed": self.committed,
                "errors": [{"line": e.line, "reason": e.reason} for e in self.errors]}


_WALLET_WRITE = ("member_id", "category", "period", "currency", "amount_minor", "source",
                 "recorded_at")


@write_use_case
def import_wallet(conn: Connection, path: Path, now: datetime) -> WalletImportReport:
    """Import a wallet file (CSV: member_id,category,period,currency,amount) in the caller's
    transaction, all or nothing (see the module docstring). Unknown or erased members,
    negative amounts, more decimals than the currency has, bad periods (a year 2026, a
    quarter 2026-Q1 or a month 2026-03) and the same key twice are each a line's error."""
    report = WalletImportReport(path=str(path))
    lines: list[tuple[int, WalletLine, int]] = []
    first_line: dict[tuple[str, str, str], int] = {}
    for line, record in csv_rows(path, WALLET_COLUMNS, "wallet totals"):
        report.read += 1
        if isinstance(record, str):
            report.errors.append(LineError(line, record))
            continue
        try:
            checked = WalletLine.model_validate(record)
            minor = checked.amount_minor()
        except ValidationError as exc:
            report.errors.append(LineError(line, "; ".join(describe_errors(exc))))
            continue
        except MoneyError as exc:
            report.errors.append(LineError(line, str(exc)))
            continue
        key = (checked.member_id, checked.category, checked.period)
        if key in first_line:
            report.errors.append(LineError(line, f"member {key[0]!r}, category {key[1]!r}, "
                                           f"period {key[2]} is already given at line "
                                           f"{first_line[key]}; give each total once"))
            continue
        first_line[key] = line
        lines.append((line, checked, minor))
    known = known_members(conn, {c.member_id for _, c, _ in lines})
    for line, checked, _ in lines:
        problem = member_problem(checked.member_id, known)
        if problem is not None:
            report.errors.append(LineError(line, problem))
    report.errors.sort(key=lambda e: e.line)
    if report.errors:
        return report
    stored = _stored_totals(conn, [(c.member_id, c.category, c.period) for _, c, _ in lines])
    source = source_of(path)
    rows = []
    for _, checked, minor in lines:
        key = (checked.member_id, checked.category, checked.period)
        before = stored.get(key)
        if before is None:
            report.added += 1
        elif before == (checked.currency, minor):
            report.unchanged += 1
            continue
        else:
            report.replaced += 1
        rows.append(dict(member_id=key[0], category=key[1], period=key[2],
                         currency=checked.currency, amount_minor=minor, source=source,
                         recorded_at=now))
    # What a failure while writing rolls back to (the caller's transaction stays as it was).
    start = conn.begin_nested()
    try:
        _upsert_totals(conn, rows)
    except BaseException:
        start.rollback()
        raise
    start.commit()
    report.committed = True
    return report


def _stored_totals(conn: Connection, keys: list[tuple[str, str, str]]
                   ) -> dict[tuple[str, str, str], tuple[str, int]]:
    found: dict[tuple[str, str, str], tuple[str, int]] = {}
    for part in chunked(keys, IN_CHUNK):
        for member_id, category, period, currency, amount in select_by_keys(
                conn, _wallets, ("member_id", "category", "period"), list(part),
                ("member_id", "category", "period", "currency", "amount_minor")):
            found[(member_id, category, period)] = (currency, int(amount))
    return found


def _upsert_totals(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """New totals inserted, changed ones replaced: one statement per batch."""
    when = Converters(conn).when
    values = [tuple(when(r[c]) if c == "recorded_at" else r[c] for c in _WALLET_WRITE)
              for r in rows]
    for part in chunked(values, IN_CHUNK // len(_WALLET_WRITE)):
        insert_rows(conn, _wallets, _WALLET_WRITE, part,
                    on_conflict=["member_id", "category", "period"],
                    update={"currency": "excluded.currency",
                            "amount_minor": "excluded.amount_minor",
                            "source": "excluded.source",
                            "recorded_at": "excluded.recorded_at"})
