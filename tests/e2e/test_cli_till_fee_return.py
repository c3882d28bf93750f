"""The till return of issue 13 through the CLI: a member joins Big Box at the till with a TV
on 4 January 2027, pays the renewal for 2028 in December, and returns the whole joining
purchase in March 2028. The joining charge (the finished 2027 term) is refunded; the
renewal stays paid and the 2028 membership runs on. Before: the joining charge was
refunded and the running membership cancelled, while its paid renewal stayed 'paid'.
"""

from __future__ import annotations

from pathlib import Path

from tests.e2e.cli import SHIPPED_RULES, Cli, purchase, write_jsonl


def test_returning_last_years_joining_purchase_keeps_this_years_membership(
    db_url: str, tmp_path: Path
) -> None:
    cli = Cli(db_url, tmp_path)
    cli.ok("rules", "apply", SHIPPED_RULES / "big-box-warehouse.yaml")
    write_jsonl(tmp_path / "join.jsonl", [purchase(
        "P1", "M-1", "2027-01-04T12:00:00+01:00",
        [("BB-FEE-BASIC", "fees", "1", "60.00"), ("TV-55", "electronics", "1", "400.00")],
        "460.00", store_id="BB-01")])
    cli.ok("purchases", "import", "join.jsonl")
    cli.ok("clubs", "advance", "--allow-future", "--as-of", "2027-12-10T10:00:00+01:00")
    [renewal] = cli.json("fees", "list", "--member", "M-1", "--status", "due")
    cli.ok("fees", "pay", str(renewal["charge_id"]), "--at", "2027-12-12T10:00:00+01:00")

    write_jsonl(tmp_path / "return.jsonl", [{
        "type": "refund", "refund_id": "R1", "store_id": "BB-01",
        "original_transaction_id": "P1", "occurred_at": "2028-03-05T12:00:00+01:00",
        "amount": "460.00"}])
    cli.ok("purchases", "import", "return.jsonl")

    charges = cli.json("fees", "list", "--member", "M-1")
    assert [(c["kind"], c["status"], c["refunded_minor"]) for c in reversed(charges)] == [
        ("join", "refunded", 6000), ("renewal", "paid", None)]
    [club] = cli.json("clubs", "show", "M-1", "--as-of", "2028-03-06T12:00:00+01:00")["clubs"]
    assert (club["status"], club["level"], club["term_end"]) == (
        "active", "basic", "2029-01-04T11:00:00+00:00")
    assert cli.json("db", "check")["mismatches"] == []
