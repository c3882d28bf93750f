"""`loyalty analytics wallet ...` and `loyalty analytics loyalty-matrix`: share of wallet
(members' wallet totals imported, the program's share of them shown with the growth
potential) and the behavioural x attitudinal loyalty matrix. `register(app)` adds them to
the `loyalty analytics` group."""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from loyalty_engine.cli.context import as_of as as_of_option
from loyalty_engine.cli.context import engine_for, now, program_zone
from loyalty_engine.cli.options import AS_OF, JSON
from loyalty_engine.cli.output import CommandRefused, console, emit_json, err_console, money, when
from loyalty_engine.services.importing import LineError
from loyalty_engine.services.wallet import WalletReport, import_wallet, wallet_report

PROGRAM = typer.Option(..., "--program", help="The program to measure.")
CSV = typer.Option(False, "--csv", help="Print CSV (one header line, then the rows).")

wallet_app = typer.Typer(help="Share of wallet: members' wallet totals and the program's "
                         "share.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add `wallet` (import, show) to the `loyalty analytics` group."""
    app.add_typer(wallet_app, name="wallet")


# --- output helpers -----------------------------------------------------------------------

def _mode(json_out: bool, csv_out: bool) -> str:
    if json_out and csv_out:
        raise CommandRefused("give --json or --csv, not both")
    return "json" if json_out else "csv" if csv_out else "table"


def _csv(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([["" if v is None else v for v in row] for row in rows])


def _percent(share: Fraction | None) -> str:
    return "-" if share is None else f"{float(share) * 100:.1f} %"


def _ratio(share: Fraction | None) -> float | None:
    return None if share is None else round(float(share), 6)


def _import_errors(path: Path, errors: list[LineError], what: str) -> None:
    for error in errors:
        err_console.print(f"{path}:{error.line}: {error.reason}", markup=False,
                          soft_wrap=True)
    err_console.print(f"{len(errors)} bad line(s); no {what} was imported (fix them and "
                      "import the file again)", markup=False)


# --- wallet ---------------------------------------------------------------------------------

@wallet_app.command("import")
def wallet_import(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="A CSV file: member_id,category,period,amount,"
                                "currency (period 2026, 2026-Q1 or 2026-03)."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON report."),
) -> None:
    """Import members' wallet totals, all or nothing; a total given again replaces it."""
    report = import_wallet(engine_for(ctx), file, now())
    if json_out:
        emit_json(report.as_json())
        if not report.committed:
            raise SystemExit(1)
        return
    if not report.committed:
        _import_errors(file, report.errors, "total")
        raise SystemExit(1)
    console.print(f"{report.read} wallet total(s) read: {report.added} added, "
                  f"{report.replaced} replaced, {report.unchanged} unchanged", markup=False)


WALLET_COLUMNS = ("member_id", "category", "period", "complete", "spend_minor",
                  "wallet_minor", "share", "growth_minor", "exceeds_wallet", "growth_rank",
                  "currency")


@wallet_app.command("show")
def wallet_show(
    ctx: typer.Context,
    program: str = PROGRAM,
    period: str | None = typer.Option(None, "--period", help="Only wallet totals of this "
                                      "period: 2026, 2026-Q1 or 2026-03."),
    as_of: str | None = AS_OF,
    top: int = typer.Option(20, "--top", min=1, help="Rank this many members by growth "
                            "potential in the table (JSON and CSV hold all)."),
    json_out: bool = JSON,
    csv_out: bool = CSV,
) -> None:
    """Share of wallet per member and category, the program's share, growth potential."""
    mode = _mode(json_out, csv_out)
    report = wallet_report(engine_for(ctx), program, as_of_option(ctx, as_of, program),
                           period)
    if mode == "json":
        emit_json(report.as_json())
    elif mode == "csv":
        ranks = {(r.member_id, r.category, r.period): i
                 for i, r in enumerate(report.ranking, start=1)}
        _csv(WALLET_COLUMNS, [
            [r.member_id, r.category, r.period, report.complete(r.period), r.spend_minor,
             r.wallet_minor, _ratio(r.share), r.growth_minor, r.exceeds_wallet,
             ranks.get((r.member_id, r.category, r.period)), r.currency]
            for r in report.rows])
    else:
        _wallet_tables(ctx, report, top)


def _wallet_tables(ctx: typer.Context, report: WalletReport, top: int) -> None:
    zone = program_zone(ctx, report.program_id)
    cur = report.currency
    shares = Table("category", "period", "members", "spend", "wallet", "share",
                   "growth potential", title="the program's share of wallet")
    for group in (report.by_period, report.by_category):
        for p in group:
            name = "all" if p.category == "*" else escape(p.category)
            period = p.period + ("" if report.complete(p.period) else " (so far)")
            shares.add_row(name, period, str(p.members), money(p.spend_minor, cur),
                           money(p.wallet_minor, cur), _percent(p.share),
                           money(p.growth_minor, cur))
    console.print(shares)
    ranking = Table("rank", "member", "category", "period", "spend", "wallet", "share",
                    "growth potential", title="growth potential (wallet - spend)")
    for i, r in enumerate(report.ranking[:top], start=1):
        ranking.add_row(str(i), escape(r.member_id), escape(r.category), r.period,
                        money(r.spend_minor, cur), money(r.wallet_minor, cur),
                        _percent(r.share), money(r.growth_minor, cur))
    console.print(ranking)
    over = sum(1 for r in report.rows if r.exceeds_wallet)
    notes = [f"{report.program_id}: {len(report.rows)} wallet total(s) as of "
             f"{when(report.as_of, zone)}"]
    if len(report.ranking) > top:
        notes.append(f"{len(report.ranking) - top} more with growth potential (--top, "
                     "--json or --csv for all)")
    if over:
        notes.append(f"{over} total(s) below the spend measured here (counted as the whole "
                     "wallet; check the data)")
    if report.other_currency:
        notes.append(f"{report.other_currency} total(s) in another currency than {cur} left "
                     "out")
    console.print("; ".join(notes), markup=False)

