"""Printing for the CLI: rich tables for people, --json for scripts, errors as one sentence."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from loyalty_engine.domain.errors import LoyaltyError
from loyalty_engine.domain.money import format_money
from loyalty_engine.domain.plain_json import dumps

if TYPE_CHECKING:
    from loyalty_engine.services.importing import LineError

# soft_wrap: long lines stay whole when piped, so scripts and grep see one line per record.
# Piped output is read by scripts and people alike: wide enough that tables never cut a
# voucher code or a timestamp short (a terminal keeps its own width).
console = Console(highlight=False, soft_wrap=True,
                  width=None if Console().is_terminal else 240)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def emit_json(data: Any) -> None:
    """Write data as indented JSON to standard output."""
    sys.stdout.write(dumps(data, indent=2) + "\n")


def fail(message: str) -> None:
    """Stop the command with one sentence (`error: message` on standard error, or a JSON
    error under --json) and exit 1."""
    raise CommandRefused(message)


def when(value: datetime | None, zone: tzinfo | None = None) -> str:
    """A timestamp for people: ISO 8601 to the second, in the given zone (the program's;
    UTC when there is none), with its offset so that it is never ambiguous."""
    if value is None:
        return "-"
    return value.astimezone(zone or UTC).replace(microsecond=0).isoformat()


money = format_money  # the name the commands use


def membership_line(m: dict[str, Any], zone: tzinfo) -> str:
    """A club membership in one line: who, which club, its state, level and paid term."""
    return (f"{m['member_id']} in {m['club_id']} ({m['program_id']}): {m['status']}"
            + (f", level {m['level']}" if m["level"] else "")
            + (f", paid through {when(m['term_end'], zone)}" if m["term_end"] else ""))


def confirm(action: str, yes: bool) -> None:
    """Go on only if --yes was given or the user says yes at the terminal to `action` (a
    sentence saying what will happen); otherwise stop with one sentence, exit 1, nothing
    done."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise CommandRefused(f"{action.rstrip('.')}; there is no terminal to ask whether to "
                             "go ahead, so pass --yes to confirm")
    if not typer.confirm(f"{action} Go ahead?", default=False, err=True):
        raise CommandRefused("nothing was changed")


class CommandRefused(LoyaltyError):
    """A command that stops before doing anything (declined, or refused as asked)."""

    code = "refused"


def print_line_errors(path: Path, errors: Sequence[LineError], what: str) -> None:
    """An all-or-nothing import refused: each bad line as `file:line: reason` on standard
    error, then how many and that nothing (no `what`) was imported."""
    for error in errors:
        err_console.print(f"{path}:{error.line}: {error.reason}", markup=False,
                          soft_wrap=True)
    err_console.print(f"{len(errors)} bad line(s); no {what} was imported (fix them and "
                      "import the file again)", markup=False)

