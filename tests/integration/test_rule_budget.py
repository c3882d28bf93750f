"""A rule whose CEL expression runs out of the runtime's comprehension budget fails that
purchase as a rule failure naming the rule and the program (HTTP 422, an import's file:line),
never a 500 or an aborted import. Validation refuses such rules in new programs, so these
tests store one as an earlier release would have (the budget check switched off)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from loyalty_engine.api.app import create_app
from loyalty_engine.rules import ProgramFileError, expressions, load_program_text
from loyalty_engine.services import programs
from loyalty_engine.services.apikeys import create_api_key
from loyalty_engine.services.importing import import_purchases
from loyalty_engine.services.programs import apply_program_files
from tests.api_support import API_NOW, bearer

NESTED = "purchase.categories.all(a, purchase.skus.all(b, b != a))"
PROGRAM = f"""\
program: picky
name: Picky Pantry
currency: EUR
timezone: Europe/Amsterdam
enrolment: open
stores: ["PP-*"]
rules:
  - id: base
    kind: points_per_spend
    points_per_unit: 1
  - id: mixed-basket
    kind: fixed_bonus
    points: 5
    when: "{NESTED}"
"""


def _big_purchase(transaction_id: str, lines: int = 200) -> dict[str, Any]:
    return {
        "transaction_id": transaction_id, "store_id": "PP-01", "member_id": "M-1",
        "occurred_at": "2026-05-30T09:30:00+02:00", "currency": "EUR",
        "total": f"{lines}.00",
        "items": [{"sku": f"SKU-{i}", "category": f"cat-{i}", "quantity": "1",
                   "unit_price": "1.00"} for i in range(lines)],
    }


@pytest.fixture
def stored_costly(engine: Engine, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """The picky program stored as if by a release that did not bound comprehensions."""
    path = tmp_path / "picky.yaml"
    path.write_text(PROGRAM, encoding="utf-8")
    with monkeypatch.context() as patched:
        patched.setattr(expressions, "ITERATION_BUDGET", 10**12)
        expressions._compile.cache_clear()
        apply_program_files(engine, [path], API_NOW)
    # What this process compiled is forgotten: the catalog compiles the stored text again.
    expressions._compile.cache_clear()
    programs._compiled_cache.clear()
    yield engine
    expressions._compile.cache_clear()
    programs._compiled_cache.clear()


def test_a_new_program_with_the_costly_rule_is_refused() -> None:
    with pytest.raises(ProgramFileError) as info:
        load_program_text(PROGRAM, "picky.yaml")
    [problem] = info.value.problems
    assert (problem.line, problem.column) == (14, 11)
    assert "rules[1].when.expression" in problem.message
    assert "1,001,000 steps" in problem.message and "9,999" in problem.message


def test_the_api_answers_422_naming_the_rule(stored_costly: Engine) -> None:
    token = create_api_key(stored_costly, "till-pp", "pos", ["PP-*"], API_NOW)[1]
    app = create_app(stored_costly, clock=lambda: API_NOW)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/v1/purchases", json=_big_purchase("T-BIG"),
                               headers=bearer(token))
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        detail = response.json()["detail"]
        assert "rule 'mixed-basket' of program 'picky' failed" in detail
        assert "comprehension steps" in detail
        # A small purchase still earns: the rule fails only where it runs out.
        small = client.post("/v1/purchases", json=_big_purchase("T-SMALL", lines=3),
                            headers=bearer(token))
        assert small.status_code == 201, small.text
        assert small.json()["points"] == {"picky": 3 + 5}


def test_an_import_reports_the_line_and_goes_on(stored_costly: Engine, tmp_path: Path) -> None:
    source = tmp_path / "day.jsonl"
    records = [_big_purchase("T-1", lines=3), _big_purchase("T-2"),
               _big_purchase("T-3", lines=2)]
    source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    report = import_purchases(stored_costly, source, API_NOW, skip_invalid=True)
    assert report.committed and report.recorded == 2
    [error] = report.errors
    assert error.line == 2
    assert "rule 'mixed-basket' of program 'picky' failed" in error.reason
    # All-or-nothing (the default): the same file is refused with the same line, not aborted.
    again = import_purchases(stored_costly, source, API_NOW)
    assert not again.committed and [e.line for e in again.errors] == [2]
