"""A purchase refunded in full counts nowhere, on both databases: two programs alike in all
but their stores see the same members buy the same things; one of them also sees purchases
that were then refunded in full. Every relationship measure — the member figures, RFM
scores and segments, retention, cohorts, the lapse verdicts and the CLV models' inputs —
must come out the same for both (points too: what a refund takes back is taken back)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from loyalty_engine.records.clv_inputs import clv_inputs
from loyalty_engine.services.analytics_members import member_summaries, rfm_scores
from loyalty_engine.services.analytics_retention import (
    cohort_report,
    lapsed_members,
    retention_report,
)
from loyalty_engine.services.programs import load_catalog
from loyalty_engine.store.database import read_transaction

from .walk import apply_text, buy, refund

PROGRAM = """\
program: {pid}
name: {pid}
currency: EUR
timezone: Europe/Amsterdam
enrolment: open
stores: [{prefix}-*]
exclude:
  categories: [tobacco]
rules:
  - id: per-euro
    kind: points_per_spend
    points_per_unit: "1"
"""
START = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
AS_OF = datetime(2026, 1, 1, tzinfo=UTC)
_serial = itertools.count(1)

# A purchase: (member number, day offset, euros, with a tobacco line); refunded ones too.
purchase = st.tuples(st.integers(0, 3), st.integers(0, 300), st.integers(1, 60), st.booleans())


def _post(engine: Engine, store: str, member: str, day: int, euros: int,
          tobacco: bool) -> str:
    transaction = f"T{next(_serial)}"
    items = [("LATTE", "coffee", "1", f"{euros}.00")]
    if tobacco:
        items.append(("CIGS", "tobacco", "1", "7.00"))
    when = (START + timedelta(days=day, hours=day % 9)).isoformat()
    buy(engine, transaction, when, items, member=member, store=store)
    return transaction


def _measures(engine: Engine, program_id: str, members: set[str]) -> dict[str, Any]:
    def mine(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in rows if r["member_id"] in members]

    summaries = member_summaries(engine, program_id, AS_OF, sort="first").as_json()
    scores = rfm_scores(engine, program_id, AS_OF)
    with read_transaction(engine) as conn:
        program = load_catalog(conn).versions(program_id)[-1].program
        inputs = clv_inputs(conn, program, AS_OF, AS_OF)
    clv = {m: (float(inputs.x[i]), float(inputs.t_x[i]), int(inputs.spend_minor[i]),
               int(inputs.repeat_spend_minor[i]))
           for i, m in enumerate(inputs.member_ids) if m in members}
    retention = retention_report(engine, program_id, AS_OF, period="quarter", periods=4)
    lapsed = lapsed_members(engine, program_id, AS_OF).as_json()
    return {
        "members": mine(summaries["members"]),
        "scores": {m: (row.r, row.f, row.m, row.segment) for m, row in scores.items()
                   if m in members},
        "clv": clv,
        "retention": [(p["period"], p["at_start"], p["at_end"], p["new"])
                      for p in retention.as_json()["periods"]],
        "cohorts": cohort_report(engine, program_id, AS_OF, months=12).as_json()["cohorts"],
        "lapsed": (lapsed["members"], mine(lapsed["lapsed"])),
    }


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(kept=st.lists(purchase, min_size=1, max_size=8),
       refunded=st.lists(purchase, min_size=1, max_size=4))
def test_a_purchase_refunded_in_full_counts_nowhere(
    engine: Engine, tmp_path: Path, kept: list[tuple[int, int, int, bool]],
    refunded: list[tuple[int, int, int, bool]],
) -> None:
    run = next(_serial)
    plain, busy = f"plain-{run}", f"busy-{run}"
    apply_text(engine, tmp_path, PROGRAM.format(pid=plain, prefix=f"P{run}"))
    apply_text(engine, tmp_path, PROGRAM.format(pid=busy, prefix=f"B{run}"))
    members = {f"M{run}-{n}" for n in range(4)}  # refunded-only members must not show
    for n, day, euros, tobacco in kept:
        _post(engine, f"P{run}-01", f"M{run}-{n}", day, euros, tobacco)
        _post(engine, f"B{run}-01", f"M{run}-{n}", day, euros, tobacco)
    for n, day, euros, tobacco in refunded:
        member = f"M{run}-{n}"
        transaction = _post(engine, f"B{run}-01", member, day, euros, tobacco)
        total = euros + (7 if tobacco else 0)
        when = (START + timedelta(days=day + 1, hours=12)).isoformat()
        refund(engine, f"R{transaction}", transaction, when, f"{total}.00",
               store=f"B{run}-01")
    for name in ("members", "scores", "clv", "retention", "cohorts", "lapsed"):
        assert _measures(engine, busy, members)[name] == \
            _measures(engine, plain, members)[name], name
