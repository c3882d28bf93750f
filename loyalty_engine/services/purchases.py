"""Recording a purchase: exactly once per (store_id, transaction_id), through the set-based
`records/purchase_writer.PurchaseWriter` on the caller's Connection."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select

from loyalty_engine.domain.errors import PurchaseConflictError, PurchaseRejectedError
from loyalty_engine.domain.events import PurchaseEvent
from loyalty_engine.records.purchase_writer import (
    Award,
    Prefetched,
    PurchaseOutcome,
    PurchaseWriter,
)
from loyalty_engine.services.programs import load_catalog
from loyalty_engine.store import tables
from loyalty_engine.store.unit_of_work import write_use_case

_ledger = tables.ledger_entries


@write_use_case
def record_purchase(conn: Connection, event: PurchaseEvent, now: datetime,
                    known: Prefetched | None = None) -> PurchaseOutcome:
    """Record one purchase; the same event again returns the original outcome unchanged.

    `known` is what the caller already looked up in this transaction (`prefetches`): the
    stored purchase of the key, the member and their enrolments, then not asked again.

    Raises PurchaseConflictError when the key was recorded with a different body and
    PurchaseRejectedError when the purchase cannot be accepted.
    """
    purchase = event.to_purchase()
    writer = PurchaseWriter(conn, load_catalog(conn), now)
    if known is not None:
        writer.know(known)
    result = writer.write([(0, purchase)],
                          stored=None if known is None else known.stored_purchases())
    if result.rejections:
        rejection = result.rejections[0]
        if rejection.conflict:
            raise PurchaseConflictError(purchase.store_id, purchase.transaction_id)
        raise PurchaseRejectedError(rejection.reason)
    outcome = result.outcomes[0][1]
    if outcome.replayed:
        outcome = _with_stored_awards(conn, outcome)
    return outcome


def _with_stored_awards(conn: Connection, outcome: PurchaseOutcome) -> PurchaseOutcome:
    versions = tables.program_versions
    rows = conn.execute(
        select(_ledger.c.program_id, versions.c.version, _ledger.c.rule_id, _ledger.c.points)
        .join(versions, versions.c.id == _ledger.c.program_version_id)
        .where(_ledger.c.purchase_id == outcome.purchase_id, _ledger.c.kind == "earn")
        .order_by(_ledger.c.id)
    ).all()
    awards = tuple(Award(r.program_id, r.version, r.rule_id, r.points) for r in rows)
    return PurchaseOutcome(outcome.purchase_id, outcome.store_id, outcome.transaction_id,
                           outcome.member_id, replayed=True, awards=awards)
