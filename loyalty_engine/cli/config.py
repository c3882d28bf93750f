"""The optional config file: the database URL and option defaults, below the environment.

Precedence, highest first: the command line, environment variables (LOYALTY_DATABASE_URL
and the like), the config file, the built-in defaults. The file is `--config PATH`, else
$LOYALTY_CONFIG, else ./loyalty.toml, else loyalty/config.toml in the platform's config
folder (~/.config on Linux, honouring $XDG_CONFIG_HOME). Keys at the top are global
(`database`); a table per command holds its option defaults by option name:

    database = "postgresql://loyalty@db.internal/loyalty"
    [serve]
    port = 8080
    [scheduler.tick]
    no-wait = true
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from loyalty_engine.domain.errors import LoyaltyError

FILE_NAME = "loyalty.toml"
GLOBAL_KEYS = ("database",)
# Options that say what one invocation is about, not how the installation is set up: a
# default for any of them would make every run act on the same instant or skip a question.
NOT_IN_FILE = frozenset({"as_of", "at", "until", "effective_from", "clock_start", "yes",
                         "allow_future", "help", "version", "config"})


class ConfigError(LoyaltyError):
    """A config file that cannot be read or names options that do not exist."""


@dataclass(frozen=True, slots=True)
class Config:
    """What the config file says (empty when there is none)."""

    path: Path | None = None
    database: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)  # Click's default_map


def find_config(explicit: Path | None) -> Path | None:
    """The config file this invocation reads, if any (an explicit one must exist)."""
    if explicit is None and os.environ.get("LOYALTY_CONFIG"):
        explicit = Path(os.environ["LOYALTY_CONFIG"])
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"config file {explicit} does not exist (or is not a file)")
        return explicit
    for candidate in (Path.cwd() / FILE_NAME,
                      Path(typer.get_app_dir("loyalty")) / "config.toml"):
        if candidate.is_file():
            return candidate
    return None


def load_config(explicit: Path | None, root: Any) -> Config:
    """Read and check the config file against the commands and options that exist."""
    path = find_config(explicit)
    if path is None:
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        # tomllib says "Invalid value (at line 3, column 7)": the place first, as everywhere.
        found = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", str(exc))
        if found:
            message, line, column = found.groups()
            raise ConfigError(f"{path}:{line}:{column}: {message}") from None
        raise ConfigError(f"{path}: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    database = data.pop("database", None)
    if database is not None and not isinstance(database, str):
        raise ConfigError(f"{path}: database must be a URL in quotes, not {database!r}")
    defaults = _defaults(path, data, root, [])
    return Config(path, database, defaults)


def _defaults(path: Path, table: dict[str, Any], command: Any,
              where: list[str]) -> dict[str, Any]:
    """A table of the file as Click's default_map for `command` (Typer's Click command
    tree, walked by its attributes), refusing unknown names."""
    found: dict[str, Any] = {}
    subcommands: dict[str, Any] = getattr(command, "commands", {})
    options = {name: param for param in command.params
               if param.param_type_name == "option" for name in _names(param)}
    here = "[" + ".".join(where) + "]" if where else "the top level"
    for key, value in table.items():
        if isinstance(value, dict) and key in subcommands:
            found[key] = _defaults(path, value, subcommands[key], [*where, key])
        elif key in options and not isinstance(value, dict):
            param = options[key]
            if param.name in NOT_IN_FILE:
                raise ConfigError(f"{path}: {key} in {here} cannot be set in a config file; "
                                  "give it on the command line")
            found[str(param.name)] = value
        else:
            known = sorted({*subcommands, *(n for n in options if "-" in n or "_" not in n)}
                           - NOT_IN_FILE)
            raise ConfigError(f"{path}: {here} has no option or command {key!r} (known: "
                              f"{', '.join(known) or 'none'})")
    return found


def _names(param: Any) -> list[str]:
    """How an option may be spelt in the file: its long name without dashes (no-wait), or
    its parameter name (no_wait)."""
    names = [opt.lstrip("-") for opt in param.opts if opt.startswith("--")]
    return [*names, str(param.name)]
