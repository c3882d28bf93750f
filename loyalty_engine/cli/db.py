"""`loyalty db ...`: migrate the schema and check the ledger against the cached balances."""

from __future__ import annotations

import typer

from loyalty_engine.cli.context import database_url, engine_for
from loyalty_engine.cli.options import YES
from loyalty_engine.cli.output import CommandRefused, confirm, console, emit_json, fail
from loyalty_engine.ledger.check import check_balances
from loyalty_engine.shipped import migrations_dir
from loyalty_engine.store import migrate
from loyalty_engine.store.database import create_database, describe_url, open_engine

app = typer.Typer(help="Create, migrate and check the database.", no_args_is_help=True)


@app.command()
def upgrade(
    ctx: typer.Context,
    revision: str = typer.Argument("head", help="Target revision (default: the newest)."),
    create: bool = typer.Option(False, "--create", help="PostgreSQL: create the database "
                                "first if it does not exist."),
) -> None:
    """Migrate the database to the newest schema (creates a SQLite file)."""
    url = database_url(ctx)
    migrations_dir()  # an installation without its migrations says so before touching a file
    if create:
        made = create_database(url)
        if made:
            console.print(f"created database {describe_url(url)}", markup=False)
    engine = open_engine(url)
    before = migrate.current_revision(engine)
    migrate.upgrade(engine, revision)
    after = migrate.current_revision(engine)
    where = describe_url(url)
    if before == after:
        console.print(f"{where} is already at revision {after}")
    else:
        console.print(f"migrated {where} from {before or 'empty'} to {after}")


@app.command()
def downgrade(
    ctx: typer.Context,
    revision: str = typer.Argument(..., help='Target revision; "base" removes every table.'),
    yes: bool = YES,
) -> None:
    """Migrate the database down to an older revision (asks first: it drops data)."""
    url = database_url(ctx)
    engine = open_engine(url)
    current_rev = migrate.current_revision(engine)
    if current_rev is None:
        raise CommandRefused(f"{describe_url(url)} has no schema to downgrade")
    held = migrate.row_counts(engine)
    what = ("drops every table" if revision == "base"
            else f"goes from revision {current_rev} to {revision}, dropping what came after")
    confirm(f"This {what} of {describe_url(url)}, which holds {held['members']} member(s) "
            f"and {held['ledger_entries']} ledger entries, and cannot be undone.", yes)
    migrate.downgrade(engine, revision)
    console.print(f"{describe_url(url)} is now at {migrate.current_revision(engine) or 'base'}")


@app.command()
def current(
    ctx: typer.Context, json_out: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """Show the database's schema revision and whether it is the newest."""
    url = database_url(ctx)
    engine = open_engine(url)
    current_rev = migrate.current_revision(engine)
    head = migrate.head_revision(engine)
    if json_out:
        emit_json({"database": describe_url(url), "current": current_rev, "head": head,
                   "up_to_date": current_rev == head})
        return
    state = "up to date" if current_rev == head else f"behind: the newest is {head}"
    console.print(f"{describe_url(url)}: revision {current_rev or 'none (empty)'} ({state})")


@app.command()
def check(
    ctx: typer.Context, json_out: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """Prove the cached balances and point lots agree with the append-only ledger."""
    report = check_balances(engine_for(ctx))
    if json_out:
        emit_json({"balances_checked": report.checked, "mismatches": report.mismatches})
    else:
        console.print(f"checked {report.checked} balances against the ledger")
    if report.mismatches:
        if not json_out:
            for row in report.mismatches:
                console.print(f"  {row}")
        fail(f"{len(report.mismatches)} balance(s) disagree with the ledger")
