"""The layers as the architecture draws them, checked on the source: the core (rules/,
engine/, domain/) imports no framework, scheduler or database driver, nothing above it,
and does no file I/O; the entry points (api/, cli/) recognise database errors through
store/errors.py and import no driver.

Read from the syntax tree, imports inside functions included, so a lazy import is no way
round it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "loyalty_engine"
CORE = ("rules", "engine", "domain", "analytics", "finance")
# Frameworks, the scheduler, the database and its drivers: adapters' business, not the core's.
NOT_IN_CORE = ("sqlalchemy", "alembic", "apscheduler", "psycopg", "psycopg2", "sqlite3",
               "fastapi", "starlette", "uvicorn", "typer", "rich", "anyio", "httpx")
# The layers above the core.
ABOVE_CORE = ("loyalty_engine.services", "loyalty_engine.records", "loyalty_engine.store",
              "loyalty_engine.ledger", "loyalty_engine.api",
              "loyalty_engine.cli", "loyalty_engine.scheduler", "loyalty_engine.demo",
              "loyalty_engine.shipped", "loyalty_engine.metrics")
# Reading or writing files, by the names they are called by.
FILE_CALLS = ("open", "read_text", "read_bytes", "write_text", "write_bytes", "iterdir",
              "glob", "rglob", "unlink", "mkdir")
# What the entry points must leave to store/errors.py.
NOT_IN_ENTRY_POINTS = ("psycopg", "psycopg2", "sqlite3", "sqlalchemy.exc")


def _modules(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (PACKAGE / folder).rglob("*.py"))


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
    return found


def _within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(PACKAGE.parent)}:{line}"


def test_the_walk_finds_the_core_and_the_entry_points() -> None:
    names = {p.relative_to(PACKAGE).as_posix() for p in _modules(*CORE, "api", "cli")}
    assert {"rules/loader.py", "rules/schedules.py", "engine/earning.py",
            "domain/money.py", "api/problems.py", "cli/app.py"} <= names


@pytest.mark.parametrize("path", _modules(*CORE), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_the_core_imports_no_framework_driver_or_upper_layer_and_reads_no_file(
        path: Path) -> None:
    tree = ast.parse(path.read_text("utf-8"), str(path))
    wrong = [f"{_where(path, line)} imports {name}" for line, name in _imports(tree)
             if _within(name, NOT_IN_CORE) or _within(name, ABOVE_CORE)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            called = node.func
            name = (called.id if isinstance(called, ast.Name)
                    else called.attr if isinstance(called, ast.Attribute) else None)
            if name in FILE_CALLS:
                wrong.append(f"{_where(path, node.lineno)} calls {name}()")
    assert wrong == [], "the core (rules/, engine/, domain/) must stay pure:\n" + "\n".join(wrong)


@pytest.mark.parametrize("path", _modules("api", "cli"),
                         ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_the_entry_points_import_no_database_driver(path: Path) -> None:
    tree = ast.parse(path.read_text("utf-8"), str(path))
    wrong = [f"{_where(path, line)} imports {name}" for line, name in _imports(tree)
             if _within(name, NOT_IN_ENTRY_POINTS)]
    assert wrong == [], ("api/ and cli/ recognise database errors by store/errors.py's "
                         "DatabaseError, not by a driver's classes:\n" + "\n".join(wrong))
