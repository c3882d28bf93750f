"""`loyalty demo`: a seeded year on a fresh SQLite file, then the usual commands on it."""

from __future__ import annotations

import re
from pathlib import Path

from tests.e2e.cli import assert_one_sentence_error, ok, run


def test_demo_on_sqlite(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'demo.db'}"

    demo = ok("demo", "--members", "40", "--database", database,
              "--as-of", "2026-06-01T00:00:00+00:00", cwd=tmp_path)
    summary = demo.out_flat
    assert "loyalty-engine demo on sqlite:///" in summary, str(demo)
    assert "programs applied: bean-there v1, big-box v1, campus-books v1, fresh-market v1, " \
        "glow-beauty v1; year ending 2026-06-01T00:00:00+00:00, seed 42" in summary, str(demo)
    # The beauty shoppers' tiers were reviewed at the turn of the year the demo spans.
    tiers = re.search(r"Glow Beauty tiers: (.*?); the tier review \(days: 2026-01-01\) "
                      r"judged (\d+) member\(s\) in [\d.]+ s\.", summary)
    assert tiers, str(demo)
    counts = dict(part.rsplit(" ", 1) for part in tiers.group(1).split(", "))
    assert set(counts) <= {"blush", "glow", "radiant"} and int(tiers.group(2)) > 0
    assert "40 members joined the Bean Club with their first purchase." in summary
    # What the engine knows about the members: every one of the 40 in a segment (the year's
    # regulars, the ones who drifted, the ones who stopped), a retention rate, a base value.
    mix = re.search(r"Bean There's members by RFM segment at the year's end: (.*?)\.",
                    summary)
    assert mix, str(demo)
    segments = {name: int(n) for name, n in
                (part.rsplit(" ", 1) for part in mix.group(1).split(", "))}
    assert sum(segments.values()) == 40 and {"champions", "at_risk"} <= set(segments)
    assert set(segments) & {"lost", "hibernating"}
    retention = re.search(r"Retention in 2026-Q1 \(.*?\): (\d+\.\d)%\.", summary)
    assert retention and 0 < float(retention.group(1)) <= 100, str(demo)
    assert re.search(r"Customer base value \(the sum of members' lifetime values, "
                     r"(bgnbd\+gamma_gamma|retention)\): \d+\.\d\d EUR\.", summary), str(demo)
    stored = re.search(r"(\d+) purchases stored \((\d+) anonymous, which earn nothing\); "
                       r"points in the ledger: bean-there (\d+), glow-beauty (\d+)\.", summary)
    assert stored, str(demo)
    purchases, anonymous, coffee, beauty = (int(g) for g in stored.groups())
    assert purchases > anonymous > 0
    assert coffee > 0 and beauty > 0
    assert "Posting the whole year again changed 0 purchases" in summary, str(demo)
    top = re.search(r"Next: \S*loyalty --database (\S+) members explain (M\d+)", summary)
    assert top, str(demo)
    assert top.group(1) == database
    # The top members are ranked per program; the first is the coffee program's.
    best = re.search(rf"│ bean-there\s+│ {top.group(2)}\s+│ (\d+)", summary)
    assert best, str(demo)

    check = ok("db", "check", "--json", database=database, cwd=tmp_path).json()
    # Every member has a coffee balance; the beauty shoppers one more.
    assert check["mismatches"] == [] and check["balances_checked"] > 40

    # The command the demo suggests works and explains that member's coffee balance.
    explained = ok("--database", top.group(1), "members", "explain", top.group(2), cwd=tmp_path)
    footer = re.search(r"bean-there: (\d+) spendable \+ (\d+) pending = (\d+), the sum of its",
                       explained.out_flat)
    assert footer and footer.group(1) == best.group(1), str(explained)
    refunds = re.search(r"(\d+) purchases refunded \(in full or in part\), points taken back "
                        r"pro rata: bean-there (\d+), glow-beauty (\d+); (\d+) free-coffee "
                        r"vouchers", summary)
    assert refunds and int(refunds.group(1)) > 0, str(demo)


def test_demo_never_replaces_a_database_it_did_not_create(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'books.db'}"
    ok("db", "upgrade", database=database)
    refused = run("demo", "--members", "5", "--database", database, cwd=tmp_path)
    assert_one_sentence_error(refused, "--reset")
    assert ok("db", "current", "--json", database=database).json()["up_to_date"]
    ok("demo", "--members", "5", "--database", database, "--reset", cwd=tmp_path)
    ok("demo", "--members", "5", "--database", database, cwd=tmp_path)  # now it is the demo's
