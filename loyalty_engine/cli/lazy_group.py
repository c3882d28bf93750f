"""The root command group, which imports a command's module only when that command is run.

Importing every command's module (and the services, models and charts behind them) took
about a third of each `loyalty` process's start-up; a command now pays for its own imports
only. Listing the commands (`loyalty --help`, completion, the config file's checks) loads
them all, as before."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, MutableMapping
from functools import partial
from typing import Any, cast

import typer
from typer.core import TyperCommand, TyperGroup

# What Typer builds for a group or a command (its Click base class is vendored, private).
Command = Any

# Each top-level command in the order `loyalty --help` lists them: (name, the module under
# loyalty_engine.cli, its attribute: a Typer group, or a function that is one command).
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("db", "db", "app"),
    ("rules", "rules", "app"),
    ("purchases", "purchases", "app"),
    ("members", "members", "app"),
    ("redemptions", "redemptions", "app"),
    ("points", "points", "app"),
    ("clubs", "clubs", "app"),
    ("fees", "fees", "app"),
    ("tiers", "tiers", "app"),
    ("rebates", "rebates", "app"),
    ("events", "events", "app"),
    ("scheduler", "scheduler", "app"),
    ("apikeys", "apikeys", "app"),
    ("analytics", "analytics_group", "app"),
    ("reports", "reports", "app"),
    ("demo", "demo", "demo"),
    ("serve", "serve", "serve"),
)


def load(name: str, module: str, attribute: str) -> TyperGroup | TyperCommand:
    """The Click command of one top-level command, its module imported now."""
    found = getattr(importlib.import_module(f"loyalty_engine.cli.{module}"), attribute)
    command: TyperGroup | TyperCommand
    if isinstance(found, typer.Typer):
        command = typer.main.get_group(found)
    else:
        single = typer.Typer(add_completion=False)
        single.command(name)(found)
        command = cast(TyperCommand, typer.main.get_command(single))
    command.name = name
    return command


class LazyCommands(MutableMapping[str, Command]):
    """A group's commands by name, each loaded on first look-up. Names and membership are
    known without loading anything; iterating values or items loads them all."""

    def __init__(self, loaded: dict[str, Command],
                 loaders: dict[str, Callable[[], Command]]) -> None:
        self._loaded = loaded
        self._loaders = loaders

    def __getitem__(self, name: str) -> Command:
        if name not in self._loaded:
            if name not in self._loaders:
                raise KeyError(name)
            self._loaded[name] = self._loaders[name]()
        return self._loaded[name]

    def __setitem__(self, name: str, command: Command) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self._loaded.pop(name, None)
        self._loaders.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._loaded or name in self._loaders

    def __iter__(self) -> Iterator[str]:
        yield from self._loaders
        yield from (name for name in self._loaded if name not in self._loaders)

    def __len__(self) -> int:
        return len(self._loaders.keys() | self._loaded.keys())


class LazyGroup(TyperGroup):
    """The root group: COMMANDS loaded when they are looked up, not when it is built."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        loaders: dict[str, Callable[[], Command]] = {
            name: partial(load, name, module, attribute) for name, module, attribute in COMMANDS}
        self.commands = LazyCommands(dict(self.commands), loaders)

    def list_commands(self, ctx: Any) -> list[str]:
        # TyperGroup's reads the items, which would load every command.
        return list(self.commands)
