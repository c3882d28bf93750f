"""Only loyalty_engine/ledger/ writes the ledger's tables (issue 15 item 1).

Read by AST over the package's source: any insert, update or delete of ledger_entries,
point_lots, point_debts or balances (through SQLAlchemy table objects, the store's bulk
helpers, or SQL text) outside ledger/ fails, naming the file and line. store/tables.py
defines the tables, and the Alembic history (migrations/) lies outside the package.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import loyalty_engine

PACKAGE = Path(loyalty_engine.__file__).resolve().parent
LEDGER_TABLES = {"ledger_entries", "point_lots", "point_debts", "balances"}
ALLOWED = {PACKAGE / "ledger", PACKAGE / "store" / "tables.py"}
# The store's writing helpers that take a table as an argument.
WRITERS = {"insert_rows", "insert_if_absent", "insert", "update", "delete", "pg_insert",
           "sqlite_insert"}
SQL_WRITE = re.compile(r"\b(insert\s+into|update|delete\s+from|copy)\s+\"?("
                       + "|".join(sorted(LEDGER_TABLES)) + r")\b", re.IGNORECASE)


def _is_table(node: ast.AST, names: set[str]) -> bool:
    """tables.point_lots, or a module-level alias of it (_lots = tables.point_lots)."""
    if isinstance(node, ast.Attribute) and node.attr in LEDGER_TABLES:
        return True
    return isinstance(node, ast.Name) and node.id in names


def writes(source: str) -> list[int]:
    """Line numbers where source writes one of the ledger's tables."""
    tree = ast.parse(source)
    aliases = {target.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
               and _is_table(node.value, set())
               for target in node.targets if isinstance(target, ast.Name)}
    found: list[int] = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and SQL_WRITE.search(node.value)):
            found.append(node.lineno)
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        # _lots.update(), tables.balances.insert(), ...
        if (isinstance(func, ast.Attribute) and func.attr in ("insert", "update", "delete")
                and _is_table(func.value, aliases)):
            found.append(node.lineno)
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in WRITERS and any(_is_table(arg, aliases) for arg in node.args):
            found.append(node.lineno)
    return sorted(set(found))


def test_only_the_ledger_package_writes_ledger_tables() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if any(path == allowed or allowed in path.parents for allowed in ALLOWED):
            continue
        for line in writes(path.read_text(encoding="utf-8")):
            offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line}")
    assert offenders == [], ("write the ledger's tables through loyalty_engine/ledger: "
                             + ", ".join(offenders))


def test_the_ledger_package_is_found_writing() -> None:
    """The check sees the ledger's own writes (so it is not vacuously green)."""
    earn = (PACKAGE / "ledger" / "earn.py").read_text(encoding="utf-8")
    debts = (PACKAGE / "ledger" / "debts.py").read_text(encoding="utf-8")
    assert writes(earn) and writes(debts)


def test_each_way_of_writing_is_recognised() -> None:
    snippets = [
        "from loyalty_engine.store import tables\n_l = tables.point_lots\n"
        "conn.execute(_l.update().values(remaining=0))\n",
        "conn.execute(tables.balances.insert(), rows)\n",
        "insert_rows(conn, tables.ledger_entries, COLUMNS, rows)\n",
        "_d = tables.point_debts\ninsert_if_absent(conn, _d, rows, ('id',))\n",
        "cursor.execute('UPDATE point_debts SET outstanding = 0')\n",
        "cursor.execute(\"insert into ledger_entries (id) values (1)\")\n",
    ]
    assert all(writes(snippet) for snippet in snippets)
    reads = ("from sqlalchemy import select\n_l = tables.point_lots\n"
             "conn.execute(select(_l.c.remaining))\n"
             "'SELECT id FROM point_debts WHERE outstanding > 0'\n")
    assert writes(reads) == []
