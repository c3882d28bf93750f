"""`loyalty points expire` as a user runs it: it expires points, vouchers past their validity
and lapsed stamps (what the docs promise, and what the scheduler's expire job does), says
what it expired, gives the counts under --json, and a second run changes nothing.

Hand-worked (Amsterdam, +01:00 in winter): K1 on 4 January 2027 buys 5 coffees at 3.00,
15 points expiring on 4 April, and fills the 5-stamp card: a free coffee valid 30 days,
until 3 February 12:00. K2 on 20 January buys 2 coffees: 6 points expiring on 20 April and
2 stamps that lapse on 20 February.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.cli import ROOT, Cli, purchase, write_jsonl

PROGRAM = (ROOT / "tests" / "fixtures" / "programs" / "expiry-shop.yaml").read_text(
    encoding="utf-8")
ZERO = {"lots_expired": 0, "points_expired_by_program": {}, "members_with_points_expired": 0,
        "vouchers_expired": 0, "stamps_lapsed": 0, "members_with_stamps_lapsed": 0}


def _expiry_events(cli: Cli) -> list[tuple[str, str, str]]:
    return [(e["kind"], e["member_id"], e["occurred_at"])
            for e in cli.json("events", "list", "--since", "0")
            if e["kind"] in ("voucher_expired", "stamps_expired")]


def test_points_expire_also_expires_vouchers_and_stamps(db_url: str, tmp_path: Path) -> None:
    cli = Cli(db_url, tmp_path)
    (tmp_path / "shop.yaml").write_text(PROGRAM, encoding="utf-8")
    cli.ok("rules", "apply", "shop.yaml", "--effective-from", "2026-01-01T00:00:00+01:00")
    write_jsonl(tmp_path / "coffee.jsonl", [
        purchase("K1", "M-1", "2027-01-04T12:00:00+01:00",
                 [("FLAT-WHITE", "coffee", "5", "3.00")], "15.00"),
        purchase("K2", "M-1", "2027-01-20T12:00:00+01:00",
                 [("FLAT-WHITE", "coffee", "2", "3.00")], "6.00"),
    ])
    cli.ok("purchases", "import", "coffee.jsonl")

    done = cli.ok("points", "expire", "--allow-future", "--as-of", "2027-02-21T12:00:00+01:00")
    assert done.out_lines == ["no points expired",
                              "1 voucher(s) expired; 2 stamp(s) lapsed for 1 member(s)"], done
    [voucher] = cli.json("members", "show", "M-1", "--as-of",
                         "2027-02-21T12:00:00+01:00")["vouchers"]
    assert voucher["status"] == "expired"
    assert _expiry_events(cli) == [
        ("voucher_expired", "M-1", "2027-02-03T11:00:00+00:00"),
        ("stamps_expired", "M-1", "2027-02-19T23:00:00+00:00"),
    ]

    # Re-running is a no-op; later, the points go too.
    def expire(as_of: str) -> Any:
        return cli.json("points", "expire", "--allow-future", "--as-of", as_of)

    assert expire("2027-02-21T12:00:00+01:00") == ZERO
    assert expire("2027-04-21T12:00:00+02:00") == {
        **ZERO, "lots_expired": 2, "points_expired_by_program": {"expiry-shop": 21},
        "members_with_points_expired": 1}
    assert expire("2027-04-21T12:00:00+02:00") == ZERO
    assert len(_expiry_events(cli)) == 2
    assert cli.json("db", "check")["mismatches"] == []
