"""Applying program files, and evaluating each purchase under the version in force."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from loyalty_engine.domain.errors import ProgramApplyError
from loyalty_engine.records.purchase_writer import Award
from loyalty_engine.rules import ProgramFileError
from loyalty_engine.services.programs import (
    BEGINNING_OF_TIME,
    apply_program_files,
    list_versions,
)
from loyalty_engine.services.purchases import record_purchase
from loyalty_engine.store.database import read_transaction
from loyalty_engine.store.tables import LedgerEntry, ProgramVersion, Purchase
from tests.integration.helpers import (
    BEAN_THERE,
    NOW,
    balance,
    count,
    counts,
    event,
    program_yaml,
    write_program,
)

SWITCH = datetime(2026, 3, 1, tzinfo=UTC)


def _ledger_versions(engine: Engine) -> dict[str, tuple[int, int]]:
    """transaction_id -> (points, program version) of each ledger entry."""
    ledger, versions, purchases = (LedgerEntry.__table__, ProgramVersion.__table__,
                                   Purchase.__table__)
    with read_transaction(engine) as conn:
        rows = conn.execute(
            select(purchases.c.transaction_id, ledger.c.points, versions.c.version)
            .join(purchases, purchases.c.id == ledger.c.purchase_id)
            .join(versions, versions.c.id == ledger.c.program_version_id)
        ).all()
    return {t: (p, v) for t, p, v in rows}


def test_first_apply_stores_version_one_in_force_for_all_history(engine: Engine) -> None:
    [result] = apply_program_files(engine, [BEAN_THERE], NOW)
    assert (result.program_id, result.version, result.created) == ("bean-there", 1, True)
    assert result.effective_from == BEGINNING_OF_TIME

    [stored] = list_versions(engine)
    assert (stored.program_id, stored.version, stored.effective_from) == (
        "bean-there", 1, BEGINNING_OF_TIME)
    assert stored.content_hash == result.content_hash

    # A purchase from long before the file was applied still earns under it.
    old = record_purchase(engine, event("T-OLD", occurred_at="1999-05-01T10:00:00+02:00"), NOW)
    assert old.awards == (Award("bean-there", 1, "points-per-euro", 7),)


def test_applying_the_same_content_again_changes_nothing(engine: Engine, tmp_path: Path) -> None:
    [first] = apply_program_files(engine, [BEAN_THERE], NOW)
    before = counts(engine)
    # Same meaning, different layout and comments: still the same content.
    reformatted = write_program(
        tmp_path, "copy.yaml",
        "# a comment\n" + BEAN_THERE.read_text(encoding="utf-8").replace("points_per_unit: 1",
                                                                        "points_per_unit: 1.0"),
    )
    for path in (BEAN_THERE, reformatted):
        [again] = apply_program_files(engine, [path], datetime(2026, 7, 1, tzinfo=UTC))
        assert (again.version, again.created) == (1, False)
        assert again.content_hash == first.content_hash
        assert again.effective_from == BEGINNING_OF_TIME
    assert counts(engine) == before


def test_a_file_applied_by_an_earlier_release_is_not_a_new_version_after_upgrade(
    engine: Engine,
) -> None:
    # A release that adds a setting with a default (redemptions.backdate_hours did) hashes
    # the same file differently; the stored hash below stands for the earlier release's.
    [first] = apply_program_files(engine, [BEAN_THERE], NOW)
    versions = ProgramVersion.__table__
    with engine.begin() as conn:
        conn.execute(versions.update().values(content_hash="0" * 64))
    [again] = apply_program_files(engine, [BEAN_THERE], datetime(2026, 7, 1, tzinfo=UTC))
    assert (again.version, again.created, again.content_hash) == (1, False, "0" * 64)
    assert [v.version for v in list_versions(engine)] == [1]
    assert first.content_hash != "0" * 64


def test_changed_file_creates_version_two(engine: Engine, tmp_path: Path) -> None:
    path = write_program(tmp_path, "shop.yaml", program_yaml(points_per_unit="1"))
    apply_program_files(engine, [path], NOW)
    write_program(tmp_path, "shop.yaml", program_yaml(points_per_unit="2", name="Shop Two"))
    [result] = apply_program_files(engine, [path], NOW, effective_from=SWITCH)
    assert (result.version, result.created, result.effective_from) == (2, True, SWITCH)
    assert [(v.version, v.effective_from) for v in list_versions(engine)] == [
        (1, BEGINNING_OF_TIME), (2, SWITCH)]


def test_changed_file_without_effective_from_takes_effect_now(
    engine: Engine, tmp_path: Path
) -> None:
    path = write_program(tmp_path, "shop.yaml", program_yaml(points_per_unit="1"))
    apply_program_files(engine, [path], NOW)
    write_program(tmp_path, "shop.yaml", program_yaml(points_per_unit="2"))
    [result] = apply_program_files(engine, [path], NOW)
    assert (result.version, result.effective_from) == (2, NOW)


@pytest.mark.parametrize("effective_from", [SWITCH, datetime(2026, 2, 1, tzinfo=UTC)])
def test_new_version_not_later_than_the_latest_is_refused(
    engine: Engine, tmp_path: Path, effective_from: datetime
) -> None:
    path = write_program(tmp_path, "shop.yaml", program_yaml(points_per_unit="1"))
    apply_program_files(engine, [path], NOW)
    write_program(tmp_path, "shop.yaml", program_yaml(points_per_unit="2"))
    apply_program_files(engine, [path], NOW, effective_from=SWITCH)
    write_program(tmp_path, "shop.yaml", program_yaml(points_per_unit="3"))
    before = counts(engine)
    with pytest.raises(ProgramApplyError, match="version 2 of program 'test-shop'"):
        apply_program_files(engine, [path], NOW, effective_from=effective_from)
    assert counts(engine) == before
    assert [v.version for v in list_versions(engine)] == [1, 2]


def test_purchase_earns_under_the_version_in_force_when_it_occurred(
    engine: Engine, tmp_path: Path
) -> None:
    path = write_program(tmp_path, "shop.yaml", program_yaml(points_per_unit="1"))
    apply_program_files(engine, [path], NOW)
    write_program(tmp_path, "shop.yaml", program_yaml(points_per_unit="2"))
    apply_program_files(engine, [path], NOW, effective_from=SWITCH)

    cases = {
        # transaction: (occurred_at, expected points, expected version); each spends 7.20
        "T-BEFORE": ("2026-02-28T23:59:59+00:00", 7, 1),
        # 00:30 in Amsterdam on 1 March is still 28 February in UTC: version 1.
        "T-OFFSET": ("2026-03-01T00:30:00+01:00", 7, 1),
        "T-AT": ("2026-03-01T00:00:00+00:00", 14, 2),
        "T-AFTER": ("2026-04-15T10:00:00+02:00", 14, 2),
    }
    for tx, (occurred_at, points, version) in cases.items():
        outcome = record_purchase(engine, event(tx, occurred_at=occurred_at), NOW)
        assert outcome.awards == (Award("test-shop", version, "per-unit", points),), tx
    assert _ledger_versions(engine) == {tx: (p, v) for tx, (_, p, v) in cases.items()}
    assert balance(engine, "M-1", "test-shop") == 7 + 7 + 14 + 14


def test_purchase_before_a_first_version_with_a_start_date_earns_nothing(
    engine: Engine, tmp_path: Path
) -> None:
    path = write_program(tmp_path, "shop.yaml", program_yaml())
    [result] = apply_program_files(engine, [path], NOW, effective_from=SWITCH)
    assert result.effective_from == SWITCH
    early = record_purchase(engine, event("T-EARLY", occurred_at="2026-02-01T10:00:00+00:00"),
                            NOW)
    late = record_purchase(engine, event("T-LATE", occurred_at="2026-03-02T10:00:00+00:00"), NOW)
    assert early.awards == ()
    assert late.points == 7
    assert balance(engine, "M-1", "test-shop") == 7


def test_invalid_file_among_several_stores_nothing(engine: Engine, tmp_path: Path) -> None:
    good = write_program(tmp_path, "a-good.yaml", program_yaml("good-shop"))
    bad = write_program(tmp_path, "b-bad.yaml", program_yaml("bad-shop", currency="EURO"))
    with pytest.raises(ProgramFileError) as info:
        apply_program_files(engine, [BEAN_THERE, good, bad], NOW)
    assert any(p.path == str(bad) for p in info.value.problems)
    assert all(p.path == str(bad) for p in info.value.problems)
    assert count(engine, "programs") == 0
    assert count(engine, "program_versions") == 0

    # A directory holding the bad file is refused as a whole too.
    with pytest.raises(ProgramFileError):
        apply_program_files(engine, [tmp_path], NOW)
    assert count(engine, "program_versions") == 0


def test_one_refused_version_rolls_back_the_other_files(engine: Engine, tmp_path: Path) -> None:
    a = write_program(tmp_path, "a.yaml", program_yaml("shop-a"))
    b = write_program(tmp_path, "b.yaml", program_yaml("shop-b"))
    apply_program_files(engine, [a, b], NOW)
    write_program(tmp_path, "b.yaml", program_yaml("shop-b", points_per_unit="2"))
    apply_program_files(engine, [b], NOW, effective_from=datetime(2026, 5, 1, tzinfo=UTC))

    write_program(tmp_path, "a.yaml", program_yaml("shop-a", points_per_unit="5"))
    write_program(tmp_path, "b.yaml", program_yaml("shop-b", points_per_unit="5"))
    with pytest.raises(ProgramApplyError, match="shop-b"):
        apply_program_files(engine, [a, b], NOW, effective_from=datetime(2026, 4, 1, tzinfo=UTC))
    assert [(v.program_id, v.version) for v in list_versions(engine)] == [
        ("shop-a", 1), ("shop-b", 1), ("shop-b", 2)]


def test_same_program_in_two_files_is_refused(engine: Engine, tmp_path: Path) -> None:
    a = write_program(tmp_path, "a.yaml", program_yaml("shop"))
    b = write_program(tmp_path, "b.yaml", program_yaml("shop", points_per_unit="2"))
    with pytest.raises(ProgramFileError, match="also defined in"):
        apply_program_files(engine, [a, b], NOW)
    assert count(engine, "program_versions") == 0


def test_reverting_a_file_creates_a_new_version_with_the_old_content(
    engine: Engine, tmp_path: Path
) -> None:
    path = write_program(tmp_path, "shop.yaml", program_yaml(points_per_unit="1"))
    [v1] = apply_program_files(engine, [path], NOW)
    write_program(tmp_path, "shop.yaml", program_yaml(points_per_unit="2"))
    apply_program_files(engine, [path], NOW, effective_from=SWITCH)
    write_program(tmp_path, "shop.yaml", program_yaml(points_per_unit="1"))
    later = datetime(2026, 4, 1, tzinfo=UTC)
    [v3] = apply_program_files(engine, [path], NOW, effective_from=later)
    assert (v3.version, v3.created, v3.content_hash) == (3, True, v1.content_hash)
    outcome = record_purchase(engine, event("T-1", occurred_at="2026-04-02T10:00:00+00:00"), NOW)
    assert outcome.awards == (Award("test-shop", 3, "per-unit", 7),)
