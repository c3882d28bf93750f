"""Refusing to work on a database that is not migrated to this code's schema."""

from __future__ import annotations

from sqlalchemy import Engine

from loyalty_engine.domain.errors import SchemaNotCurrentError
from loyalty_engine.store import migrate
from loyalty_engine.store.database import describe_url


def require_current_schema(engine: Engine) -> None:
    """Raise SchemaNotCurrentError unless the database is at the newest migration."""
    current = migrate.current_revision(engine)
    head = migrate.SCHEMA_REVISION
    if current != head:
        where = describe_url(engine.url.render_as_string(hide_password=False))
        state = "empty" if current is None else f"at revision {current}, not {head}"
        raise SchemaNotCurrentError(
            f"the database {where} is {state}; run `loyalty db upgrade` first"
        )
