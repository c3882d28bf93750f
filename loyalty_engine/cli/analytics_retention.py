"""`loyalty analytics retention | cohorts | lapsed`: retention and defection per period (split
by segment, tier or club) with the relationship length, the monthly acquisition cohorts
(a heatmap with --chart), and the lapsed members with the rule that judged them."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import typer
from rich.markup import escape
from rich.table import Table

from loyalty_engine.cli.analytics import CHART, CSV, PROGRAM, emit_csv, output_mode
from loyalty_engine.cli.charts import ChartTable, new_figure, write_chart
from loyalty_engine.cli.context import as_of as as_of_option
from loyalty_engine.cli.context import engine_for
from loyalty_engine.cli.options import AS_OF, JSON
from loyalty_engine.cli.output import console, emit_json, when
from loyalty_engine.services.analytics_retention import (
    CohortReport,
    LapseReport,
    RetentionReport,
    cohort_report,
    lapsed_members,
    retention_report,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure



def register(app: typer.Typer) -> None:
    """Add retention, cohorts and lapsed to the `loyalty analytics` group."""
    app.command("retention")(retention)
    app.command("cohorts")(cohorts)
    app.command("lapsed")(lapsed)


def _print(json_out: bool, csv_out: bool, chart: Path | None, as_json: Any,
           as_csv: Callable[[], None], as_tables: Callable[[], None]) -> None:
    if json_out:
        emit_json(as_json())
    elif csv_out:
        as_csv()
    else:
        as_tables()
        if chart is not None:
            console.print(f"chart written to {chart}", markup=False)


def retention(
    ctx: typer.Context, program: str = PROGRAM, as_of: str | None = AS_OF,
    period: str = typer.Option("month", "--period", help="month, quarter or year "
                               "(calendar, in the program's time zone)."),
    periods: int = typer.Option(12, "--periods", min=1, help="How many periods, up to the "
                                "one holding --as-of."),
    by: str | None = typer.Option(None, "--by", help="Split by segment, tier or club."),
    window: int = typer.Option(1, "--window", min=1, help="The activity window in periods: "
                               "a customer at a period's start bought in one of the "
                               "WINDOW periods before it."),
    json_out: bool = JSON, csv_out: bool = CSV, chart: Path | None = CHART,
) -> None:
    """Retention and defection per period: (E - N) / S, and the relationship length."""
    output_mode(json_out, csv_out, chart)
    if period not in ("month", "quarter", "year"):
        raise typer.BadParameter("use month, quarter or year", param_hint="--period")
    if by not in (None, "segment", "tier", "club"):
        raise typer.BadParameter("use segment, tier or club", param_hint="--by")
    report = retention_report(engine_for(ctx), program, as_of_option(ctx, as_of, program),
                              period, periods, by, window)  # type: ignore[arg-type]
    if chart is not None:
        write_chart(*_retention_chart(report, chart))
    _print(json_out, csv_out, chart, report.as_json,
           lambda: emit_csv(*_retention_rows(report)), lambda: _print_retention(report))


RETENTION_COLUMNS = ("group", "period", "start", "end", "partial", "at_start", "at_end",
                     "new", "first_time", "returning", "retained", "lost", "retention",
                     "defection")


def _retention_rows(report: RetentionReport) -> tuple[Sequence[str], list[list[Any]]]:
    series = report.groups if report.split else {"": report.periods}
    rows = [[name, *(p.as_json()[k] for k in RETENTION_COLUMNS[1:])]
            for name, periods in series.items() for p in periods]
    return RETENTION_COLUMNS, rows


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _print_retention(report: RetentionReport) -> None:
    as_of = when(report.as_of, ZoneInfo(report.timezone))
    console.print(f"{report.program_id}: retention per {report.period} as of {as_of} "
                  f"({report.timezone}); S = customers at the start (bought in the "
                  f"{report.window} {report.period}(s) before), E = at the end, N = new or "
                  "returning; retention = (E - N) / S", markup=False)
    table = Table(*(("group",) if report.split else ()), "period", "S", "E", "N",
                  "first-time", "returning", "retained", "lost", "retention", "defection")
    series = report.groups if report.split else {"": report.periods}
    for name, periods in series.items():
        for p in periods:
            table.add_row(*((escape(name) or "(none)",) if report.split else ()),
                          p.period + (" (so far)" if p.partial else ""), str(p.at_start),
                          str(p.at_end), str(p.new), str(p.first_time), str(p.returning),
                          str(p.retained), str(p.lost), _rate(p.retention),
                          _rate(p.defection))
    console.print(table)
    tenure = Table("relationship length", "members", "share",
                   title=f"relationship length of {report.members} member(s)")
    for b in report.tenure:
        tenure.add_row(b.label, str(b.members), f"{b.share:.1%}")
    console.print(tenure)


def cohorts(
    ctx: typer.Context, program: str = PROGRAM, as_of: str | None = AS_OF,
    months: int = typer.Option(12, "--months", min=1, help="Cohorts of this many months, "
                               "up to the one holding --as-of."),
    json_out: bool = JSON, csv_out: bool = CSV, chart: Path | None = CHART,
) -> None:
    """Monthly cohorts: the share of each month's new members who buy later.

    Each first-purchase month's members, and the share of them who buy in each month after
    it."""
    output_mode(json_out, csv_out, chart)
    report = cohort_report(engine_for(ctx), program, as_of_option(ctx, as_of, program),
                           months)
    if chart is not None:
        write_chart(*_cohort_chart(report, chart))
    _print(json_out, csv_out, chart, report.as_json,
           lambda: emit_csv(("cohort", "size", "k", "active", "share"), _cohort_rows(report)),
           lambda: _print_cohorts(report))


def _cohort_rows(report: CohortReport) -> list[list[Any]]:
    return [[c.month, c.size, k, n, share] for c in report.cohorts
            for k, (n, share) in enumerate(zip(c.active, c.shares, strict=True))]


def _print_cohorts(report: CohortReport) -> None:
    width = max((len(c.active) for c in report.cohorts), default=0)
    as_of = when(report.as_of, ZoneInfo(report.timezone))
    table = Table("cohort", "size", *(f"+{k}" for k in range(width)),
                  title=f"{report.program_id}: share of each cohort buying k months after "
                        f"its first purchase, as of {as_of} ({report.timezone})")
    for c in report.cohorts:
        cells = [f"{s:.0%}" for s in c.shares]
        table.add_row(c.month, str(c.size), *cells, *([""] * (width - len(cells))))
    console.print(table)
    if report.partial and report.cohorts:
        console.print(f"{report.cohorts[-1].month} is not over yet: its column holds the "
                      "purchases so far", markup=False)


def lapsed(ctx: typer.Context, program: str = PROGRAM, as_of: str | None = AS_OF,
           json_out: bool = JSON, csv_out: bool = CSV) -> None:
    """Members who have lapsed: P(alive) low, or a gap far over their own usual gap.

    P(alive) below the program's threshold, or a gap since their last purchase over a
    multiple of their own usual gap."""
    output_mode(json_out, csv_out)
    report = lapsed_members(engine_for(ctx), program, as_of_option(ctx, as_of, program))
    _print(json_out, csv_out, None, report.as_json,
           lambda: emit_csv(("member_id", "rule", "gap_days", "mean_gap_days",
                               "threshold_days", "p_alive", "reason"),
                              [[v.member_id, v.rule, v.gap_days, v.mean_gap_days,
                                v.threshold_days, v.p_alive, v.reason]
                               for v in report.lapsed]),
           lambda: _print_lapsed(report))


def _print_lapsed(report: LapseReport) -> None:
    as_of = when(report.as_of, ZoneInfo(report.timezone))
    console.print(f"{report.program_id}: {len(report.lapsed)} of {report.members} member(s) "
                  f"lapsed as of {as_of}, by the {report.rule} rule: {report.why}",
                  markup=False)
    if not report.lapsed:
        return
    table = Table("member", "days since", "mean gap", "limit", "P(alive)", "why")
    for v in report.lapsed:
        table.add_row(escape(v.member_id), str(v.gap_days),
                      "-" if v.mean_gap_days is None else f"{v.mean_gap_days:.1f}",
                      "-" if v.threshold_days is None else f"{v.threshold_days:.1f}",
                      "-" if v.p_alive is None else f"{v.p_alive:.3f}", v.reason)
    console.print(table)


# Charts, drawn with matplotlib (imported only when a chart is asked for) on figures made
# without pyplot, so no display or GUI backend is ever involved.

def _retention_chart(report: RetentionReport, path: Path
                     ) -> tuple[Figure, Path, str, list[ChartTable]]:
    """The retention curve: the retention rate per period, a line per group when split."""
    figure = new_figure(9, 4.5)
    axes = figure.add_subplot()
    series = report.groups if report.split else {"all members": report.periods}
    keys = [p.period for p in report.periods]  # every series has these periods, in order
    for name, periods in series.items():
        axes.plot(range(len(keys)),
                  [math.nan if p.retention is None else p.retention * 100 for p in periods],
                  marker="o", label=name or "(none)")
    axes.set_xticks(range(len(keys)), keys)
    axes.set_ylim(-2, 102)
    axes.set_ylabel("retention (E - N) / S, %")
    axes.set_xlabel(report.period)
    title = (f"{report.program_id}: retention per {report.period} as of "
             f"{_local(report.as_of, report.timezone)}")
    axes.set_title(title)
    axes.tick_params(axis="x", labelrotation=45)
    axes.grid(True, alpha=0.3)
    if report.split:
        axes.legend(title=report.split)
    columns, rows = _retention_rows(report)
    tables = [ChartTable("Retention: S at the start, E at the end, N new or returning",
                          columns, rows),
              ChartTable(f"Relationship length of {report.members} member(s)",
                          ("relationship length", "members", "share"),
                          [[b.label, b.members, f"{b.share:.1%}"] for b in report.tenure])]
    return figure, path, title, tables


def _cohort_chart(report: CohortReport, path: Path
                  ) -> tuple[Figure, Path, str, list[ChartTable]]:
    """The cohort heatmap: a row per cohort, a column per month after, the share in each."""
    import numpy as np

    width = max((len(c.active) for c in report.cohorts), default=1)
    matrix = np.full((len(report.cohorts), width), np.nan)
    for row, c in enumerate(report.cohorts):
        matrix[row, :len(c.shares)] = c.shares
    figure = new_figure(1.5 + 0.6 * width, 1.2 + 0.4 * len(report.cohorts))
    axes = figure.add_subplot()
    image = axes.imshow(matrix * 100, cmap="Blues", vmin=0, vmax=100, aspect="auto")
    for row, c in enumerate(report.cohorts):
        for k, share in enumerate(c.shares):
            axes.text(k, row, f"{share:.0%}", ha="center", va="center", fontsize=8,
                      color="white" if share > 0.6 else "black")
    axes.set_xticks(range(width), [f"+{k}" for k in range(width)])
    axes.set_yticks(range(len(report.cohorts)),
                    [f"{c.month} ({c.size})" for c in report.cohorts])
    axes.set_xlabel("months after the first purchase")
    axes.set_ylabel("cohort (members)")
    title = (f"{report.program_id}: cohort retention as of "
             f"{_local(report.as_of, report.timezone)}")
    axes.set_title(title)
    figure.colorbar(image, ax=axes, label="% of the cohort buying")
    table = ChartTable("Share of each cohort buying k months after its first purchase",
                        ("cohort", "size", *(f"+{k}" for k in range(width))),
                        [[c.month, c.size, *(f"{s:.0%}" for s in c.shares)]
                         for c in report.cohorts])
    return figure, path, title, [table]


def _local(instant: datetime, zone: str) -> str:
    """An instant as people in the program's zone read it, to the minute."""
    return instant.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")
