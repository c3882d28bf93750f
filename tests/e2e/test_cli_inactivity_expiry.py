"""`loyalty points expire` and `members show` with inactivity expiry, as a user runs them:
Harvest Grocery (tests/fixtures/programs/grocery-year.yaml) lapses the whole balance 4 months
after the last earning or redemption.

Hand-worked (Amsterdam): Ben buys for 80.00 on 20 January 2026 (80 points) and 10.00 on
15 March at 12:00 CET (10 points, his last activity): 90 points, lapsing on 15 July 12:00
CEST, the same local time 4 months later, before either lot's own expiry (end of July and of
September).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.cli import ROOT, Cli, purchase, write_jsonl

PROGRAM = ROOT / "tests" / "fixtures" / "programs" / "grocery-year.yaml"
ZERO = {"lots_expired": 0, "points_expired_by_program": {}, "members_with_points_expired": 0,
        "vouchers_expired": 0, "stamps_lapsed": 0, "members_with_stamps_lapsed": 0}


def test_a_balance_lapsed_without_activity_is_shown_gone_and_then_recorded(
    db_url: str, tmp_path: Path,
) -> None:
    cli = Cli(db_url, tmp_path)
    (tmp_path / "grocery.yaml").write_text(PROGRAM.read_text(encoding="utf-8"),
                                           encoding="utf-8")
    cli.ok("rules", "apply", "grocery.yaml", "--effective-from", "2026-01-01T00:00:00+01:00")
    write_jsonl(tmp_path / "shopping.jsonl", [
        purchase("B1", "M-B", "2026-01-20T12:00:00+01:00",
                 [("BASKET", "groceries", "1", "80.00")], "80.00", store_id="HG-01"),
        purchase("B2", "M-B", "2026-03-15T12:00:00+01:00",
                 [("BASKET", "groceries", "1", "10.00")], "10.00", store_id="HG-01"),
    ])
    cli.ok("purchases", "import", "shopping.jsonl")

    def balance(as_of: str) -> tuple[int, int]:
        [found] = cli.json("members", "show", "M-B", "--as-of", as_of)["balances"]
        return found["points"], found["pending"]

    assert balance("2026-07-15T11:59:00+02:00") == (90, 0)
    assert balance("2026-07-15T12:00:00+02:00") == (0, 0)  # no expire run yet

    def expire(as_of: str) -> Any:
        return cli.json("points", "expire", "--allow-future", "--as-of", as_of)

    assert expire("2026-07-16T01:00:00+02:00") == {
        **ZERO, "lots_expired": 2, "points_expired_by_program": {"harvest-grocery": 90},
        "members_with_points_expired": 1}
    assert expire("2026-07-17T01:00:00+02:00") == ZERO
    lapsed = [(e["member_id"], e["data"]) for e in cli.json("events", "list", "--since", "0")
              if e["kind"] == "balance_lapsed"]
    assert lapsed == [("M-B", {"points": 90, "lapsed_at": "2026-07-15T10:00:00+00:00"})]
    assert balance("2026-07-17T12:00:00+02:00") == (0, 0)
    assert cli.json("db", "check")["mismatches"] == []
