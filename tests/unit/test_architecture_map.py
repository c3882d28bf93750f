"""docs/architecture.md stays true to the code: every module of the package is on the map
under its real path, and every module the map names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "loyalty_engine"
MAP = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")


def _modules() -> set[str]:
    return {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
            if p.name != "__init__.py" and "__pycache__" not in p.parts}


def _named() -> set[str]:
    """Module paths the map names in backquotes, relative to the package; a cell may name
    several in one folder (`ledger/debts.py`, `ledger/entries.py`)."""
    return {m.removeprefix("loyalty_engine/")
            for m in re.findall(r"`((?:loyalty_engine/)?[a-z_]+(?:/[a-z_]+)*\.py)`", MAP)}


def test_every_module_is_on_the_map() -> None:
    missing = sorted(_modules() - _named())
    assert not missing, f"docs/architecture.md does not say what these hold: {missing}"


def test_every_module_on_the_map_exists() -> None:
    gone = sorted(m for m in _named() - _modules()
                  if not m.startswith("__") and not (ROOT / m).exists())
    assert not gone, f"docs/architecture.md names modules that do not exist: {gone}"
