"""Imports point downwards only, and nothing imports in a circle: entry points (api, cli,
the scheduler's port) over use cases (services) over the domain records (records: their
queries and writers) over the ledger over the store, with the pure core (rules, engine,
domain) beneath all of them. scheduler/cron.py is an adapter below the use cases (the
planner asks it for fire times), scheduler/port.py the entry point that drives them. Read
from the syntax tree, imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "loyalty_engine"
ENTRY_POINTS = ("loyalty_engine.api", "loyalty_engine.cli", "loyalty_engine.scheduler.port")
# Each layer and the modules it must not import: those of the layers above it.
ABOVE = {
    "store": ("loyalty_engine.services", "loyalty_engine.records", "loyalty_engine.ledger",
              *ENTRY_POINTS),
    "ledger": ("loyalty_engine.services", "loyalty_engine.records", *ENTRY_POINTS),
    "records": ("loyalty_engine.services", *ENTRY_POINTS),
    "services": ENTRY_POINTS,
}


def _graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in names.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[name] = {m for m in found if m in names and m != name}
    return graph


def _layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else ""


def test_no_layer_imports_a_layer_above_it() -> None:
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in _graph().items() for target in targets
        if any(target == above or target.startswith(above + ".")
               for above in ABOVE.get(_layer(module), ())))
    assert not wrong, wrong


def test_no_modules_import_each_other_in_a_circle() -> None:
    graph = _graph()
    cycles: list[list[str]] = []
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not cycles, cycles
