"""What every command shares: the database chosen by --database, LOYALTY_DATABASE_URL or the
config file; the clock; instants given as options, read and checked one way everywhere."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import typer
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from loyalty_engine.cli.config import Config
from loyalty_engine.domain.errors import LoyaltyError, SchemaNotCurrentError
from loyalty_engine.store.database import open_engine, resolve_url
from loyalty_engine.store.schema_check import require_current_schema

# A step that writes (expiry, reviews, renewals, a scheduler tick) run for an instant past
# now does for good what is not yet due; a little past now is clock skew between machines.
FUTURE_MARGIN = timedelta(hours=1)
# Past this, a date is a typo (and date arithmetic near year 9999 overflows).
LAST_YEAR = 2199


class InstantError(LoyaltyError):
    """An instant given as an option that cannot be used as given."""


@dataclass(slots=True)
class Settings:
    """Global options given before the command, and what this invocation opened."""

    database: str | None = None
    config: Config = field(default_factory=Config)
    engine: Engine | None = None
    zones: dict[str, ZoneInfo] | None = None


# The database this invocation uses (--database, or demo's own option), for error messages.
CHOSEN_DATABASE: dict[str, str | None] = {"url": None}


def settings(ctx: typer.Context) -> Settings:
    """The global settings stored by the root callback."""
    obj = ctx.find_root().obj
    if not isinstance(obj, Settings):
        obj = ctx.find_root().obj = Settings()
    return obj


def chosen_database(option: str | None, config: Config) -> str | None:
    """The URL asked for: --database, else the environment's, else the config file's (None:
    let resolve_url fall back to its default)."""
    if option:
        return option
    if os.environ.get("LOYALTY_DATABASE_URL"):
        return None  # resolve_url reads it
    return config.database


def database_url(ctx: typer.Context) -> str:
    """The resolved database URL for this invocation."""
    return resolve_url(settings(ctx).database)


def engine_for(ctx: typer.Context, migrated: bool = True) -> Engine:
    """An engine for the chosen database (one per invocation); by default refusing one that
    is not migrated."""
    chosen = settings(ctx)
    if chosen.engine is not None:
        return chosen.engine
    url = database_url(ctx)
    parsed = make_url(url)
    if migrated and parsed.get_backend_name() == "sqlite" and not Path(
        parsed.database or ""
    ).exists():
        # Say so instead of letting SQLite create an empty file as a side effect.
        raise SchemaNotCurrentError(
            f"there is no database at {parsed.database}; run `loyalty db upgrade` to create it"
        )
    engine = open_engine(url)
    if migrated:
        require_current_schema(engine)
        chosen.engine = engine
    return engine


def program_zone(ctx: typer.Context, program_id: str | None) -> tzinfo:
    """The time zone times of a program are shown in: the program's own; for times that
    belong to no program, the one zone all programs share, else UTC."""
    zones = _zones(ctx)
    if program_id is not None and program_id in zones:
        return zones[program_id]
    shared = set(zones.values())
    return shared.pop() if len(shared) == 1 else UTC


def _zones(ctx: typer.Context) -> dict[str, ZoneInfo]:
    chosen = settings(ctx)
    if chosen.zones is None:
        from loyalty_engine.services.programs import program_zones

        chosen.zones = program_zones(engine_for(ctx))
    return chosen.zones


def parse_instant(value: str | None, option: str,
                  zone: tzinfo | None = None) -> datetime | None:
    """An ISO 8601 date-time with an offset; a bare date is its midnight in `zone` (refused
    when no zone is known)."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 date-time such as 2026-01-01T00:00:00+01:00",
            param_hint=option,
        ) from None
    if parsed.year > LAST_YEAR:
        raise InstantError(f"{option} {value} is after {LAST_YEAR}; check the date")
    if parsed.tzinfo is not None:
        return parsed
    if len(value) != 10:
        raise typer.BadParameter(
            f"{value!r} has no UTC offset; add one, e.g. {value}+00:00", param_hint=option)
    if zone is None:
        raise InstantError(f"{option} {value} is a date without a time zone, and no program "
                           "says which zone to read it in; give a time with an offset, e.g. "
                           f"{value}T00:00:00+00:00")
    return datetime.combine(date.fromisoformat(value), datetime.min.time(), tzinfo=zone)


def instant(ctx: typer.Context, value: str | None, option: str,
            program_id: str | None = None) -> datetime | None:
    """An instant option as given (None when absent). A bare date is midnight in the
    program's zone: --program's, else every program's; when the programs' zones disagree
    on when that midnight is (not merely on their names: Amsterdam and Paris agree), an
    offset is needed."""
    if value is None:
        return None
    if len(value) != 10:
        return parse_instant(value, option)
    zones = _zones(ctx)
    if program_id is not None and program_id in zones:
        return parse_instant(value, option, zones[program_id])
    if not zones:
        return parse_instant(value, option)  # refused: no zone to read it in
    midnights = {pid: parse_instant(value, option, zone) for pid, zone in zones.items()}
    if len({m.utcoffset() for m in midnights.values() if m is not None}) > 1:
        shown = ", ".join(f"{p} {z}" for p, z in sorted(zones.items()))
        raise InstantError(
            f"{option} {value} is a date, and the programs' time zones disagree on when it "
            f"begins ({shown}); give a time with an offset (e.g. {value}T00:00:00+01:00)"
            + ("" if program_id else " or --program"))
    return midnights[min(midnights)]


def as_of(ctx: typer.Context, value: str | None, program_id: str | None = None,
          writes: bool = False, allow_future: bool = False, option: str = "--as-of"
          ) -> datetime:
    """The instant a command acts as at: the option, else now. A command that writes
    refuses an instant more than FUTURE_MARGIN past now unless allow_future."""
    current = now()
    given = instant(ctx, value, option, program_id)
    if given is None:
        return current
    if writes and not allow_future and given > current + FUTURE_MARGIN:
        ahead = given - current
        span = f"{ahead.days} days" if ahead.days else f"{ahead.seconds // 3600} hours"
        raise InstantError(
            f"{option} {given.isoformat()} is {span} after now; a step run ahead of time "
            "does for good what is not yet due (points expired, tiers reviewed, renewals "
            "charged), so check the date, or pass --allow-future to rehearse the future")
    return given


def now() -> datetime:
    """The wall clock, read only by entry points (the core and services take time as input)."""
    return datetime.now(UTC)
