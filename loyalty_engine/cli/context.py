"""What every command shares: the database chosen by --database or LOYALTY_DATABASE_URL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import typer
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from loyalty_engine.services.errors import SchemaNotCurrentError
from loyalty_engine.services.schema_check import require_current_schema
from loyalty_engine.store.database import open_engine, resolve_url


@dataclass(slots=True)
class Settings:
    """Global options given before the command."""

    database: str | None = None


# The database this invocation uses (--database, or demo's own option), for error messages.
CHOSEN_DATABASE: dict[str, str | None] = {"url": None}


def settings(ctx: typer.Context) -> Settings:
    """The global settings stored by the root callback."""
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Settings) else Settings()


def database_url(ctx: typer.Context) -> str:
    """The resolved database URL for this invocation."""
    return resolve_url(settings(ctx).database)


def engine_for(ctx: typer.Context, migrated: bool = True) -> Engine:
    """An engine for the chosen database; by default refusing one that is not migrated."""
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
    return engine


def parse_instant(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 datetime with an offset (a date alone means its midnight UTC)."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 date-time such as 2026-01-01T00:00:00+01:00",
            param_hint=option,
        ) from None
    if parsed.tzinfo is None:
        if len(value) == 10:  # a bare date
            return parsed.replace(tzinfo=UTC)
        raise typer.BadParameter(
            f"{value!r} has no UTC offset; add one, e.g. {value}+00:00", param_hint=option
        )
    return parsed


def now() -> datetime:
    """The wall clock, read only by entry points (the core and services take time as input)."""
    return datetime.now(UTC)
