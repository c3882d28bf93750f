"""The wallet and survey imports on both databases: all or nothing, every bad line named
by its number, nothing written on any error; a wallet re-import replaces a total, a survey
answer given again is one answer."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from loyalty_engine.domain.errors import ImportFileError
from loyalty_engine.services.enrolment import enrol_member
from loyalty_engine.services.privacy import erase_member, export_member
from loyalty_engine.services.surveys import import_surveys
from loyalty_engine.services.wallet import import_wallet
from loyalty_engine.store import tables
from loyalty_engine.store.database import read_transaction

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
WALLET_HEADER = "member_id,category,period,amount,currency"
SURVEY_HEADER = "member_id,kind,score,answered_at"


@pytest.fixture
def members(engine: Engine) -> Engine:
    for member_id in ("M-1", "M-2", "M-3"):
        enrol_member(engine, member_id, {}, {}, NOW, NOW)
    return engine


def _file(tmp_path: Path, name: str, header: str, rows: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def _wallets(engine: Engine) -> list[tuple]:
    t = tables.wallet_totals
    with read_transaction(engine) as conn:
        return [tuple(r) for r in conn.execute(
            select(t.c.member_id, t.c.category, t.c.period, t.c.currency, t.c.amount_minor,
                   t.c.source).order_by(t.c.member_id, t.c.category, t.c.period))]


def _answers(engine: Engine) -> list[tuple]:
    t = tables.member_surveys
    with read_transaction(engine) as conn:
        return [(r.member_id, r.kind, r.score, r.answered_at) for r in conn.execute(
            select(t).order_by(t.c.member_id, t.c.kind, t.c.answered_at))]


# --- wallet -------------------------------------------------------------------------------

def test_a_wallet_file_is_stored_in_minor_units_of_each_currency(members: Engine,
                                                                 tmp_path: Path) -> None:
    path = _file(tmp_path, "wallet.csv", WALLET_HEADER, [
        "M-1,coffee,2026-Q1,120.50,EUR",
        "M-1,tea,2026,40,EUR",
        "M-2,coffee,2026-03,15000,JPY",
        "M-3,fuel,2026-Q2,12.345,BHD",
    ])
    report = import_wallet(members, path, NOW)
    assert (report.committed, report.read, report.added, report.replaced,
            report.errors) == (True, 4, 4, 0, [])
    assert _wallets(members) == [
        ("M-1", "coffee", "2026-Q1", "EUR", 12050, "file:wallet.csv"),
        ("M-1", "tea", "2026", "EUR", 4000, "file:wallet.csv"),
        ("M-2", "coffee", "2026-03", "JPY", 15000, "file:wallet.csv"),
        ("M-3", "fuel", "2026-Q2", "BHD", 12345, "file:wallet.csv"),
    ]


def test_a_re_import_replaces_the_amount_of_the_same_key(members: Engine,
                                                         tmp_path: Path) -> None:
    import_wallet(members, _file(tmp_path, "first.csv", WALLET_HEADER, [
        "M-1,coffee,2026-Q1,120.50,EUR", "M-1,tea,2026,40,EUR"]), NOW)
    report = import_wallet(members, _file(tmp_path, "second.csv", WALLET_HEADER, [
        "M-1,coffee,2026-Q1,99.00,EUR",   # corrected
        "M-1,tea,2026,40.00,EUR",          # the same amount
        "M-2,tea,2026,10,EUR",             # new
    ]), NOW)
    assert (report.added, report.replaced, report.unchanged) == (1, 1, 1)
    assert _wallets(members) == [
        ("M-1", "coffee", "2026-Q1", "EUR", 9900, "file:second.csv"),
        ("M-1", "tea", "2026", "EUR", 4000, "file:first.csv"),
        ("M-2", "tea", "2026", "EUR", 1000, "file:second.csv"),
    ]


def test_bad_wallet_lines_are_each_named_and_nothing_is_written(members: Engine,
                                                                tmp_path: Path) -> None:
    path = _file(tmp_path, "wallet.csv", WALLET_HEADER, [
        "M-1,coffee,2026-Q1,120.50,EUR",     # 2: good
        "M-9,coffee,2026-Q1,10,EUR",          # 3: unknown member
        "M-2,coffee,2026-Q1,-5,EUR",          # 4: negative
        "M-2,tea,2026-Q5,5,EUR",              # 5: bad period
        "M-2,tea,2026,5.001,EUR",             # 6: too many decimals
        "M-2,tea,2026,5,EURO",                # 7: not a currency
        "M-1,coffee,2026-Q1,1,EUR",           # 8: the key of line 2 again
        "M-3,tea,2026",                       # 9: too few columns
        "",
        "M-3,tea,2026,abc,EUR",               # 11: not a number
        "M-3,,2026,1,EUR",                    # 12: no category
    ])
    report = import_wallet(members, path, NOW)
    assert not report.committed
    assert [(e.line, e.reason) for e in report.errors] == [
        (3, "member_id: no member with id 'M-9' (enrol them first, or correct the id)"),
        (4, "amount must not be negative (got -5); a wallet total is what the member "
            "spends in all"),
        (5, "period: period 2026-Q5: a quarter is Q1 to Q4"),
        (6, "amount 5.001 has more decimals than EUR allows (2)"),
        (7, "currency: 'EURO' is not an ISO 4217 currency code (three capital letters)"),
        (8, "member 'M-1', category 'coffee', period 2026-Q1 is already given at line 2; "
            "give each total once"),
        (9, "expected 5 columns, found 3"),
        (11, "amount 'abc' is not a decimal number"),
        (12, "category: String should have at least 1 character"),
    ]
    assert _wallets(members) == []


def test_an_erased_member_takes_no_wallet_total(members: Engine, tmp_path: Path) -> None:
    erase_member(members, "M-3", "test", "asked", NOW)
    report = import_wallet(members, _file(tmp_path, "w.csv", WALLET_HEADER, [
        "M-3,tea,2026,5,EUR"]), NOW)
    assert [(e.line, e.reason) for e in report.errors] == [
        (2, "member_id: member 'M-3' was erased and takes no new personal data")]
    assert _wallets(members) == []


def test_erasure_removes_a_members_attitudes_and_outside_spend_and_export_shows_them(
        members: Engine, tmp_path: Path) -> None:
    # Survey answers (attitudes) and wallet totals (what they spend elsewhere) are personal
    # data: the export holds them, and erasure removes them (M-1's only; M-2's stay).
    import_wallet(members, _file(tmp_path, "w.csv", WALLET_HEADER, [
        "M-1,coffee,2026-Q1,100.00,EUR", "M-1,tea,2026-Q1,20.00,EUR",
        "M-2,coffee,2026-Q1,40.00,EUR"]), NOW)
    import_surveys(members, _file(tmp_path, "s.csv", SURVEY_HEADER, [
        "M-1,nps,9,2026-03-01T10:00:00+01:00", "M-2,commitment,6,2026-03-01T10:00:00+01:00"]),
        NOW)
    exported = export_member(members, "M-1", NOW)["tables"]
    assert [(r["category"], r["amount_minor"]) for r in exported["wallet_totals"]] == [
        ("coffee", 10000), ("tea", 2000)]
    assert [(r["kind"], r["score"]) for r in exported["member_surveys"]] == [("nps", 9)]
    erased = erase_member(members, "M-1", "test", "asked", NOW)
    assert erased["removed"]["survey_answers"] == 1
    assert erased["removed"]["wallet_totals"] == 2
    assert [w[0] for w in _wallets(members)] == ["M-2"]
    with read_transaction(members) as conn:
        assert [r.member_id for r in conn.execute(select(tables.member_surveys))] == ["M-2"]
    after = export_member(members, "M-1", NOW)["tables"]
    assert after["wallet_totals"] == [] and after["member_surveys"] == []


@pytest.mark.parametrize(("content", "message"), [
    ("member_id,category,period,amount\nM-1,tea,2026,5\n",
     ":1: missing column(s): currency (expected: member_id,category,period,currency,amount)"),
    ("member_id,category,period,amount,currency,note\n",
     ":1: unknown column(s): note"),
    ("", ": the file is empty"),
    (WALLET_HEADER + "\n\n", ": the file has a header but no rows"),
])
def test_a_file_that_cannot_be_read_as_wallet_totals(members: Engine, tmp_path: Path,
                                                     content: str, message: str) -> None:
    path = tmp_path / "w.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ImportFileError) as raised:
        import_wallet(members, path, NOW)
    assert str(raised.value).startswith(str(path) + message)
    assert _wallets(members) == []


def test_a_line_that_is_not_utf8_is_named(members: Engine, tmp_path: Path) -> None:
    path = tmp_path / "w.csv"
    path.write_bytes(b"\xef\xbb\xbf" + WALLET_HEADER.encode() + b"\nM-1,tea,2026,5,EUR\n"
                     b"M-2,t\xe9,2026,5,EUR\n")
    with pytest.raises(ImportFileError, match=r"w\.csv:3: the file is not UTF-8 text"):
        import_wallet(members, path, NOW)
    assert _wallets(members) == []


# --- surveys ------------------------------------------------------------------------------

def test_a_survey_file_is_stored_and_an_answer_given_twice_is_one(members: Engine,
                                                                  tmp_path: Path) -> None:
    path = _file(tmp_path, "surveys.csv", SURVEY_HEADER, [
        "M-1,nps,9,2026-03-01T10:00:00+01:00",
        "M-1,nps,9,2026-03-01T09:00:00Z",         # the same instant: the same answer
        "M-1,commitment,6,2026-03-01T10:00:00+01:00",
        "M-2,nps,0,2026-04-02T08:30:00+02:00",
    ])
    report = import_surveys(members, path, NOW)
    assert (report.committed, report.read, report.recorded, report.already) == (
        True, 4, 3, 1)
    assert _answers(members) == [
        ("M-1", "commitment", 6, datetime(2026, 3, 1, 9, 0, tzinfo=UTC)),
        ("M-1", "nps", 9, datetime(2026, 3, 1, 9, 0, tzinfo=UTC)),
        ("M-2", "nps", 0, datetime(2026, 4, 2, 6, 30, tzinfo=UTC)),
    ]
    again = import_surveys(members, path, NOW)
    assert (again.committed, again.recorded, again.already) == (True, 0, 4)
    assert len(_answers(members)) == 3


def test_bad_survey_lines_are_each_named_and_nothing_is_written(members: Engine,
                                                                tmp_path: Path) -> None:
    import_surveys(members, _file(tmp_path, "first.csv", SURVEY_HEADER, [
        "M-3,nps,7,2026-02-01T10:00:00+01:00"]), NOW)
    path = _file(tmp_path, "surveys.csv", SURVEY_HEADER, [
        "M-1,nps,9,2026-03-01T10:00:00+01:00",     # 2: good
        "M-9,nps,9,2026-03-01T10:00:00+01:00",     # 3: unknown member
        "M-1,nps,11,2026-03-02T10:00:00+01:00",    # 4: out of range
        "M-1,commitment,0,2026-03-02T10:00:00+01:00",  # 5: out of range
        "M-1,csat,3,2026-03-02T10:00:00+01:00",    # 6: unknown kind
        "M-1,nps,8.5,2026-03-02T10:00:00+01:00",   # 7: not whole
        "M-1,nps,8,2026-03-02T10:00:00",           # 8: no offset
        "M-1,nps,8,2026-07-01T10:00:00+02:00",     # 9: in the future
        "M-1,nps,3,2026-03-01T09:00:00Z",          # 10: line 2's answer, another score
        "M-3,nps,8,2026-02-01T10:00:00+01:00",     # 11: stored with score 7
    ])
    report = import_surveys(members, path, NOW)
    assert not report.committed
    assert [(e.line, e.reason) for e in report.errors] == [
        (3, "member_id: no member with id 'M-9' (enrol them first, or correct the id)"),
        (4, "score: nps scores are 0 to 10, not 11"),
        (5, "score: commitment scores are 1 to 7, not 0"),
        (6, "kind: Input should be 'nps' or 'commitment'"),
        (7, "score: must be a whole number, not '8.5'"),
        (8, "answered_at: needs a UTC offset, e.g. 2026-03-01T09:30:00+01:00 (a time "
            "without one is ambiguous)"),
        (9, "answered_at: 2026-07-01T10:00:00+02:00 is in the future (now is "
            "2026-06-01T12:00:00+00:00); check the date and its offset"),
        (10, "line 2 gives the same answer (member, kind, answered_at) with score 9, not 3"),
        (11, "member 'M-3' already has an nps answer at 2026-02-01T09:00:00+00:00 with "
             "score 7, not 8; an answer cannot be changed by sending it again"),
    ]
    assert [a[0] for a in _answers(members)] == ["M-3"]


def test_many_totals_in_one_file(members: Engine, tmp_path: Path) -> None:
    # More rows than a few: the batched insert path (arrays on PostgreSQL).
    rows = [f"M-{1 + n % 3},cat-{n},2026-{1 + n % 12:02d},{n}.25,EUR" for n in range(40)]
    report = import_wallet(members, _file(tmp_path, "many.csv", WALLET_HEADER, rows), NOW)
    assert (report.committed, report.added) == (True, 40)
    stored = _wallets(members)
    assert len(stored) == 40
    assert sum(amount for *_, amount, _ in stored) == sum(n * 100 + 25 for n in range(40))
    changed = [row.replace(".25,", ".50,") if i % 2 else row for i, row in enumerate(rows)]
    again = import_wallet(members, _file(tmp_path, "again.csv", WALLET_HEADER, changed), NOW)
    assert (again.added, again.replaced, again.unchanged) == (0, 20, 20)
    assert sum(amount for *_, amount, _ in _wallets(members)) == sum(
        n * 100 + (50 if n % 2 else 25) for n in range(40))
