"""`loyalty db ...`: migrate the schema and check the ledger against the cached balances."""

from __future__ import annotations

import typer

from loyalty_engine.cli.context import database_url, engine_for
from loyalty_engine.cli.output import console, emit_json, fail
from loyalty_engine.services.ledger_check import check_balances
from loyalty_engine.store import migrate
from loyalty_engine.store.database import describe_url, open_engine

app = typer.Typer(help="Create, migrate and check the database.", no_args_is_help=True)


@app.command()
def upgrade(
    ctx: typer.Context,
    revision: str = typer.Argument("head", help="Target revision (default: the newest)."),
) -> None:
    """Migrate the database up to the newest schema (creating a SQLite file if needed)."""
    url = database_url(ctx)
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
) -> None:
    """Migrate the database down to an older revision."""
    url = database_url(ctx)
    engine = open_engine(url)
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
