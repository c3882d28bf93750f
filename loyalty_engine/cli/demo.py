"""`loyalty demo`: a fresh SQLite database, the shipped rules, a seeded year of purchases."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import typer
from rich.table import Table
from sqlalchemy.engine import make_url

from loyalty_engine.cli.context import CHOSEN_DATABASE, now, parse_instant
from loyalty_engine.cli.output import console, fail, when
from loyalty_engine.demo import run_demo
from loyalty_engine.shipped import examples_dir
from loyalty_engine.store import migrate
from loyalty_engine.store.database import open_engine, resolve_url
from loyalty_engine.store.sqlite_files import application_id

# Written to the SQLite header of databases the demo creates, so that a re-run may replace
# them but never a database the demo did not create.
DEMO_MARK = 0x4C44454D  # "LDEM"


def _is_demo_file(path: Path) -> bool:
    """True for an empty file or a SQLite database the demo created."""
    if path.stat().st_size == 0:
        return True
    return application_id(path) == DEMO_MARK


def demo(
    database: str = typer.Option(
        "sqlite:///loyalty-demo.db", "--database",
        help="Where to run the demo. A SQLite file is recreated; PostgreSQL must be empty.",
    ),
    rules: Path | None = typer.Option(
        None, "--rules", show_default=False,
        help="Program files to apply (default: the example programs shipped with the engine, "
             "see `loyalty rules examples`).",
    ),
    members: int = typer.Option(300, min=1, max=100_000, help="How many members to simulate."),
    seed: int = typer.Option(42, help="Random seed: the same seed gives the same year."),
    as_of: str | None = typer.Option(None, "--as-of",
                                     help="End of the simulated year (default: now)."),
    reset: bool = typer.Option(
        False, "--reset", help="Replace a SQLite file even if the demo did not create it."
    ),
) -> None:
    """A seeded year of a coffee chain's purchases, run through the engine."""
    end = parse_instant(as_of, "--as-of") or now()
    CHOSEN_DATABASE["url"] = database
    url = resolve_url(database)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        if path.exists() and not reset and not _is_demo_file(path):
            fail(f"{path} holds data that the demo did not create; the demo replaces its "
                 "database, so pass --reset to replace it, or choose another file")
        for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            leftover.unlink(missing_ok=True)
    engine = open_engine(url)
    if parsed.get_backend_name() != "sqlite" and migrate.current_revision(engine) is not None:
        fail(f"{parsed.render_as_string(hide_password=True)} is not empty; the demo needs an "
             "empty PostgreSQL database")
    migrate.upgrade(engine)
    if parsed.get_backend_name() == "sqlite":
        with engine.begin() as conn:
            conn.exec_driver_sql(f"PRAGMA application_id = {DEMO_MARK}")
    with console.status("simulating a year of purchases..."):
        summary = run_demo(engine, rules or examples_dir(), end, seed, members)
    console.print(f"[bold]loyalty-engine demo[/] on {summary.database}")
    console.print(f"programs applied: {', '.join(summary.programs)}; "
                  f"year ending {when(summary.as_of)}, seed {seed}")
    programs = sorted({p for s in summary.segments.values() for p in s.points})
    table = Table("customers", "members", "purchases", "spend",
                  *(f"{p} points" for p in programs), title="a year of purchases")
    for name, s in summary.segments.items():
        table.add_row(name, str(s.members) if name != "anonymous" else "-", str(s.purchases),
                      summary.money(s.spend_minor),
                      *(str(s.points.get(p, 0)) for p in programs))
    console.print(table)
    top = Table("program", "member", "spendable points", title="top members, per program")
    for program_id, member_id, points in summary.top:
        top.add_row(program_id, member_id, str(points))
    console.print(top)
    console.print(f"{summary.purchases} purchases stored ({summary.anonymous} anonymous, "
                  "which earn nothing); points in the ledger: "
                  + ", ".join(f"{p} {n}" for p, n in summary.points.items()) + ".")
    console.print(f"Posting the whole year again changed {summary.replay_changed} purchases "
                  "(every one was recognised as already recorded).")
    console.print(f"{summary.refunds} purchases refunded (in full or in part), points taken "
                  "back pro rata: " + (", ".join(f"{p} {n}" for p, n in
                                                 sorted(summary.points_refunded.items()))
                                       or "none")
                  + f"; {summary.stamp_vouchers} free-coffee vouchers from full stamp cards.")
    console.print("Pending points that became spendable at the end of the year: "
                  + (", ".join(f"{p} {n}" for p, n in summary.pending_activated.items())
                     or "none")
                  + f"; {summary.redemptions} members bought a voucher for "
                  f"{summary.points_redeemed} bean-there points.")
    if summary.tiers:
        ladder = ", ".join(f"{tier or 'none'} {n}" for tier, n in summary.tiers.items())
        reviews = ", ".join(summary.tier_review_days) or "none due"
        console.print(f"Glow Beauty tiers: {ladder}; the tier review (days: {reviews}) "
                      f"judged {summary.tier_reviews} member(s) in "
                      f"{summary.tier_review_seconds:.3f} s.")
    console.print(f"{summary.club_members} members joined the Bean Club with their first "
                  "purchase.")
    if summary.segment_mix:
        mix = ", ".join(f"{segment} {n}" for segment, n in summary.segment_mix.items())
        console.print(f"Bean There's members by RFM segment at the year's end: {mix}.",
                      markup=False)
    if summary.retention is not None:
        quarter, rate = summary.retention
        shown = "n/a" if rate is None else f"{rate:.1%}"
        console.print(f"Retention in {quarter} (members buying in the quarter before who "
                      f"bought again in it): {shown}.", markup=False)
    console.print(f"Customer base value (the sum of members' lifetime values, "
                  f"{summary.clv_method}): {summary.money(summary.base_value_minor)}.",
                  markup=False)
    first = summary.top[0][1] if summary.top else "M00001"
    console.print(f"\nNext: [bold]{_this_command()} --database {database} members explain "
                  f"{first}[/]")


def _this_command() -> str:
    """How the user invoked loyalty (e.g. .venv/bin/loyalty), for the hint to copy."""
    invoked = Path(sys.argv[0])
    if invoked.name != "loyalty":
        return "loyalty"
    try:
        return str(invoked.resolve().relative_to(Path.cwd()))
    except ValueError:
        return "loyalty" if shutil.which("loyalty") == str(invoked) else str(invoked)
