"""The CLI's help, read as a newcomer reads it: every command listed in one line, every
option explained, and no option carrying a text written for another command."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import typer

from loyalty_engine.cli.app import app

# A listing line in a 100-column terminal: the box, the command column (the longest name,
# "reverify-due", is 12) and the gaps leave 80 columns for the text.
LISTING_WIDTH = 80


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    yield " ".join(path), command
    for name, sub in (getattr(command, "commands", None) or {}).items():
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


def test_every_command_is_listed_in_one_line() -> None:
    too_long = {}
    for path, command in COMMANDS[1:]:
        short = (command.help or "").split("\n\n")[0]
        if not short or "\n" in short or len(short) > LISTING_WIDTH:
            too_long[path] = short
    assert too_long == {}


def test_every_option_says_what_it_does() -> None:
    silent = [f"{path} {param.opts[0]}" for path, command in COMMANDS
              for param in command.params
              if param.param_type_name == "option" and not getattr(param, "help", None)]
    assert silent == []


def test_as_of_help_is_about_the_command_it_belongs_to() -> None:
    # members show's --as-of speaks of stamps and vouchers; no other command's may.
    for path, command in COMMANDS:
        for param in command.params:
            if "--as-of" in getattr(param, "opts", ()) and path != "members show":
                assert "stamps and vouchers" not in (param.help or ""), path
    writers = {"points activate", "points expire", "rebates issue", "events notify",
               "tiers review", "clubs advance", "scheduler tick"}
    for path, command in COMMANDS:
        names = {opt for param in command.params for opt in getattr(param, "opts", ())}
        assert ("--allow-future" in names) == (path in writers), path
