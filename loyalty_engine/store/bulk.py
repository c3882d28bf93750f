"""Set-based writes for hot paths: many rows per statement, straight to the driver.

SQLAlchemy Core's executemany builds and type-processes a parameter dict per row; on the
import path that bookkeeping cost more than the database work. Here rows are tuples,
converted once by the caller with `Converters`, and sent as one `executemany` (SQLite) or
one `INSERT ... SELECT FROM unnest(...)` per batch (PostgreSQL). Ids are allocated up front
so that dependent rows (items, lots) can be written without RETURNING round trips.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple, TypeVar

import psycopg
from pydantic_core import to_json
from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

T = TypeVar("T")

# SQLite allows 32,766 bound parameters per statement; stay well below for multi-column keys.
IN_CHUNK = 4000


def chunked(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """Consecutive slices of items, each at most size long."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


_PG_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


@lru_cache(maxsize=1024)
def _pg_type(table: Table, column: str) -> str:
    """The PostgreSQL type of a column, for casting unnest() arrays (compiled once)."""
    return str(table.c[column].type.compile(dialect=_PG_DIALECT))


class Converters:
    """Turn Python values into what the connection's driver stores, matching SQLAlchemy."""

    def __init__(self, conn: Connection) -> None:
        self.sqlite = conn.dialect.name == "sqlite"

    def when(self, value: datetime | None) -> Any:
        """An aware datetime as stored: naive-UTC text on SQLite (SQLAlchemy's format)."""
        if value is None or not self.sqlite:
            return value
        # "YYYY-MM-DD HH:MM:SS.ffffff", exactly as SQLAlchemy's SQLite DATETIME writes it, so
        # that rows written here compare equal to parameters bound by SQLAlchemy.
        return value.astimezone(UTC).isoformat(" ", "microseconds")[:26]

    @staticmethod
    def json(value: Any) -> str:
        """A JSON document as text."""
        return to_json(value).decode()



# SQLite binds at most 32,766 parameters per statement: multi-row VALUES go in slices.
_SQLITE_PARAMETERS = 32000


def _values(mark: str, width: int, count: int) -> str:
    """`count` rows of `width` placeholders for a multi-row VALUES: "(?, ?), (?, ?)"."""
    row = "(" + ", ".join(mark for _ in range(width)) + ")"
    return ", ".join(row for _ in range(count))


def _flat(rows: Sequence[tuple[Any, ...]]) -> list[Any]:
    """The rows' values in one list, as a multi-row VALUES binds them."""
    return [v for row in rows for v in row]


def _sqlite_slices(rows: Sequence[tuple[Any, ...]],
                   width: int) -> Iterator[Sequence[tuple[Any, ...]]]:
    """Rows in slices whose parameters stay under SQLite's bound."""
    return chunked(rows, max(1, _SQLITE_PARAMETERS // width))

def allocate_ids(conn: Connection, table: Table, count: int) -> list[int]:
    """Draw `count` primary-key values from the table's sequence, in one round trip
    (PostgreSQL: safe with concurrent writers; what lets big appends go through COPY with
    their ids known). SQLite has no sequence to draw from: its rows take their ids from the
    insert (insert_returning, insert_with_ids), never from a max(id) read."""
    if count == 0:
        return []
    if conn.dialect.name == "sqlite":
        raise ValueError("allocate_ids is for PostgreSQL; on SQLite take ids from the insert")
    raw: Any = conn.connection.dbapi_connection
    with raw.cursor() as cursor:
        # One row holding an array: far cheaper to fetch than `count` rows.
        cursor.execute(
            "SELECT array_agg(nextval(pg_get_serial_sequence(%s, 'id'))) "
            "FROM generate_series(1, %s)", (table.name, count), binary=True,
        )
        ids: list[int] = cursor.fetchone()[0]
    return ids


# Up to this many rows an INSERT binds plain parameters rather than one array per column.
FEW_ROWS = 4
# From this many rows COPY beats one INSERT over unnest(): it takes a round trip more to
# start, which a till's one-purchase request would pay for every table it appends to.
COPY_FROM = 32


def insert_rows(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    on_conflict: Sequence[str] | None = None,
    update: dict[str, str] | None = None,
) -> int:
    """Insert rows (tuples in `columns` order); returns how many were inserted or updated.

    on_conflict names the unique columns whose duplicates are skipped (DO NOTHING), or, with
    `update` (column -> SQL expression over `excluded`), merged (DO UPDATE).
    """
    if not rows:
        return 0
    names = ", ".join(columns)
    conflict = ""
    if on_conflict is not None:
        target = f"({', '.join(on_conflict)})" if on_conflict else ""
        if update:
            sets = ", ".join(f"{col} = {expr}" for col, expr in update.items())
            conflict = f" ON CONFLICT {target} DO UPDATE SET {sets}"
        else:
            conflict = f" ON CONFLICT {target} DO NOTHING"
    raw: Any = conn.connection.dbapi_connection
    if conn.dialect.name == "sqlite":
        marks = ", ".join("?" for _ in columns)
        cursor: Any = raw.cursor()
        try:
            cursor.executemany(
                f"INSERT INTO {table.name} ({names}) VALUES ({marks}){conflict}", rows
            )
            return int(cursor.rowcount)
        finally:
            cursor.close()
    if on_conflict is None and len(rows) >= COPY_FROM:
        # Plain appends (items, ledger entries, lots) go through COPY, PostgreSQL's bulk path.
        with raw.cursor() as cursor, cursor.copy(
            f"COPY {table.name} ({names}) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row(row)
        return len(rows)
    if len(rows) <= FEW_ROWS:
        # A till's purchase: plain parameters cost psycopg less than arrays to build.
        with raw.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table.name} ({names}) VALUES "
                f"{_values('%s', len(columns), len(rows))}{conflict}", _flat(rows))
            return int(cursor.rowcount)
    casts = ", ".join(
        f"%b::{_pg_type(table, col)}[]" for col in columns
    )
    arrays = [list(column) for column in zip(*rows, strict=True)]
    with raw.cursor() as cursor:
        # Binary arrays: psycopg's C dumpers, far cheaper than quoting text arrays.
        cursor.execute(
            f"INSERT INTO {table.name} ({names}) SELECT * FROM unnest({casts}){conflict}",
            arrays, binary=True,
        )
        return int(cursor.rowcount)


def insert_with_ids(conn: Connection, table: Table, columns: Sequence[str],
                    rows: Sequence[tuple[Any, ...]]) -> list[int]:
    """Append rows (tuples in `columns` order, without the id) and return their ids in
    order. SQLite: inserted, then read back by rowid (a table without AUTOINCREMENT gives
    each new row the largest rowid plus one, and the write lock keeps every other writer
    out, so one statement's rows have consecutive ids ending at its last rowid): no
    max(id) read. PostgreSQL: ids drawn from the sequence first (allocate_ids), so that
    many rows still go through COPY."""
    if not rows:
        return []
    if conn.dialect.name != "sqlite":
        ids = allocate_ids(conn, table, len(rows))
        insert_rows(conn, table, ("id", *columns),
                    [(i, *row) for i, row in zip(ids, rows, strict=True)])
        return ids
    names = ", ".join(columns)
    raw: Any = conn.connection.dbapi_connection
    found: list[int] = []
    cursor: Any = raw.cursor()
    try:
        for part in _sqlite_slices(rows, len(columns)):
            cursor.execute(f"INSERT INTO {table.name} ({names}) VALUES "
                           f"{_values('?', len(columns), len(part))}", _flat(part))
            last = int(cursor.lastrowid)
            if cursor.rowcount != len(part):  # pragma: no cover - no conflict clause
                raise AssertionError(f"{table.name}: {cursor.rowcount} of {len(part)} rows")
            found.extend(range(last - len(part) + 1, last + 1))
    finally:
        cursor.close()
    return found


def insert_returning(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    on_conflict: Sequence[str] | None,
    returning: Sequence[str],
) -> list[tuple[Any, ...]]:
    """Insert rows (tuples in `columns` order, the id left to the database), skipping those
    whose on_conflict key is taken (when given), and return the `returning` columns of the
    rows inserted: the ids come back with the insert, no statement allocates them first
    (nor reads max(id)). Map them back by a key among `returning`, not by position."""
    if not rows:
        return []
    names = ", ".join(columns)
    conflict = "" if on_conflict is None else (
        f" ON CONFLICT ({', '.join(on_conflict)}) DO NOTHING")
    tail = f"{conflict} RETURNING {', '.join(returning)}"
    raw: Any = conn.connection.dbapi_connection
    found: list[tuple[Any, ...]] = []
    if conn.dialect.name == "sqlite":
        cursor: Any = raw.cursor()
        try:
            for part in _sqlite_slices(rows, len(columns)):
                found.extend(cursor.execute(
                    f"INSERT INTO {table.name} ({names}) VALUES "
                    f"{_values('?', len(columns), len(part))}{tail}", _flat(part)).fetchall())
        finally:
            cursor.close()
        return found
    with raw.cursor() as cursor:
        if len(rows) <= FEW_ROWS:
            cursor.execute(f"INSERT INTO {table.name} ({names}) VALUES "
                           f"{_values('%s', len(columns), len(rows))}{tail}", _flat(rows))
        else:
            casts = ", ".join(f"%b::{_pg_type(table, col)}[]" for col in columns)
            cursor.execute(
                f"INSERT INTO {table.name} ({names}) SELECT * FROM unnest({casts}){tail}",
                [list(column) for column in zip(*rows, strict=True)], binary=True)
        found = cursor.fetchall()
    return found


def select_by_keys(
    conn: Connection,
    table: Table,
    key_columns: Sequence[str],
    keys: Sequence[tuple[Any, ...]],
    columns: Sequence[str],
) -> list[tuple[Any, ...]]:
    """Rows of table whose key_columns match one of keys (raw driver values).

    One statement per call: a join against unnest() on PostgreSQL, against a VALUES list on
    SQLite (callers keep keys under SQLite's bound-parameter limit).
    """
    if not keys:
        return []
    names = ", ".join(f"t.{c}" for c in columns)
    raw: Any = conn.connection.dbapi_connection
    if conn.dialect.name == "sqlite":
        row = "(" + ", ".join("?" for _ in key_columns) + ")"
        # CROSS JOIN fixes the loop order: one index probe per key. (A row-value IN list
        # made SQLite scan the whole index for every batch: quadratic on big imports.)
        on = " AND ".join(f"t.{c} = k.column{i}" for i, c in enumerate(key_columns, start=1))
        sql = (f"SELECT {names} FROM (VALUES {', '.join(row for _ in keys)}) AS k "
               f"CROSS JOIN {table.name} t ON {on}")
        cursor: Any = raw.cursor()
        try:
            return list(cursor.execute(sql, [v for key in keys for v in key]))
        finally:
            cursor.close()
    if len(keys) == 1:
        where = " AND ".join(f"t.{c} = %s" for c in key_columns)
        with raw.cursor() as cursor:
            cursor.execute(f"SELECT {names} FROM {table.name} t WHERE {where}", list(keys[0]))
            found: list[tuple[Any, ...]] = cursor.fetchall()
            return found
    casts = ", ".join(
        f"%b::{_pg_type(table, col)}[]" for col in key_columns
    )
    on = " AND ".join(f"t.{c} = k.{c}" for c in key_columns)
    sql = (f"SELECT {names} FROM {table.name} t JOIN unnest({casts}) "
           f"AS k({', '.join(key_columns)}) ON {on}")
    with raw.cursor() as cursor:
        cursor.execute(sql, [list(c) for c in zip(*keys, strict=True)], binary=True)
        rows: list[tuple[Any, ...]] = cursor.fetchall()
        return rows


def select_typed_by_keys(
    conn: Connection,
    table: Table,
    key_columns: Sequence[str],
    keys: Sequence[tuple[Any, ...]],
    columns: Sequence[str],
) -> list[tuple[Any, ...]]:
    """select_by_keys with each value turned into its Python type (datetimes, dates,
    booleans, JSON) the way SQLAlchemy would: the raw path, without an IN list to render."""
    dialect = conn.dialect
    processors = [table.c[c].type.dialect_impl(dialect).result_processor(dialect, None)
                  for c in columns]
    rows = select_by_keys(conn, table, key_columns, keys, columns)
    if not any(processors):
        return rows
    return [tuple(value if convert is None else convert(value)
                  for convert, value in zip(processors, row, strict=True)) for row in rows]


def insert_if_absent(conn: Connection, table: Table, rows: Sequence[dict[str, Any]],
                     keys: Sequence[str]) -> list[Any]:
    """Insert rows (typed values, as SQLAlchemy binds them) unless a row with the same
    natural key (a unique constraint on `keys`) exists, and return the rows inserted, whole.
    What makes a step safe to run twice, or by two processes at once. One statement per
    batch of rows (SQLAlchemy's insertmanyvalues), on SQLite and PostgreSQL alike."""
    if not rows:
        return []
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = (dialect_insert(table).on_conflict_do_nothing(index_elements=list(keys))
                 .returning(*table.c))
    return list(conn.execute(statement, list(rows)).all())


def lock_rows(conn: Connection, table: Table, column: str, values: Sequence[Any]) -> None:
    """Lock the rows of table whose column is one of values, in that column's order, until
    the transaction ends (PostgreSQL; a no-op on SQLite, whose write lock excludes other
    writers). One array parameter: thousands of placeholders cost psycopg more to send than
    the lock costs the server."""
    if conn.dialect.name != "postgresql" or not values:
        return
    raw: Any = conn.connection.dbapi_connection
    with raw.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {table.name} WHERE {column} = ANY(%b::{_pg_type(table, column)}[]) "
            f"ORDER BY {column} FOR UPDATE", [list(values)], binary=True,
        )


class Lookup(NamedTuple):
    """Rows of `table` whose key_columns equal key, as tuples of `columns` (plain JSON
    values: text, numbers)."""

    table: Table
    key_columns: Sequence[str]
    key: tuple[Any, ...]
    columns: Sequence[str]


def lock_then_look_up(conn: Connection, lock_key: str | None,
                      lookups: Sequence[Lookup]) -> list[list[tuple[Any, ...]]]:
    """On PostgreSQL, take a transaction-scoped advisory lock on lock_key (when given); then
    run every look-up; the rows of each, in order. One round trip for all of it.

    The look-ups are one statement after the lock's (two statements in one simple query on
    PostgreSQL): each statement of a READ COMMITTED transaction sees what committed before
    it began, so what a twin committed while this one waited for the lock is seen. SQLite
    needs no lock: its write transaction already excludes every other writer."""
    if not lookups:
        return []
    postgres = conn.dialect.name == "postgresql"
    raw: Any = conn.connection.dbapi_connection
    if len(lookups) == 1 and not (postgres and lock_key is not None):
        only = lookups[0]
        return [select_by_keys(conn, only.table, only.key_columns, [only.key], only.columns)]
    agg, row = ("json_agg", "json_build_array") if postgres else (
        "json_group_array", "json_array")
    mark = "%s" if postgres else "?"
    parts: list[str] = []
    params: list[Any] = []
    for lookup in lookups:
        where = " AND ".join(f"{c} = {mark}" for c in lookup.key_columns)
        parts.append(f"(SELECT {agg}({row}({', '.join(lookup.columns)})) "
                     f"FROM {lookup.table.name} WHERE {where})")
        params.extend(lookup.key)
    select = "SELECT " + ", ".join(parts)
    if not postgres:
        cursor: Any = raw.cursor()
        try:
            found = cursor.execute(select, params).fetchone()
        finally:
            cursor.close()
        values = [json.loads(v) if v is not None else None for v in found]
    else:
        with psycopg.ClientCursor(raw) as pg:
            # Parameters bound on the client: a simple query may hold two statements.
            if lock_key is not None:
                pg.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0)); " + select,
                           [lock_key, *params])
                pg.nextset()
            else:
                pg.execute(select, params)
            values = list(pg.fetchone() or ())
    # SQLite's json_group_array gives [] for no rows, PostgreSQL's json_agg NULL.
    return [[tuple(r) for r in (v or [])] for v in values]


def lock_rows_then_select(conn: Connection, table: Table, column: str, values: Sequence[Any],
                          then: Table, columns: Sequence[str]) -> list[tuple[Any, ...]]:
    """lock_rows, then the rows of `then` whose `column` is one of values, as select_by_keys
    returns them: on PostgreSQL in one round trip (two statements in one simple query, so
    the second reads what the holders of the locks committed before they let go). For a
    few values (a till's member): the parameters are bound on the client."""
    if conn.dialect.name != "postgresql" or not values:
        lock_rows(conn, table, column, values)
        return select_by_keys(conn, then, (column,), [(v,) for v in values], columns)
    raw: Any = conn.connection.dbapi_connection
    array = f"{_pg_type(table, column)}[]"
    with psycopg.ClientCursor(raw) as pg:
        pg.execute(
            f"SELECT 1 FROM {table.name} WHERE {column} = ANY(%s::{array}) "
            f"ORDER BY {column} FOR UPDATE; "
            f"SELECT {', '.join(columns)} FROM {then.name} WHERE {column} = ANY(%s::{array})",
            [list(values), list(values)])
        pg.nextset()
        rows: list[tuple[Any, ...]] = pg.fetchall()
    return rows


def insert_returning_with_children(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    on_conflict: Sequence[str],
    returning: Sequence[str],
    children: Table,
    child_columns: Sequence[str],
    child_rows: Sequence[tuple[Any, ...]],
    parent_column: str,
) -> list[tuple[Any, ...]]:
    """insert_returning, and the child rows of the parents inserted, with the parent's id
    in `parent_column`. Each child row starts with its parent's on_conflict key (then
    child_columns). On PostgreSQL one statement (the parents' insert a CTE the children's
    joins), else two."""
    if conn.dialect.name != "postgresql" or not rows:
        found = insert_returning(conn, table, columns, rows, on_conflict, returning)
        key_at = [returning.index(c) for c in on_conflict]
        ids = {tuple(r[i] for i in key_at): r[returning.index("id")] for r in found}
        width = len(on_conflict)
        insert_rows(conn, children, (parent_column, *child_columns),
                    [(ids[row[:width]], *row[width:]) for row in child_rows
                     if row[:width] in ids])
        return found
    names = ", ".join(columns)
    keyed = [*on_conflict, *child_columns]
    casts = ", ".join(f"%s::{_pg_type(table if c in on_conflict else children, c)}[]"
                      for c in keyed)
    join = " AND ".join(f"p.{c} = c.{c}" for c in on_conflict)
    sql = (f"WITH p AS (INSERT INTO {table.name} ({names}) VALUES "
           f"{_values('%s', len(columns), len(rows))} ON CONFLICT ({', '.join(on_conflict)}) "
           f"DO NOTHING RETURNING {', '.join(returning)}), "
           f"c AS (INSERT INTO {children.name} ({parent_column}, {', '.join(child_columns)}) "
           f"SELECT p.id, {', '.join(f'c.{c}' for c in child_columns)} FROM p "
           f"JOIN unnest({casts}) AS c({', '.join(keyed)}) ON {join}) "
           f"SELECT {', '.join(returning)} FROM p")
    params = _flat(rows)
    params += [list(column) for column in zip(*child_rows, strict=True)] if child_rows else [
        [] for _ in keyed]
    raw: Any = conn.connection.dbapi_connection
    with raw.cursor() as cursor:
        cursor.execute(sql, params)
        parents: list[tuple[Any, ...]] = cursor.fetchall()
    return parents
