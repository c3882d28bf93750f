"""Running the installed `loyalty` console script as a user would, one process per command.

Every run gets a clean environment (no inherited LOYALTY_DATABASE_URL or LOYALTY_DEBUG, no
forced colours, a fixed 80-column width as when output goes to a pipe), a timeout, and the
check that no traceback ever reaches the user.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The basic one-rule program of issue 2: exact point figures in these tests depend on it.
RULES_DIR = ROOT / "tests" / "fixtures" / "rules"
SHIPPED_RULES = ROOT / "rules"
TIMEOUT_S = 60
NO_CONFIG_DIR = "/nonexistent/loyalty-test-config"


def _find_executable() -> str:
    for candidate in (Path(sys.executable).parent / "loyalty", ROOT / ".venv" / "bin" / "loyalty"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("loyalty")
    if found is None:
        raise RuntimeError("the `loyalty` console script is not installed (pip install -e .)")
    return found


LOYALTY = _find_executable()


@dataclass(frozen=True, slots=True)
class Result:
    """What one `loyalty` process did."""

    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """Standard output parsed as JSON (fails the test, with the output, if it is not)."""
        try:
            return json.loads(self.stdout)
        except json.JSONDecodeError as exc:
            pytest.fail(f"stdout of {self.command} is not JSON ({exc}):\n{self.stdout}")

    @property
    def command(self) -> str:
        return "loyalty " + " ".join(self.args)

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    @property
    def out_lines(self) -> list[str]:
        return [line for line in self.stdout.splitlines() if line.strip()]

    @property
    def out_flat(self) -> str:
        """Standard output with all runs of whitespace (including wrapping) made one space."""
        return " ".join(self.stdout.split())

    @property
    def err_flat(self) -> str:
        return " ".join(self.stderr.split())

    def __str__(self) -> str:
        return (f"$ {self.command}\nexit code: {self.code}\n--- stdout ---\n{self.stdout}"
                f"--- stderr ---\n{self.stderr}")


def clean_env() -> dict[str, str]:
    """The environment `loyalty` runs in for a test: none of the LOYALTY_ settings of the
    machine, no config file of its user, no forced colours, 80 columns as in a pipe."""
    environment = {
        key: value for key, value in os.environ.items()
        if key not in ("LOYALTY_DATABASE_URL", "LOYALTY_DEBUG", "LOYALTY_CONFIG", "FORCE_COLOR",
                       "TTY_COMPATIBLE", "TTY_INTERACTIVE")
    }
    environment.update({"COLUMNS": "80", "NO_COLOR": "1", "PYTHONIOENCODING": "utf-8",
                        "XDG_CONFIG_HOME": NO_CONFIG_DIR})
    return environment


def run(
    *args: str | Path,
    database: str | None = None,
    via: Literal["env", "option"] = "env",
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = TIMEOUT_S,
    program: str | Path = LOYALTY,
) -> Result:
    """Run `loyalty ARGS...` and return its exit code and output.

    database is passed as LOYALTY_DATABASE_URL (via="env") or as the global --database option
    (via="option"); program is the console script to run (another installation's, say).
    Fails the test on a timeout or if a traceback is printed.
    """
    environment = clean_env()
    argv = [str(a) for a in args]
    if database is not None:
        if via == "env":
            environment["LOYALTY_DATABASE_URL"] = database
        else:
            argv = ["--database", database, *argv]
    if env:
        environment.update(env)
    try:
        done = subprocess.run(
            [str(program), *argv], cwd=cwd, env=environment, capture_output=True, text=True,
            encoding="utf-8", timeout=timeout, stdin=subprocess.DEVNULL, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"`loyalty {' '.join(argv)}` did not finish within {timeout} s "
                    f"(stdout: {exc.stdout!r}, stderr: {exc.stderr!r})")
    result = Result(tuple(argv), done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in result.stderr, f"a traceback reached the user:\n{result}"
    assert "Traceback" not in result.stdout, f"a traceback reached the user:\n{result}"
    return result


def ok(*args: str | Path, **kwargs: Any) -> Result:
    """run() that expects exit code 0."""
    result = run(*args, **kwargs)
    assert result.code == 0, f"expected success:\n{result}"
    return result


def assert_one_sentence_error(result: Result, *fragments: str) -> str:
    """Exit 1 and a single `error: ...` line on stderr containing every fragment.

    Returns that line.
    """
    assert result.code == 1, f"expected exit code 1:\n{result}"
    assert result.stdout.strip() == "", f"expected nothing on stdout:\n{result}"
    lines = result.err_lines
    assert len(lines) == 1, f"expected a one-line message:\n{result}"
    line = lines[0]
    assert line.startswith("error: "), f"expected `error: ...`:\n{result}"
    assert "internal error" not in line, f"a user mistake was reported as a bug:\n{result}"
    for fragment in fragments:
        assert fragment in line, f"expected {fragment!r} in the message:\n{result}"
    return line


def write_jsonl(path: Path, records: list[dict[str, Any] | str]) -> Path:
    """A JSON Lines file; a str record is written verbatim (to make bad lines)."""
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records),
        encoding="utf-8",
    )
    return path


def purchase(
    transaction_id: str,
    member_id: str | None,
    occurred_at: str,
    items: list[tuple[str, str, str, str]],
    total: str,
    store_id: str = "AMS-01",
    currency: str = "EUR",
) -> dict[str, Any]:
    """A purchase event as a POS would post it; items are (sku, category, quantity, price)."""
    return {
        "transaction_id": transaction_id,
        "store_id": store_id,
        "member_id": member_id,
        "occurred_at": occurred_at,
        "currency": currency,
        "total": total,
        "items": [{"sku": s, "category": c, "quantity": q, "unit_price": p}
                  for s, c, q, p in items],
    }


# Four purchases in March; points under Bean There (1 per whole euro from 2 euros up,
# beans x2, gift cards never earn) are in the comments.
MARCH_PURCHASES = [
    # 12.50 of beans x2 + 3.20 latte -> floor(28.20) = 28
    purchase("T1", "M-1", "2026-03-14T09:30:00+01:00",
             [("BEANS-1KG", "coffee-beans", "1", "12.50"), ("LATTE", "coffee", "1", "3.20")],
             "15.70"),
    # the gift card is excluded: 2 x 2.50 -> 5
    purchase("T2", "M-1", "2026-03-15T09:30:00+01:00",
             [("GIFT-25", "gift-cards", "1", "25.00"), ("CROISSANT", "pastry", "2", "2.50")],
             "30.00"),
    # anonymous: stored, earns nothing, is nobody's
    purchase("T3", None, "2026-03-15T10:00:00+01:00", [("LATTE", "coffee", "1", "3.20")],
             "3.20", store_id="AMS-02"),
    # below the 2.00 minimum -> 0 points, but M-2 is now a member
    purchase("T4", "M-2", "2026-03-16T10:00:00+01:00", [("ESPRESSO", "coffee", "1", "1.50")],
             "1.50", store_id="AMS-02"),
]


class Cli:
    """`loyalty` against one database, run in one folder."""

    def __init__(self, db_url: str, cwd: Path) -> None:
        self.db_url = db_url
        self.cwd = cwd

    def run(self, *args: str | Path) -> Result:
        return run(*args, database=self.db_url, cwd=self.cwd)

    def ok(self, *args: str | Path) -> Result:
        return ok(*args, database=self.db_url, cwd=self.cwd)

    def json(self, *args: str | Path) -> Any:
        return self.ok(*args, "--json").json()


def ledger_entries(explained: dict[str, Any], program_id: str | None = None
                   ) -> list[dict[str, Any]]:
    """The entries of `members explain --json`, of one program or of all (in program order)."""
    return [e for p in explained["programs"]
            if program_id is None or p["program_id"] == program_id for e in p["entries"]]


def assert_json_error(result: Result, code: str, *fragments: str) -> dict[str, Any]:
    """Exit 1, nothing on stdout, and one JSON error on stderr with this stable code and a
    message containing every fragment (what --json promises scripts). Returns it."""
    assert result.code == 1, f"expected exit code 1:\n{result}"
    assert result.stdout.strip() == "", f"expected nothing on stdout:\n{result}"
    try:
        error = json.loads(result.stderr)
    except json.JSONDecodeError:
        pytest.fail(f"stderr is not one JSON error:\n{result}")
    assert error["error"] == code, str(result)
    for fragment in fragments:
        assert fragment in error["message"], f"{fragment!r} not in the message:\n{result}"
    return dict(error)


def listed_members(data: Any) -> list[dict[str, Any]]:
    """The members of `members list --json`, each with `points` and `pending` of its one
    program (these tests use one program per member; two would never be added up)."""
    assert isinstance(data, dict) and len(data["members"]) <= data["total"], data
    rows = []
    for m in data["members"]:
        assert len(m["balances"]) <= 1, m
        [balance] = m["balances"] or [{"points": 0, "pending": 0}]
        rows.append({**m, "points": balance["points"], "pending": balance["pending"]})
    return rows
