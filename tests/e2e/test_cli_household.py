"""`loyalty clubs add-member` and `remove-member` on a warehouse-like fixture
(tests/fixtures/programs/warehouse-household.yaml: Basic 60.00 with one household member,
Europe/Berlin): a household member added and removed, and each mistake one sentence with a
non-zero exit and nothing written."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.cli import Cli, assert_one_sentence_error

FAMILY = (Path(__file__).resolve().parents[1] / "fixtures" / "programs"
          / "warehouse-household.yaml")


def test_household_members_through_the_cli(sqlite_db_url: str, tmp_path: Path) -> None:
    cli = Cli(sqlite_db_url, tmp_path)
    cli.ok("rules", "apply", FAMILY)
    joined = cli.json("clubs", "join", "P-1", "warehouse", "--level", "basic",
                      "--at", "2027-01-04T10:00:00+01:00")
    cli.ok("fees", "pay", str(joined["charge"]["charge_id"]),
           "--at", "2027-01-04T10:00:00+01:00")

    added = cli.ok("clubs", "add-member", "P-1", "warehouse", "S-1",
                   "--at", "2027-01-05T10:00:00+01:00")
    assert "S-1 shares the Big Box Family Membership of P-1" in added.stdout
    full = cli.run("clubs", "add-member", "P-1", "warehouse", "S-2",
                   "--at", "2027-01-05T11:00:00+01:00")
    assert_one_sentence_error(full, "already has 1 household member(s)", "max_members: 1")
    nobody = cli.run("clubs", "add-member", "P-2", "warehouse", "S-1",
                     "--at", "2027-01-05T11:00:00+01:00")
    assert_one_sentence_error(nobody, "there is no member 'P-2'")
    own = cli.run("clubs", "join", "S-1", "warehouse", "--at", "2027-01-06T10:00:00+01:00")
    assert_one_sentence_error(own, "'S-1' shares the membership of 'P-1'",
                              "loyalty clubs remove-member P-1 warehouse S-1")
    removed = cli.json("clubs", "remove-member", "P-1", "warehouse", "S-1",
                       "--at", "2027-02-01T10:00:00+01:00")
    assert removed["message"].startswith("S-1 no longer shares")
    [stint] = cli.json("clubs", "show", "S-1")["households"]
    assert (stint["primary_member_id"], stint["member_id"], stint["added_at"],
            stint["removed_at"]) == ("P-1", "S-1", "2027-01-05T09:00:00+00:00",
                                     "2027-02-01T09:00:00+00:00")
    shown = cli.ok("clubs", "show", "P-1")
    assert "households" in shown.stdout and "S-1" in shown.stdout
    again = cli.run("clubs", "remove-member", "P-1", "warehouse", "S-1",
                    "--at", "2027-02-02T10:00:00+01:00")
    assert_one_sentence_error(again, "'S-1' is not a household member of 'P-1'")
