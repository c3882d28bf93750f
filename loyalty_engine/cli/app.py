"""The `loyalty` command: the root Typer app, its global options and error handling."""

from __future__ import annotations

import os
import sqlite3
import sys

import typer
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError

from loyalty_engine.cli import (
    apikeys,
    clubs,
    db,
    events,
    fees,
    members,
    points,
    purchases,
    rebates,
    redemptions,
    rules,
    scheduler,
    tiers,
)
from loyalty_engine.cli.context import CHOSEN_DATABASE, Settings
from loyalty_engine.cli.demo import demo
from loyalty_engine.cli.output import err_console
from loyalty_engine.cli.serve import serve
from loyalty_engine.domain.money import MoneyError
from loyalty_engine.rules import ProgramFileError
from loyalty_engine.services.errors import LoyaltyError
from loyalty_engine.shipped import PackageDataError, version
from loyalty_engine.store.database import DatabaseUrlError, describe_url, resolve_url

app = typer.Typer(
    name="loyalty",
    help="loyalty-engine: loyalty and frequency programs as files, purchases awarded once.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db.app, name="db")
app.add_typer(rules.app, name="rules")
app.add_typer(purchases.app, name="purchases")
app.add_typer(members.app, name="members")
app.add_typer(redemptions.app, name="redemptions")
app.add_typer(points.app, name="points")
app.add_typer(clubs.app, name="clubs")
app.add_typer(fees.app, name="fees")
app.add_typer(tiers.app, name="tiers")
app.add_typer(rebates.app, name="rebates")
app.add_typer(events.app, name="events")
app.add_typer(scheduler.app, name="scheduler")
app.add_typer(apikeys.app, name="apikeys")
app.command()(demo)
app.command()(serve)


def _print_version(asked: bool) -> None:
    if asked:
        print(f"loyalty-engine {version()}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    database: str | None = typer.Option(
        None, "--database", "-d", metavar="URL",
        help="Database URL (default: $LOYALTY_DATABASE_URL, else sqlite:///loyalty.db).",
    ),
    _version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version,
        help="Print the installed version and exit.",
    ),
) -> None:
    """Global options."""
    ctx.obj = Settings(database=database)
    CHOSEN_DATABASE["url"] = database



def _error(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True, markup=True,
                      highlight=False)


def main() -> None:
    """Entry point of the console script: a clear sentence and exit 1, never a traceback."""
    try:
        app()
    except ProgramFileError as exc:
        for problem in exc.problems:
            err_console.print(str(problem), markup=False, soft_wrap=True)
        sys.exit(1)
    except (LoyaltyError, DatabaseUrlError, MoneyError, PackageDataError) as exc:
        _error(str(exc).replace("[", r"\["))
        sys.exit(1)
    except ValidationError as exc:
        _error(str(exc).splitlines()[0])
        sys.exit(1)
    except OverflowError as exc:
        # Date arithmetic past year 9999 (an --as-of at the end of time, say).
        _error(f"a date or number is out of range ({exc}); use a realistic value")
        sys.exit(1)
    except KeyboardInterrupt:
        _error("interrupted; the current transaction was rolled back")
        sys.exit(130)
    except Exception as exc:
        _fail(exc)


def _from(exc: Exception, package: str) -> bool:
    return type(exc).__module__.split(".")[0] == package


def _fail(exc: Exception) -> None:
    """Errors of libraries imported only when a command needs them (Alembic's command
    errors, psycopg's: recognised by module, so that every command need not load them), a
    database error as one sentence, or an internal error."""
    if _from(exc, "alembic") and type(exc).__name__ == "CommandError":
        _error(str(exc).replace("[", r"\["))
        sys.exit(1)
    if isinstance(exc, OperationalError | DBAPIError | sqlite3.Error) or _from(exc, "psycopg"):
        if os.environ.get("LOYALTY_DEBUG"):
            raise exc
        cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc
        detail = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        try:
            where = describe_url(resolve_url(CHOSEN_DATABASE["url"]))
        except DatabaseUrlError:
            where = "the database"
        _error(f"database error ({where}): {detail}".replace("[", r"\["))
        sys.exit(1)
    if os.environ.get("LOYALTY_DEBUG"):
        raise exc
    _error(f"internal error: {type(exc).__name__}: {exc} (set LOYALTY_DEBUG=1 for a "
           "traceback, and please report it)".replace("[", r"\["))
    sys.exit(2)
