"""`loyalty analytics clv` on both databases, through the real `loyalty` command: JSON with
the method and the model, CSV per member, the offer's cost in major units, the CLV
distribution as PNG and SVG, and refusals in one sentence."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from loyalty_engine.cli.analytics_clv import CSV_COLUMNS
from loyalty_engine.cli.app import app
from loyalty_engine.domain.errors import LoyaltyError

from .test_analytics_clv import _history

ARGS = ["analytics", "clv", "--program", "corner-shop", "--as-of", "2026-07-15T00:00:00+00:00",
        "--calibration-end", "2026-06-30T12:00:00+02:00"]


def _run(db_url: str, *args: str) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(app, list(args), env={"LOYALTY_DATABASE_URL": db_url,
                                                        "COLUMNS": "200"})
    return result.exit_code, result.stdout, result.exception


def test_json_csv_and_the_offer(engine: Engine, db_url: str, tmp_path: Path) -> None:
    _history(engine, tmp_path)
    code, out, error = _run(db_url, *ARGS, "--offer-cost", "0.50", "--json")
    assert (code, error) == (0, None), out
    data = json.loads(out)
    assert data["method"] == "retention"
    assert data["model"]["bgnbd"] is None and data["model"]["gamma_gamma"] is None
    assert data["base_value_minor"] == 194  # worked out in test_analytics_clv
    assert data["offer"]["cost_minor"] == 50 and data["offer"]["worth"] == 2
    assert [m["member_id"] for m in data["members"]] == ["M-1", "M-2", "M-3"]

    code, out, error = _run(db_url, *ARGS, "--csv")
    assert (code, error) == (0, None), out
    rows = list(csv.DictReader(io.StringIO(out)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(r["member_id"], r["x"], r["spend_minor"], r["clv_minor"], r["p_alive"])
            for r in rows] == [("M-1", "3", "1900", "97", ""), ("M-2", "0", "400", "0", ""),
                               ("M-3", "2", "1200", "97", "")]

    code, out, error = _run(db_url, *ARGS, "--offer-cost", "0.50")
    assert (code, error) == (0, None), out
    assert "customer base value 1.94 EUR (3 members)" in out
    assert "only 2 members bought again" in " ".join(out.split())


@pytest.mark.parametrize("suffix", [".png", ".svg", ".html"])
def test_the_clv_distribution_chart(engine: Engine, db_url: str, tmp_path: Path,
                                    suffix: str) -> None:
    _history(engine, tmp_path)
    chart = tmp_path / f"clv{suffix}"
    code, out, error = _run(db_url, *ARGS, "--chart", str(chart), "--json")
    assert (code, error) == (0, None), out
    written = chart.read_bytes()
    if suffix == ".png":
        assert written.startswith(b"\x89PNG\r\n\x1a\n")
    elif suffix == ".svg":
        assert b"<svg" in written[:1000] and b"CLV distribution" in written
    else:
        page = written.decode("utf-8")
        assert "<svg" in page and "Members by CLV (EUR)" in page
        # the three members' CLV, 0.97, 0.00 and 0.97 EUR, fall in the histogram's bins
        assert sum(int(n) for n in re.findall(r"<td>\d+\.\d\d</td><td>\d+\.\d\d</td>"
                                              r"<td>(\d+)</td>", page)) == 3


def test_refusals(engine: Engine, db_url: str, tmp_path: Path) -> None:
    _history(engine, tmp_path)
    code, _, error = _run(db_url, *ARGS, "--chart", str(tmp_path / "clv.pdf"))
    assert code != 0 and isinstance(error, LoyaltyError)
    assert str(error).endswith("give a file name ending in .png, .svg or .html")
    code, _, error = _run(db_url, "analytics", "clv", "--program", "nope", "--offer-cost", "1.00")
    assert isinstance(error, LoyaltyError)
    assert str(error) == "there is no program 'nope' (programs: corner-shop)"
    code, _, error = _run(db_url, *ARGS, "--offer-cost", "0.505")
    assert code != 0 and "more decimals than EUR allows" in str(error)


def test_member_ids_that_look_like_markup_are_printed_as_they_are(
        engine: Engine, db_url: str, tmp_path: Path) -> None:
    """Ids may hold '[' (ID_PATTERN allows it): the tables print them, they do not parse
    them as rich markup (a '[/]' used to end the command with a markup error)."""
    from .walk import buy  # the CLV history's own helper

    _history(engine, tmp_path)
    buy(engine, "X1", "2026-06-01", [("LATTE", "coffee", "1", "4.00")], member="M-[/]x")
    code, out, error = _run(db_url, *ARGS)
    assert (code, error) == (0, None), out
    assert "M-[/]x" in out
    code, out, error = _run(db_url, "analytics", "lapsed", "--program", "corner-shop",
                            "--as-of", "2026-12-31T00:00:00+00:00")
    assert (code, error) == (0, None), out
    assert "M-[/]x" in out
