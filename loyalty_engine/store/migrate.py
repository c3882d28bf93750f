"""Alembic, driven from Python: upgrade, downgrade, current revision, is-current check.

Alembic is imported only by the functions that need it: loading it costs a third of a
second, and every `loyalty` command checks the schema (SCHEMA_REVISION answers that)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

from loyalty_engine.shipped import migrations_dir

if TYPE_CHECKING:
    from alembic.config import Config

# The newest migration, which the tables in store/tables.py match (a test holds this equal
# to Alembic's head: bump it with every new migration).
SCHEMA_REVISION = "0014"


def _config(engine: Engine) -> Config:
    from alembic.config import Config

    config = Config()
    # Shipped in the package (loyalty_engine.migrations): a wheel works from any folder.
    config.set_main_option("script_location", str(migrations_dir()))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database up to revision (default: the newest)."""
    from alembic import command

    config = _config(engine)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database down to revision ("base" removes everything)."""
    from alembic import command

    config = _config(engine)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database (read from Alembic's
    own table, without loading Alembic)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        found = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        return found[0] if len(found) == 1 else None


def head_revision(engine: Engine) -> str | None:
    """The newest revision among the migration scripts (loads Alembic)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config(engine)).get_current_head()


def row_counts(engine: Engine) -> dict[str, int]:
    """How many members and ledger entries the database holds (0 where a table is not
    there yet), to say what a destructive step would lose."""
    counts = {}
    with engine.connect() as conn:
        found = inspect(conn)
        for table in ("members", "ledger_entries"):
            counts[table] = (int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
                             if found.has_table(table) else 0)
    return counts
