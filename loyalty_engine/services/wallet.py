"""Share of wallet: wallet totals imported from a file (a survey's answers or a data
provider's figures), and the report of the program's share of them.

The import is all-or-nothing: every line is checked (columns, member, category, period,
currency, amount) and every problem reported as `file:line: message` before anything is
written; with one problem, nothing is. A total given again for the same member, category
and period (in a later file) replaces the one stored: a provider's corrected figures are
imported over the old ones. The same key twice in one file is refused (which one would
count?)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from sqlalchemy import Connection

from loyalty_engine.analytics.loyalty_matrix import (
    CELLS,
    MatrixCounts,
    MemberLoyalty,
    classify,
    count,
    latest_answers,
)
from loyalty_engine.analytics.wallet import (
    PERIOD_HELP,
    ProgramShare,
    WalletPeriod,
    WalletShare,
    growth_ranking,
    latest_member_shares,
    member_shares,
    parse_period,
    program_shares,
)
from loyalty_engine.domain.errors import LoyaltyError
from loyalty_engine.domain.events import Identifier, describe_errors
from loyalty_engine.domain.money import (
    CurrencyCode,
    MoneyError,
    currency_exponent,
    parse_decimal,
    to_minor,
)
from loyalty_engine.records.surveys import answers_by
from loyalty_engine.records.wallet import (
    enrolled,
    enrolled_ids,
    known_members,
    stored_totals,
    upsert_totals,
    wallet_totals,
)
from loyalty_engine.rules.compiled import CompiledProgram
from loyalty_engine.rules.compiled_insights import MatrixThresholds
from loyalty_engine.services.analytics_members import rfm_scores
from loyalty_engine.services.importing import LineError, csv_file_rows, member_problem, source_of
from loyalty_engine.services.programs import program_as_of
from loyalty_engine.store.unit_of_work import read_use_case, write_use_case

WALLET_COLUMNS = ("member_id", "category", "period", "currency", "amount")


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


@write_use_case
def import_wallet(conn: Connection, path: Path, now: datetime) -> WalletImportReport:
    """Import a wallet file (CSV: member_id,category,period,currency,amount) in the caller's
    transaction, all or nothing (see the module docstring). Unknown or erased members,
    negative amounts, more decimals than the currency has, bad periods (a year 2026, a
    quarter 2026-Q1 or a month 2026-03) and the same key twice are each a line's error."""
    report = WalletImportReport(path=str(path))
    lines: list[tuple[int, WalletLine, int]] = []
    first_line: dict[tuple[str, str, str], int] = {}
    for line, record in csv_file_rows(path, WALLET_COLUMNS, "wallet totals"):
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
    stored = stored_totals(conn, [(c.member_id, c.category, c.period) for _, c, _ in lines])
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
        upsert_totals(conn, rows)
    except BaseException:
        start.rollback()
        raise
    start.commit()
    report.committed = True
    return report


# --- the reports ------------------------------------------------------------------------

class WalletPeriodError(LoyaltyError):
    """A wallet report asked for a period that is not a year, a quarter or a month."""


def _wallet_rows(conn: Connection, program: CompiledProgram, as_of: datetime,
                 period: WalletPeriod | None, member_id: str | None = None
                 ) -> tuple[list[WalletShare], int]:
    """The program members' wallet shares in its currency (of one period, or one member,
    when given; records/wallet.wallet_totals), and how many totals were in other
    currencies."""
    totals, spend, other = wallet_totals(conn, program, as_of, period, member_id)
    return (member_shares(totals, spend) if totals else []), other


def _share_json(share: Fraction | None) -> float | None:
    return None if share is None else round(float(share), 6)


@dataclass(frozen=True, slots=True)
class WalletReport:
    """The program's share of its members' wallets as of an instant."""

    program_id: str
    currency: str
    as_of: datetime
    as_of_day: date
    period: str | None
    rows: list[WalletShare]  # by member, category, period
    by_category: list[ProgramShare]  # per category and period
    by_period: list[ProgramShare]  # per period, every category together
    ranking: list[WalletShare]  # growth potential, largest first
    other_currency: int  # totals left out: not in the program's currency

    def complete(self, period: str) -> bool:
        """Whether the period has ended by the as-of day (its spend is then final)."""
        return parse_period(period).end <= self.as_of_day

    def as_json(self) -> dict[str, Any]:
        """The report as `--json` prints it (amounts in minor units of `currency`)."""
        def member(row: WalletShare) -> dict[str, Any]:
            return {"member_id": row.member_id, "category": row.category,
                    "period": row.period, "complete": self.complete(row.period),
                    "spend_minor": row.spend_minor, "wallet_minor": row.wallet_minor,
                    "share": _share_json(row.share), "growth_minor": row.growth_minor,
                    "exceeds_wallet": row.exceeds_wallet}

        def program(row: ProgramShare) -> dict[str, Any]:
            return {"category": row.category, "period": row.period,
                    "complete": self.complete(row.period), "members": row.members,
                    "spend_minor": row.spend_minor, "wallet_minor": row.wallet_minor,
                    "share": _share_json(row.share), "growth_minor": row.growth_minor}

        return {"program": self.program_id, "currency": self.currency,
                "as_of": self.as_of, "as_of_day": self.as_of_day, "period": self.period,
                "program_share": [program(p) for p in self.by_period],
                "by_category": [program(p) for p in self.by_category],
                "members": [member(r) for r in self.rows],
                "growth_ranking": [{"rank": i, **member(r)}
                                   for i, r in enumerate(self.ranking, start=1)],
                "other_currency_totals": self.other_currency}


def _period(period: str | None) -> WalletPeriod | None:
    if period is None:
        return None
    try:
        return parse_period(period)
    except ValueError as exc:
        raise WalletPeriodError(f"{exc}; give {PERIOD_HELP}") from None


@read_use_case
def wallet_report(conn: Connection, program_id: str, as_of: datetime,
                  period: str | None = None) -> WalletReport:
    """Per member and category, the program's counted spend in each wallet total's period
    (net of refunds by as_of, in the program's zone and currency, its exclusions applied)
    over that total; the program's share per category and period and per period; and the
    growth potential (wallet - spend) as a ranking. Only totals in the program's currency
    count (the others are counted apart); of one period when given."""
    program = program_as_of(conn, program_id, as_of)
    rows, other = _wallet_rows(conn, program, as_of, _period(period))
    as_of_day = as_of.astimezone(program.timezone).date()
    return WalletReport(program_id, program.currency, as_of, as_of_day, period, rows,
                        program_shares(rows), program_shares(rows, by_category=False),
                        growth_ranking(rows), other)


# The F score (1-5) of each member with purchases, as of an instant: RFM's
# (services/analytics_members.rfm_scores), or a test's own.
FScores = Callable[[Connection, str, datetime], Mapping[str, int]]


def rfm_f_scores(conn: Connection, program_id: str, as_of: datetime) -> dict[str, int]:
    """Each purchasing member's F score as of an instant, as RFM scores it (its points are
    not read: F does not depend on them)."""
    return {member: row.f
            for member, row in rfm_scores(conn, program_id, as_of, points=False).items()}


@dataclass(frozen=True, slots=True)
class MatrixReport:
    """Behavioural x attitudinal loyalty of a program's members as of an instant."""

    program_id: str
    as_of: datetime
    thresholds: MatrixThresholds
    counts: MatrixCounts
    members: list[MemberLoyalty]  # by member id

    def as_json(self) -> dict[str, Any]:
        """The report as `--json` prints it."""
        t = self.thresholds
        limit = t.wallet_share_at_least
        return {
            "program": self.program_id, "as_of": self.as_of,
            "thresholds": {"f_at_least": t.f_at_least,
                           "wallet_share_at_least": _share_json(limit),
                           "nps_at_least": t.nps_at_least,
                           "commitment_at_least": t.commitment_at_least},
            "cells": {cell: getattr(self.counts, cell) for cell in CELLS},
            "shares": {cell: _share_json(self.counts.share(cell)) for cell in CELLS},
            "unknown_attitude": {"behavioural": self.counts.unknown_behavioural,
                                 "not_behavioural": self.counts.unknown_not_behavioural},
            "members": [{"member_id": m.member_id, "f": m.f,
                         "wallet_share": _share_json(m.wallet_share), "nps": m.nps,
                         "commitment": m.commitment, "behavioural": m.behavioural,
                         "attitudinal": m.attitudinal, "type": m.type}
                        for m in self.members],
        }


def _place(conn: Connection, program: CompiledProgram, as_of: datetime,
           f_scores: Mapping[str, int], member_id: str | None = None) -> list[MemberLoyalty]:
    """The program's members enrolled by as_of (or the one given) placed in the matrix:
    three statements (members, wallet totals with the counted spend, answers)."""
    thresholds = program.insights.matrix
    members = enrolled_ids(conn, program, as_of, member_id)
    rows, _ = _wallet_rows(conn, program, as_of, None, member_id)
    shares = latest_member_shares(rows, as_of.astimezone(program.timezone).date())
    answers = latest_answers(answers_by(conn, enrolled(program, as_of, member_id), as_of),
                             as_of)
    return [classify(m, f_scores.get(m, 0), shares.get(m), answers.get(m, {}).get("nps"),
                     answers.get(m, {}).get("commitment"), thresholds) for m in members]


@read_use_case
def loyalty_matrix_report(conn: Connection, program_id: str, as_of: datetime,
                          f_scores: FScores = rfm_f_scores) -> MatrixReport:
    """Every member enrolled in the program by as_of in the 2x2 (analytics/loyalty_matrix):
    behaviour from their F score (0 without purchases) or, when the program sets
    `wallet_share_at_least`, their share of wallet (their latest period begun by as_of,
    every category of it; shown for every member); attitude from their latest NPS and
    commitment answers given by as_of. Thresholds from the program's `insights.matrix`.
    The F scores are RFM's unless others are given."""
    program = program_as_of(conn, program_id, as_of)
    placed = _place(conn, program, as_of, f_scores(conn, program_id, as_of))
    return MatrixReport(program_id, as_of, program.insights.matrix, count(placed), placed)


@read_use_case
def member_loyalty(conn: Connection, program_id: str, member_id: str, as_of: datetime,
                   f_score: int) -> MemberLoyalty | None:
    """One member's share of wallet, latest answers and loyalty type as of an instant (for
    a member's insights), given their F score (RFM's, which is ranked over the program);
    None when they are not enrolled in the program by then. The same figures as their row
    of loyalty_matrix_report, in three statements about them alone."""
    program = program_as_of(conn, program_id, as_of)
    placed = _place(conn, program, as_of, {member_id: f_score}, member_id)
    return placed[0] if placed else None
