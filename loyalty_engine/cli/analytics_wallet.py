"""`loyalty analytics wallet ...` and `loyalty analytics loyalty-matrix`: share of wallet
(members' wallet totals imported, the program's share of them shown with the growth
potential) and the behavioural x attitudinal loyalty matrix. `register(app)` adds them to
the `loyalty analytics` group."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from loyalty_engine.analytics.loyalty_matrix import CELLS, LoyaltyType
from loyalty_engine.cli.analytics import CHART, CSV, PROGRAM, emit_csv, output_mode
from loyalty_engine.cli.charts import ChartTable, new_figure, write_chart
from loyalty_engine.cli.context import as_of as as_of_option
from loyalty_engine.cli.context import engine_for, now, program_zone
from loyalty_engine.cli.options import AS_OF, JSON
from loyalty_engine.cli.output import console, emit_json, money, print_line_errors, when
from loyalty_engine.services.wallet import (
    MatrixReport,
    WalletReport,
    import_wallet,
    loyalty_matrix_report,
    wallet_report,
)

wallet_app = typer.Typer(help="Share of wallet: members' wallet totals and the program's "
                         "share.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add `wallet` (import, show) and `loyalty-matrix` to the `loyalty analytics` group."""
    app.add_typer(wallet_app, name="wallet")
    app.command("loyalty-matrix")(loyalty_matrix)


# --- output helpers -----------------------------------------------------------------------

def _percent(share: Fraction | None) -> str:
    return "-" if share is None else f"{float(share) * 100:.1f} %"


def _ratio(share: Fraction | None) -> float | None:
    return None if share is None else round(float(share), 6)


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
        print_line_errors(file, report.errors, "total")
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
    mode = output_mode(json_out, csv_out)
    report = wallet_report(engine_for(ctx), program, as_of_option(ctx, as_of, program),
                           period)
    if mode == "json":
        emit_json(report.as_json())
    elif mode == "csv":
        ranks = {(r.member_id, r.category, r.period): i
                 for i, r in enumerate(report.ranking, start=1)}
        emit_csv(WALLET_COLUMNS, [
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


# --- the loyalty matrix ---------------------------------------------------------------------

MATRIX_COLUMNS = ("member_id", "f", "wallet_share", "nps", "commitment", "behavioural",
                  "attitudinal", "type")
_CELL_TITLES = {"true": "true loyalty", "latent": "latent loyalty",
                "spurious": "spurious loyalty", "none": "no loyalty"}


def loyalty_matrix(
    ctx: typer.Context,
    program: str = PROGRAM,
    as_of: str | None = AS_OF,
    json_out: bool = JSON,
    csv_out: bool = CSV,
    chart: Path | None = CHART,
) -> None:
    """Behavioural x attitudinal loyalty: true, latent, spurious and none, with counts."""
    mode = output_mode(json_out, csv_out, chart)
    report = loyalty_matrix_report(engine_for(ctx), program,
                                   as_of_option(ctx, as_of, program))
    if chart is not None:
        _matrix_chart(report, chart)
    if mode == "json":
        emit_json(report.as_json())
    elif mode == "csv":
        emit_csv(MATRIX_COLUMNS, [[m[c] for c in MATRIX_COLUMNS]
                              for m in report.as_json()["members"]])
    else:
        _matrix_table(ctx, report, chart)


def _matrix_table(ctx: typer.Context, report: MatrixReport, chart: Path | None) -> None:
    zone = program_zone(ctx, report.program_id)
    c, t = report.counts, report.thresholds
    behaviour = f"F >= {t.f_at_least}" + (
        "" if t.wallet_share_at_least is None
        else f" or share of wallet >= {_percent(t.wallet_share_at_least)}")
    attitude = f"NPS >= {t.nps_at_least} or commitment >= {t.commitment_at_least}"
    table = Table("", f"attitude ({attitude})", "no attitude", "attitude unknown",
                  title="loyalty matrix")
    table.add_row(f"behaviour ({behaviour})", _cell(c.true, c.share("true"), "true"),
                  _cell(c.spurious, c.share("spurious"), "spurious"),
                  str(c.unknown_behavioural))
    table.add_row("no behaviour", _cell(c.latent, c.share("latent"), "latent"),
                  _cell(c.none, c.share("none"), "none"), str(c.unknown_not_behavioural))
    console.print(table)
    console.print(f"{report.program_id}: {len(report.members)} member(s) as of "
                  f"{when(report.as_of, zone)}, {c.unknown} without an answer (shares are of "
                  f"the {c.known} with one)"
                  + (f"; chart written to {chart}" if chart is not None else ""), markup=False)


def _cell(members: int, share: Fraction | None, cell: LoyaltyType) -> str:
    return f"{_CELL_TITLES[cell]}: {members} ({_percent(share)})"


def _matrix_chart(report: MatrixReport, path: Path) -> None:
    c = report.counts
    figure = new_figure(6.4, 5.2)
    axes = figure.subplots()
    grid = [[c.latent, c.true], [c.none, c.spurious]]  # rows: attitude yes, no
    highest = max(1, c.true, c.latent, c.spurious, c.none)
    axes.imshow(grid, cmap="Blues", vmin=0, vmax=highest)
    labels: list[list[LoyaltyType]] = [["latent", "true"], ["none", "spurious"]]
    for row in range(2):
        for col in range(2):
            share = report.counts.share(labels[row][col])
            colour = "white" if grid[row][col] > highest / 2 else "black"
            axes.text(col, row, f"{labels[row][col]}\n{grid[row][col]}\n({_percent(share)})",
                      ha="center", va="center", fontsize=12, color=colour)
    t = report.thresholds
    behaviour = f"F >= {t.f_at_least}" + (
        "" if t.wallet_share_at_least is None
        else f" or wallet >= {_percent(t.wallet_share_at_least)}")
    axes.set_xticks([0, 1], labels=["low behaviour", f"high behaviour\n({behaviour})"])
    axes.set_yticks([0, 1], labels=[f"high attitude\n(NPS >= {t.nps_at_least} or\n"
                                    f"commitment >= {t.commitment_at_least})",
                                    "low attitude"])
    axes.set_title(f"{report.program_id} as of {report.as_of.isoformat(timespec='minutes')}"
                   f"\n{c.unknown} member(s) without an answer, not shown")
    rows = [[_CELL_TITLES[cell], getattr(c, cell), _percent(c.share(cell))]
            for cell in CELLS]
    rows += [["attitude unknown, behaving", c.unknown_behavioural, "-"],
             ["attitude unknown, not behaving", c.unknown_not_behavioural, "-"]]
    write_chart(figure, path, f"Loyalty matrix of {report.program_id}",
                [ChartTable("members by loyalty type", ("type", "members", "share"), rows)])
