"""Refunds in purchase files, pending points, and redemptions, through the `loyalty` CLI.

The program is the shipped Bean There one (rules/bean-there-coffee.yaml): one point per
euro from 2 euros up, whole beans count double, double points on Tuesdays, points pending
for 14 days, a stamp card of 9 coffees for a free-coffee voucher, and a five-euro-off
voucher for 250 points.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.e2e.cli import (
    SHIPPED_RULES,
    Cli,
    Result,
    assert_one_sentence_error,
    ledger_entries,
    listed_members,
    purchase,
    write_jsonl,
)

PROGRAM = "bean-there"


def refund(refund_id: str, transaction_id: str, occurred_at: str, amount: str,
           items: list[tuple[str, str, str]] | None = None, store_id: str = "AMS-01",
           **extra: Any) -> dict[str, Any]:
    """A refund line of an import file; items are (sku, quantity, amount)."""
    record: dict[str, Any] = {
        "type": "refund", "refund_id": refund_id, "store_id": store_id,
        "original_transaction_id": transaction_id, "occurred_at": occurred_at,
        "amount": amount, **extra,
    }
    if items is not None:
        record["items"] = [{"sku": s, "quantity": q, "amount": a} for s, q, a in items]
    return record


def coffee(transaction_id: str, day: int, member_id: str = "M-1") -> dict[str, Any]:
    """A latte and a croissant (6.00: 6 points, 12 on a Tuesday, one stamp) on a March day."""
    return purchase(transaction_id, member_id, f"2026-03-{day:02d}T09:00:00+01:00",
                    [("LATTE", "coffee", "1", "3.20"), ("CROISSANT", "pastry", "1", "2.80")],
                    "6.00")


# M-1's March at AMS-01 (1 March 2026 is a Sunday; the 3rd and the 10th are Tuesdays).
# Ten coffees: 8 x 6 + 2 x 12 = 72 points; the 9th (T10, the 12th) fills the card.
# Six bags of beans on Saturday the 7th: 150.00 x 2 = 300 points; one bag comes back the
# next day, in the same file: 300 x 25/150 = 50 points taken back. 372 earned, 322 held.
MARCH = [
    coffee("T01", 2), coffee("T02", 3), coffee("T03", 4), coffee("T04", 5), coffee("T05", 6),
    purchase("T06", "M-1", "2026-03-07T11:00:00+01:00",
             [("BEANS-1KG", "coffee-beans", "6", "25.00")], "150.00"),
    refund("R1", "T06", "2026-03-08T10:00:00+01:00", "25.00", [("BEANS-1KG", "1", "25.00")]),
    coffee("T07", 9), coffee("T08", 10), coffee("T09", 11), coffee("T10", 12), coffee("T11", 13),
]
# (earned_at, points, remaining) of each lot, oldest first: T06 keeps 250 of its 300.
MARCH_LOTS = [
    ("2026-03-02T08:00:00+00:00", 6, 6), ("2026-03-03T08:00:00+00:00", 12, 12),
    ("2026-03-04T08:00:00+00:00", 6, 6), ("2026-03-05T08:00:00+00:00", 6, 6),
    ("2026-03-06T08:00:00+00:00", 6, 6), ("2026-03-07T10:00:00+00:00", 300, 250),
    ("2026-03-09T08:00:00+00:00", 6, 6), ("2026-03-10T08:00:00+00:00", 12, 12),
    ("2026-03-11T08:00:00+00:00", 6, 6), ("2026-03-12T08:00:00+00:00", 6, 6),
    ("2026-03-13T08:00:00+00:00", 6, 6),
]
# M-1's ledger in time order: the refund of the 8th sits between the 7th and the 9th.
MARCH_ENTRIES = [
    ("earn", 6), ("earn", 12), ("earn", 6), ("earn", 6), ("earn", 6), ("earn", 300),
    ("refund", -50),
    ("earn", 6), ("earn", 12), ("earn", 6), ("earn", 6), ("earn", 6),
]
AFTER_MARCH = "2026-03-16T12:00:00+01:00"
NO_MISMATCHES = {"balances_checked": 1, "mismatches": []}


class CoffeeCli(Cli):
    """`loyalty` for M-1 in the coffee program."""

    def show(self, member_id: str, as_of: str) -> dict[str, Any]:
        data = self.json("members", "show", member_id, "--as-of", as_of)
        assert isinstance(data, dict)
        return data

    def redeem(self, redemption_id: str, *how: str, at: str) -> Result:
        # These stories are dated in 2026 while the clock reads later: an operator
        # entering them by hand, past the offline tills' window.
        return self.run("redemptions", "create", "--id", redemption_id, "--member", "M-1",
                        "--program", PROGRAM, *how, "--at", at, "--allow-backdate")


def _lots(shown: dict[str, Any]) -> list[tuple[str, int, int]]:
    return [(lot["earned_at"], lot["points"], lot["remaining"]) for lot in shown["lots"]]


def _balance(shown: dict[str, Any]) -> tuple[int, int, int]:
    [balance] = shown["balances"]
    assert balance["program_id"] == PROGRAM
    return balance["points"], balance["pending"], balance["lifetime_earned"]


def _setup_march(tmp_path: Path, db_url: str) -> Cli:
    cli = CoffeeCli(db_url, tmp_path)
    cli.ok("rules", "apply", SHIPPED_RULES)
    write_jsonl(tmp_path / "march.jsonl", MARCH)
    return cli


def test_a_march_of_coffee_and_a_refund_in_one_file(db_url: str, tmp_path: Path) -> None:
    cli = _setup_march(tmp_path, db_url)

    imported = cli.ok("purchases", "import", "march.jsonl")
    assert imported.out_lines == [
        "11 purchase(s) read: 11 recorded, 0 already recorded; points awarded: bean-there 372",
        "1 refund(s) read: 1 applied, 0 already applied; points taken back: bean-there 50",
    ], str(imported)

    shown = cli.show("M-1", AFTER_MARCH)
    # Nothing is spendable yet: every point waits out its 14 days.
    assert _balance(shown) == (0, 322, 372)
    assert _lots(shown) == MARCH_LOTS
    for lot in shown["lots"]:  # 14 days after it was earned (all within March)
        day, time = int(lot["earned_at"][8:10]), lot["earned_at"][11:]
        assert lot["pending_until"] == f"2026-03-{day + 14:02d}T{time}", lot
        assert lot["activated_at"] is None
    # Ten coffees: a full card of nine became a voucher, and one stamp is on the next card.
    assert shown["stamp_cards"] == [{"program_id": PROGRAM, "rule_id": "coffee-card",
                                     "stamps": 1, "card_size": 9,
                                     "reward_id": "free-coffee"}]
    [voucher] = shown["vouchers"]
    assert voucher["code"].startswith("bean-there-coffee-card-"), voucher
    assert (voucher["reward_id"], voucher["kind"], voucher["category"], voucher["source"],
            voucher["status"], voucher["valid"]) == (
        "free-coffee", "free_item", "coffee", "stamp_card", "issued", True)
    assert (voucher["issued_at"], voucher["valid_until"]) == (
        "2026-03-12T08:00:00+00:00", "2026-05-11T08:00:00+00:00")  # valid for 60 days
    assert shown["debts"] == []

    text = cli.ok("members", "show", "M-1", "--as-of", AFTER_MARCH)
    assert re.search(r"bean-there\s*│\s*0\s*│\s*322\s*│\s*372\s*│", text.stdout), str(text)
    assert re.search(r"coffee-card\s*│\s*1 of 9\s*│\s*free-coffee", text.stdout), str(text)
    assert re.search(r"free-coffee\s*│\s*stamp_card\s*│.*│\s*issued\s*│", text.stdout), str(text)

    entries = ledger_entries(cli.json("members", "explain", "M-1"))
    assert [(e["kind"], e["points"]) for e in entries] == MARCH_ENTRIES
    assert entries[6]["reason"]["refund_id"] == "R1"
    assert entries[6]["occurred_at"] == "2026-03-08T09:00:00+00:00"

    again = cli.json("purchases", "import", "march.jsonl")
    assert again == {
        "file": "march.jsonl", "read": 12, "recorded": 0, "replayed": 11, "points_by_program": {},
        "refunds": {"read": 1, "applied": 0, "replayed": 1, "points_taken_back_by_program": {}},
        "committed": True, "rejects_file": None, "errors": [],
    }
    assert cli.show("M-1", AFTER_MARCH) == shown
    assert cli.json("db", "check") == NO_MISMATCHES


# M-1 has two purchases before the file with bad lines arrives.
BEFORE = [
    coffee("B1", 2),                                                     # 6 points
    purchase("B2", "M-1", "2026-03-04T09:00:00+01:00",
             [("LATTE", "coffee", "2", "3.20")], "6.40"),                # 6 points
]
MORE: list[dict[str, Any] | str] = [
    coffee("N1", 5, member_id="M-2"),                                    # 1: good, 6 points
    refund("R1", "B1", "2026-03-06T10:00:00+01:00", "2.80",              # 2: good, -3 points
           [("CROISSANT", "1", "2.80")]),
    refund("R2", "B2", "2026-03-06T10:00:00+01:00", "9.99"),             # 3: more than paid
    refund("R3", "B1", "2026-03-06T10:00:00+01:00", "1.00",              # 4: unknown field
           note="customer changed their mind"),
    {**coffee("N2", 6, member_id="M-2"), "occurred_at": "2026-03-06T09:00:00"},  # 5: no offset
    purchase("N3", "M-3", "2026-03-06T18:00:00+01:00",                   # 6: good, Fresh
             [("APPLES", "fruit", "3", "2.50"), ("BREAD", "bakery", "1", "3.70")],  # Market:
             "11.20", store_id="FM-01"),                                 #    11 points
    refund("R4", "N1", "2026-03-07T10:00:00+01:00", "3.20",              # 7: good, refunds a
           [("LATTE", "1", "3.20")]),                                    #    purchase of line 1
]
MORE_REASONS = {
    3: "refund of 9.99 EUR is more than what remains of the purchase (6.40 of 6.40)",
    4: "note: unknown field",
    5: "occurred_at",
}


def test_a_file_with_bad_refund_lines_fails_whole_or_keeps_the_good_lines(
    db_url: str, tmp_path: Path
) -> None:
    cli = CoffeeCli(db_url, tmp_path)
    cli.ok("rules", "apply", SHIPPED_RULES)
    write_jsonl(tmp_path / "before.jsonl", BEFORE)
    cli.ok("purchases", "import", "before.jsonl")
    members_before = cli.json("members", "list")
    assert [(m["member_id"], m["points"], m["pending"])
            for m in listed_members(members_before)] == [("M-1", 0, 12)]

    write_jsonl(tmp_path / "more.jsonl", MORE)
    refused = cli.run("purchases", "import", "more.jsonl")
    assert refused.code == 1, str(refused)
    assert refused.stdout == "", str(refused)
    *problems, summary = refused.err_lines
    assert len(problems) == len(MORE_REASONS), str(refused)
    for line, (number, reason) in zip(problems, sorted(MORE_REASONS.items()), strict=True):
        assert line.startswith(f"more.jsonl:{number}: "), str(refused)
        assert reason in line, str(refused)
    assert summary == ("3 bad record(s); nothing was imported "
                       "(fix them, or use --skip-invalid)"), str(refused)
    # Nothing of the file was kept: not M-2's purchase, not the refund of M-1's.
    assert cli.json("members", "list") == members_before
    assert cli.json("db", "check") == NO_MISMATCHES

    kept = cli.json("purchases", "import", "more.jsonl", "--skip-invalid")
    assert (kept["read"], kept["recorded"], kept["replayed"], kept["points_by_program"]) == (
        7, 2, 0, {"bean-there": 6, "fresh-market": 11})  # never added: two programs' points
    assert (kept["refunds"]["applied"], kept["refunds"]["replayed"],
            kept["refunds"]["points_taken_back_by_program"]["bean-there"]) == (2, 0, 6)
    assert kept["committed"] is True
    assert kept["rejects_file"] == "more.jsonl.rejects.jsonl"
    assert [e["line"] for e in kept["errors"]] == sorted(MORE_REASONS)
    rejects = [json.loads(line) for line in
               (tmp_path / "more.jsonl.rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in rejects] == sorted(MORE_REASONS)
    for reject, (_, reason) in zip(rejects, sorted(MORE_REASONS.items()), strict=True):
        assert reject["file"] == "more.jsonl"
        assert reason in reject["reason"]
    assert '"R2"' in rejects[0]["record"]

    # M-1: 12 - 3 (R1); M-2: 6 - 3 (R4), both pending; M-3's Fresh Market points are
    # spendable at once (no pending days there).
    assert [(m["member_id"], m["points"], m["pending"], m["purchases"])
            for m in listed_members(cli.json("members", "list"))] == [
        ("M-1", 0, 9, 2), ("M-2", 0, 3, 1), ("M-3", 11, 0, 1)]
    assert cli.json("db", "check") == {"balances_checked": 3, "mismatches": []}


def test_pending_points_activate_then_buy_use_and_reverse_a_voucher(
    db_url: str, tmp_path: Path
) -> None:
    cli = _setup_march(tmp_path, db_url)
    cli.ok("purchases", "import", "march.jsonl")

    # By the 20th only the first four lots (2nd to 5th March) are past their 14 days.
    early = cli.json("points", "activate", "--allow-future", "--as-of", "2026-03-20T00:00:00+01:00")
    assert early == {"lots": 4, "members": 1, "points_by_program": {"bean-there": 30}}
    too_few = cli.redeem("RD-0", "--reward", "five-euro-off", at="2026-03-20T10:00:00+01:00")
    assert_one_sentence_error(
        too_few, "member 'M-1' has 30 spendable points in 'bean-there'; 250 are needed")

    rest = cli.ok("points", "activate", "--allow-future", "--as-of", "2026-03-28T00:00:00+01:00")
    assert rest.out_lines == ["bean-there: 292 points activated", "7 lot(s) of 1 member(s)"], \
        str(rest)

    bought = cli.redeem("RD-1", "--reward", "five-euro-off", "--json",
                        at="2026-03-30T10:00:00+02:00")
    assert bought.code == 0, str(bought)
    assert bought.json() == {
        "redemption_id": "RD-1", "member_id": "M-1", "program_id": PROGRAM, "kind": "reward",
        "points": 250, "voucher": "R-RD-1", "reversed": False, "replayed": False,
        "points_restored": None,
    }
    shown = cli.show("M-1", "2026-03-30T12:00:00+02:00")
    assert _balance(shown) == (72, 0, 372)
    assert sum(lot["remaining"] for lot in shown["lots"]) == 72
    assert all(lot["activated_at"] is not None for lot in shown["lots"])
    vouchers = {v["code"]: v for v in shown["vouchers"]}
    assert len(vouchers) == 2  # the free coffee of the stamp card, and the one bought
    five = vouchers["R-RD-1"]
    assert (five["reward_id"], five["kind"], five["amount_minor"], five["source"],
            five["status"], five["valid"]) == (
        "five-euro-off", "fixed_amount", 500, "points", "issued", True)
    assert five["valid_until"] == "2026-06-28T08:00:00+00:00"  # 90 days

    used = cli.redeem("RD-2", "--voucher", "R-RD-1", at="2026-04-02T10:00:00+02:00")
    assert used.code == 0, str(used)
    assert used.out_flat == ("redemption RD-2 of M-1 in bean-there: voucher R-RD-1 used; done")
    twice = cli.redeem("RD-3", "--voucher", "R-RD-1", at="2026-04-03T10:00:00+02:00")
    assert_one_sentence_error(twice, "voucher 'R-RD-1' is redeemed and cannot be used")
    replay = cli.redeem("RD-2", "--voucher", "R-RD-1", at="2026-04-02T10:00:00+02:00")
    assert replay.code == 0, str(replay)
    assert replay.out_flat == ("redemption RD-2 of M-1 in bean-there: voucher R-RD-1 used; "
                               "done (already recorded; nothing changed)"), str(replay)

    # The purchase of a voucher that was used cannot be undone before its use is.
    blocked = cli.run("redemptions", "reverse", "RD-1")
    assert_one_sentence_error(blocked, "'R-RD-1'", "reverse the redemption that used it first")
    unused = cli.ok("redemptions", "reverse", "RD-2")
    assert unused.out_flat == ("redemption RD-2 of M-1 in bean-there undone: voucher R-RD-1 "
                               "can be used again"), str(unused)
    refunded = cli.json("redemptions", "reverse", "RD-1")
    assert (refunded["kind"], refunded["points"], refunded["voucher"], refunded["reversed"],
            refunded["replayed"], refunded["points_restored"]) == (
        "reward", 250, "R-RD-1", True, False, 250)

    after = cli.show("M-1", "2026-04-03T12:00:00+02:00")
    assert _balance(after) == (322, 0, 372)
    assert _lots(after) == MARCH_LOTS  # every point back in the lot it came from
    five = {v["code"]: v for v in after["vouchers"]}["R-RD-1"]
    assert (five["status"], five["valid"]) == ("void", False)
    explained = cli.json("members", "explain", "M-1")
    kinds = [(e["kind"], e["points"]) for e in ledger_entries(explained)]
    assert kinds == [*MARCH_ENTRIES, ("redeem", -250), ("unredeem", 250)]

    greedy = cli.redeem("RD-4", "--points", "1000", at="2026-04-04T10:00:00+02:00")
    assert_one_sentence_error(
        greedy, "member 'M-1' has 322 spendable points in 'bean-there'; 1000 are needed")
    assert_one_sentence_error(cli.run("redemptions", "reverse", "RD-404"),
                              "there is no redemption 'RD-404'")
    assert_one_sentence_error(cli.redeem("RD-5", at="2026-04-04T10:00:00+02:00"),
                              "give exactly one of points, reward and voucher")
    naive = cli.redeem("RD-6", "--points", "10", at="2026-04-04T10:00:00")
    assert naive.code == 2, str(naive)  # a usage error, as for any malformed option
    assert "--at" in naive.err_flat and "has no UTC offset" in naive.err_flat, str(naive)

    # Bean There points never expire, however late the run.
    expired = cli.json("points", "expire", "--allow-future",
                       "--as-of", "2028-01-01T00:00:00+01:00")
    assert (expired["lots_expired"], expired["points_expired_by_program"]) == (0, {})
    assert cli.json("db", "check") == NO_MISMATCHES


def test_every_bad_refund_line_is_reported(db_url: str, tmp_path: Path) -> None:
    cli = CoffeeCli(db_url, tmp_path)
    cli.ok("rules", "apply", SHIPPED_RULES)
    write_jsonl(tmp_path / "refunds.jsonl", [
        coffee("T1", 2),
        refund("R1", "T-404", "2026-03-06T10:00:00+01:00", "1.00"),  # 2: no such purchase
        refund("R2", "T1", "2026-03-06T10:00:00+01:00", "9.99"),     # 3: more than paid
    ])
    refused = cli.run("purchases", "import", "refunds.jsonl")
    assert refused.code == 1, str(refused)
    assert refused.err_lines == [
        "refunds.jsonl:2: there is no purchase 'T-404' of store 'AMS-01' to refund",
        "refunds.jsonl:3: refund of 9.99 EUR is more than what remains of the purchase "
        "(6.00 of 6.00)",
        "2 bad record(s); nothing was imported (fix them, or use --skip-invalid)",
    ], str(refused)


def test_a_rejected_refund_line_is_counted_as_a_refund(db_url: str, tmp_path: Path) -> None:
    cli = CoffeeCli(db_url, tmp_path)
    cli.ok("rules", "apply", SHIPPED_RULES)
    write_jsonl(tmp_path / "one-of-each.jsonl", [
        coffee("T1", 2),
        refund("R1", "T1", "2026-03-06T10:00:00+01:00", "2.80", [("CROISSANT", "1", "2.80")]),
        refund("R2", "T1", "2026-03-06T10:00:00+01:00", "1.00", note="unknown field"),
    ])
    kept = cli.ok("purchases", "import", "one-of-each.jsonl", "--skip-invalid")
    assert kept.out_lines == [
        "1 purchase(s) read: 1 recorded, 0 already recorded; points awarded: bean-there 6",
        "2 refund(s) read: 1 applied, 0 already applied; points taken back: bean-there 3",
        "1 rejected; reasons in one-of-each.jsonl.rejects.jsonl",
    ], str(kept)


def test_points_cannot_be_spent_before_they_were_earned(db_url: str, tmp_path: Path) -> None:
    cli = CoffeeCli(db_url, tmp_path)
    cli.ok("rules", "apply", SHIPPED_RULES)
    write_jsonl(tmp_path / "one.jsonl", [coffee("T1", 2)])
    cli.ok("purchases", "import", "one.jsonl")
    cli.ok("points", "activate", "--allow-future", "--as-of", "2026-04-01T00:00:00+02:00")
    # The member's 6 points were earned on 2 March; on 1 March there was nothing to spend.
    backdated = cli.redeem("RD-1", "--points", "5", at="2026-03-01T10:00:00+01:00")
    assert_one_sentence_error(backdated, "spendable")


def test_members_show_prints_whole_voucher_codes(db_url: str, tmp_path: Path) -> None:
    cli = CoffeeCli(db_url, tmp_path)
    cli.ok("rules", "apply", SHIPPED_RULES)
    write_jsonl(tmp_path / "nine.jsonl", [
        purchase("T1", "M-1", "2026-03-02T09:00:00+01:00",
                 [("LATTE", "coffee", "9", "3.20")], "28.80")])
    cli.ok("purchases", "import", "nine.jsonl")
    text = cli.ok("members", "show", "M-1", "--as-of", AFTER_MARCH)
    codes = re.findall(r"bean-there-coffee-card-\d+-\d+", text.stdout)
    assert codes, f"the free-coffee voucher's code is not shown whole:\n{text}"
