"""Options several command groups share, declared once."""

from __future__ import annotations

import typer

JSON = typer.Option(False, "--json", help="Print JSON.")
AS_OF = typer.Option(None, "--as-of", help="As at this instant (ISO 8601 with an offset); "
                     "default now.")
AT = typer.Option(None, "--at", help="When it happened (ISO 8601 with an offset); default "
                  "now.")
PROGRAM = typer.Option(None, "--program", help="The program, when several could be meant.")
