"""Migrations: up and down on an empty database, no drift from the models, append-only ledger."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import DBAPIError

from loyalty_engine.domain.errors import SchemaNotCurrentError
from loyalty_engine.services.programs import apply_program_files
from loyalty_engine.services.purchases import record_purchase
from loyalty_engine.store import migrate
from loyalty_engine.store.database import open_engine
from loyalty_engine.store.schema_check import require_current_schema
from loyalty_engine.store.tables import metadata
from tests.integration.helpers import BEAN_THERE, NOW, event

SCHEMA_TABLES = set(metadata.tables)


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


@pytest.fixture
def empty_engine(empty_db_url: str) -> Iterator[Engine]:
    eng = open_engine(empty_db_url)
    yield eng
    eng.dispose()


def test_upgrade_creates_every_table_and_downgrade_removes_them(empty_engine: Engine) -> None:
    assert _tables(empty_engine) == set()
    assert migrate.current_revision(empty_engine) is None
    with pytest.raises(SchemaNotCurrentError, match="empty"):
        require_current_schema(empty_engine)

    migrate.upgrade(empty_engine)
    assert _tables(empty_engine) == SCHEMA_TABLES
    assert migrate.current_revision(empty_engine) == migrate.head_revision(empty_engine)
    require_current_schema(empty_engine)

    migrate.downgrade(empty_engine, "base")
    assert _tables(empty_engine) == set()
    assert migrate.current_revision(empty_engine) is None

    # And back again: the downgrade left nothing behind (triggers, functions) that blocks it.
    migrate.upgrade(empty_engine)
    assert _tables(empty_engine) == SCHEMA_TABLES
    require_current_schema(empty_engine)


def test_schema_after_upgrade_matches_the_models(empty_engine: Engine) -> None:
    migrate.upgrade(empty_engine)
    with empty_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_ledger_rejects_update_and_delete_at_the_database(engine: Engine) -> None:
    apply_program_files(engine, [BEAN_THERE], NOW)
    outcome = record_purchase(engine, event("T-1"), NOW)
    assert outcome.points == 7
    ledger = metadata.tables["ledger_entries"]

    for statement in ("UPDATE ledger_entries SET points = points + 100",
                      "DELETE FROM ledger_entries"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))

    with engine.connect() as conn:
        rows = conn.execute(select(ledger.c.points)).scalars().all()
    assert rows == [7]


def test_downgrade_then_upgrade_leaves_the_ledger_append_only(empty_engine: Engine) -> None:
    migrate.upgrade(empty_engine)
    migrate.downgrade(empty_engine, "base")
    migrate.upgrade(empty_engine)
    apply_program_files(empty_engine, [BEAN_THERE], NOW)
    record_purchase(empty_engine, event("T-1"), NOW)
    with pytest.raises(DBAPIError, match="append-only"), empty_engine.begin() as conn:
        conn.execute(text("DELETE FROM ledger_entries"))


def test_the_schema_revision_every_command_checks_is_alembics_head(engine: Engine) -> None:
    # Commands compare the database with SCHEMA_REVISION instead of loading Alembic.
    from loyalty_engine.store import migrate

    assert migrate.head_revision(engine) == migrate.SCHEMA_REVISION
    assert migrate.current_revision(engine) == migrate.SCHEMA_REVISION


def test_going_back_below_reusable_key_names_keeps_one_key_per_name(
        empty_engine: Engine) -> None:
    from loyalty_engine.services.apikeys import create_api_key, list_api_keys, revoke_api_key

    migrate.upgrade(empty_engine)
    for _ in range(2):
        create_api_key(empty_engine, "till-ams", "pos", ["AMS-*"], NOW)
        revoke_api_key(empty_engine, "till-ams", NOW)
    live, _token = create_api_key(empty_engine, "till-ams", "pos", ["AMS-*"], NOW)
    migrate.downgrade(empty_engine, "0007")
    with empty_engine.connect() as conn:
        names = conn.execute(text("SELECT name, key_id FROM api_keys ORDER BY id")).all()
    # The live key keeps its name; the revoked ones are renamed after their key id.
    assert names[-1] == ("till-ams", live.key_id)
    assert [n for n, k in names[:-1]] == [f"till-ams ({k})" for _n, k in names[:-1]]
    migrate.upgrade(empty_engine)
    assert len(list_api_keys(empty_engine)) == 3
