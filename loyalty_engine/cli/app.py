"""The `loyalty` command: the root Typer app, its global options and error handling."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer
from pydantic import ValidationError
from rich.text import Text

from loyalty_engine.cli.config import load_config
from loyalty_engine.cli.context import CHOSEN_DATABASE, Settings, chosen_database
from loyalty_engine.cli.lazy_group import LazyGroup
from loyalty_engine.cli.output import err_console
from loyalty_engine.domain.errors import LoyaltyError
from loyalty_engine.domain.events import describe_errors
from loyalty_engine.domain.money import MoneyError
from loyalty_engine.rules import ProgramFileError
from loyalty_engine.shipped import PackageDataError, version
from loyalty_engine.store.database import DatabaseUrlError, describe_url, resolve_url
from loyalty_engine.store.errors import as_database_error

# The commands (cli/lazy_group.COMMANDS) are imported when they are run, not here.
app = typer.Typer(
    name="loyalty",
    help="loyalty-engine: loyalty and frequency programs as files, purchases awarded once.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=LazyGroup,
)


def _print_version(asked: bool) -> None:
    if asked:
        print(f"loyalty-engine {version()}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    database: str | None = typer.Option(
        None, "--database", "-d", metavar="URL",
        help="Database URL (default: $LOYALTY_DATABASE_URL, the config file's, else "
             "sqlite:///loyalty.db).",
    ),
    config: Path | None = typer.Option(
        None, "--config", metavar="FILE", help="A config file (default: $LOYALTY_CONFIG, "
        "./loyalty.toml, else loyalty/config.toml in your config folder)."),
    _version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version,
        help="Print the installed version and exit.",
    ),
) -> None:
    """Global options."""
    found = load_config(config, ctx.command)
    ctx.default_map = found.defaults or None
    chosen = chosen_database(database, found)
    ctx.obj = Settings(database=chosen, config=found)
    CHOSEN_DATABASE["url"] = chosen


def main() -> None:
    """Entry point of the console script: a clear sentence (JSON under --json) and a
    non-zero exit, never a traceback."""
    json_errors = "--json" in sys.argv[1:]
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as exc:  # a usage error: a bad option, a missing argument
        exit_code = int(getattr(exc, "exit_code", 2))
        if json_errors:
            _json_error("usage", exc.format_message(), exit_code)
        from typer import rich_utils

        rich_utils.rich_format_error(exc)  # type: ignore[arg-type]
        sys.exit(exit_code)
    except typer.Abort:
        _report("aborted", "aborted; nothing was changed", json_errors, 1)
    except ProgramFileError as exc:
        if json_errors:
            _json_error("program_file_invalid", f"{len(exc.problems)} problem(s) in program "
                        "files", 1, problems=[{"file": p.path, "line": p.line,
                                                "column": p.column, "message": p.message}
                                               for p in exc.problems])
        for problem in exc.problems:
            err_console.print(str(problem), markup=False, soft_wrap=True)
        sys.exit(1)
    except LoyaltyError as exc:
        _report(exc.code, str(exc), json_errors, 1)
    except DatabaseUrlError as exc:
        _report("database_url", str(exc), json_errors, 1)
    except MoneyError as exc:
        _report("invalid_amount", str(exc), json_errors, 1)
    except PackageDataError as exc:
        _report("package_incomplete", str(exc), json_errors, 1)
    except ValidationError as exc:
        _report("invalid_input", "; ".join(describe_errors(exc)), json_errors, 1)
    except OverflowError as exc:
        # Date arithmetic past year 9999 (an --as-of at the end of time, say).
        _report("out_of_range", f"a date or number is out of range ({exc}); use a realistic "
                "value", json_errors, 1)
    except KeyboardInterrupt:
        _report("interrupted", "interrupted; the current transaction was rolled back",
                json_errors, 130)
    except Exception as exc:
        _fail(exc, json_errors)
    sys.exit(code if isinstance(code, int) else 0)


def _report(code: str, message: str, json_errors: bool, exit_code: int) -> NoReturn:
    """One error: `error: message` for people, or {"error": code, "message": ...} on
    standard error under --json; then exit."""
    if json_errors:
        _json_error(code, message, exit_code)
    err_console.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True,
                      highlight=False)
    sys.exit(exit_code)


def _json_error(code: str, message: str, exit_code: int, **more: Any) -> NoReturn:
    sys.stderr.write(json.dumps({"error": code, "message": message, **more},
                                ensure_ascii=False) + "\n")
    sys.exit(exit_code)


def _from(exc: Exception, package: str) -> bool:
    return type(exc).__module__.split(".")[0] == package


def _fail(exc: Exception, json_errors: bool) -> NoReturn:
    """Errors of libraries imported only when a command needs them (Alembic's command
    errors: recognised by module, so that every command need not load them), a database
    error (store/errors.py: the drivers' errors as one type) as one sentence, or an
    internal error."""
    if _from(exc, "alembic") and type(exc).__name__ == "CommandError":
        _report("migration", str(exc), json_errors, 1)
    failure = as_database_error(exc)
    if failure is not None:
        if os.environ.get("LOYALTY_DEBUG"):
            raise exc
        detail = failure.detail or failure.name
        try:
            where = describe_url(resolve_url(CHOSEN_DATABASE["url"]))
        except DatabaseUrlError:
            where = "the database"
        missing = re.search(r'database "([^"]+)" does not exist', detail)
        if missing:
            _report("database_missing", f"{where}: the database {missing.group(1)!r} does "
                    f"not exist; create it (createdb {missing.group(1)}), or run `loyalty db "
                    "upgrade --create`", json_errors, 1)
        _report("database_error", f"database error ({where}): {detail}", json_errors, 1)
    if os.environ.get("LOYALTY_DEBUG"):
        raise exc
    _report("internal_error", f"internal error: {type(exc).__name__}: {exc} (set "
            "LOYALTY_DEBUG=1 for a traceback, and please report it)", json_errors, 2)
