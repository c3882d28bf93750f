"""`loyalty rebates issue` and `loyalty events list`: a year of grocery spend becomes a
voucher once the year is over, and the outbox says so."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.cli import SHIPPED_RULES, assert_one_sentence_error, ok, purchase, run, write_jsonl


def test_a_years_rebate_becomes_a_voucher_once(db_url: str, tmp_path: Path) -> None:
    ok("db", "upgrade", database=db_url)
    ok("rules", "apply", SHIPPED_RULES, database=db_url)
    shops = write_jsonl(tmp_path / "shops.jsonl", [
        purchase("F1", "M-1", "2026-04-01T10:00:00+02:00",
                 [("SHOP", "groceries", "1", "800.00")], "800.00", store_id="FM-01"),
        purchase("F2", "M-1", "2026-10-01T10:00:00+02:00",
                 [("SHOP", "groceries", "1", "250.00")], "250.00", store_id="FM-01"),
    ])
    ok("purchases", "import", shops, database=db_url)

    early = ok("rebates", "issue", "--allow-future",
               "--as-of", "2026-12-31T12:00:00+01:00", "--json",
               database=db_url).json()
    assert early["vouchers"] == 0
    done = ok("rebates", "issue", "--allow-future",
              "--as-of", "2027-01-02T00:00:00+01:00", "--json",
              database=db_url).json()
    # 1% of 1,050.00 = 10.50, once.
    assert done["vouchers"] == 1
    assert done["by_program"] == {
        "fresh-market": {"vouchers": 1, "amount_minor": 1050, "currency": "EUR"}}
    assert done["codes"] == ["fresh-market-annual-rebate-2026-M-1"]
    again = ok("rebates", "issue", "--allow-future", "--as-of", "2027-01-03T00:00:00+01:00",
               database=db_url)
    assert again.out_flat.startswith("no rebate voucher was due"), str(again)
    member = ok("members", "show", "M-1", "--as-of", "2027-01-05T00:00:00+01:00", "--json",
                database=db_url).json()
    rebate = [v for v in member["vouchers"] if v["source"] == "rebate"]
    assert [(v["code"], v["amount_minor"], v["valid"]) for v in rebate] == [
        ("fresh-market-annual-rebate-2026-M-1", 1050, True)]

    # The outbox tells a CRM about it, once, and pages from the last id it saw.
    events = ok("events", "list", "--json", database=db_url).json()
    assert [(e["kind"], e["member_id"], e["data"]["amount_minor"]) for e in events] == [
        ("reward_issued", "M-1", 1050)]
    assert ok("events", "list", "--since", str(events[-1]["id"]), "--json",
              database=db_url).json() == []
    assert "reward_issued" in ok("events", "list", database=db_url).out_flat
    # The April points lapse on 1 April 2027 at 10:00: a notice about a fortnight before.
    notices = ok("events", "notify", "--allow-future",
                 "--as-of", "2027-03-18T00:00:00+01:00", "--days", "15",
                 "--json", database=db_url).json()
    assert notices == {"recorded": {"points_expiring_soon": 1}}
    again = ok("events", "notify", "--allow-future",
               "--as-of", "2027-03-19T00:00:00+01:00", "--days", "15",
               database=db_url)
    assert again.out_flat == "notices recorded: 0 points_expiring_soon", str(again)

    assert_one_sentence_error(run("rebates", "issue", "--allow-future",
                                  "--program", "nope", database=db_url),
                              "no program 'nope'")
