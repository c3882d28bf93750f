"""Options several command groups share, declared once."""

from __future__ import annotations

import typer

JSON = typer.Option(False, "--json", help="Print JSON.")
AS_OF = typer.Option(None, "--as-of", help="As at this instant (ISO 8601; a date is its "
                     "midnight in the program's time zone); default now.")
AT = typer.Option(None, "--at", help="When it happened (ISO 8601; a date is its midnight in "
                  "the program's time zone); default now.")
ALLOW_FUTURE = typer.Option(False, "--allow-future", help="Allow an --as-of more than an "
                            "hour past now (rehearsals: what is done stays done).")
YES = typer.Option(False, "--yes", "-y", help="Do it without asking for confirmation.")
PROGRAM = typer.Option(None, "--program", help="The program, when several could be meant.")
