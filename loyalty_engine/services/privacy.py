"""A member's personal data: the GDPR export (every row held about them) and erasure
(personal data removed, the books kept exact under the member's pseudonymous id)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, and_, delete, func, select

from loyalty_engine.domain.errors import NotFoundError
from loyalty_engine.records.audit import record_audit
from loyalty_engine.store import tables
from loyalty_engine.store.locks import lock_member
from loyalty_engine.store.unit_of_work import read_use_case, write_use_case

_members = tables.members
_consents = tables.member_consents
_verifications = tables.group_verifications
_responses = tables.api_responses
_surveys = tables.member_surveys
_wallet = tables.wallet_totals
_SEP = "\x1f"  # as api/writes.py joins the parts of an idempotency key
ERASED_EVIDENCE = "(erased)"


def member_tables() -> list[Table]:
    """Every table holding rows of a member: those with a member_id column, by name."""
    return [t for name, t in sorted(tables.metadata.tables.items()) if "member_id" in t.c]


def _enrolment_responses(member_id: str) -> Any:
    """The stored HTTP responses of a member's enrolments (api/writes.py keys them by the
    member id and the request)."""
    return and_(_responses.c.endpoint == "members",
                func.substr(_responses.c.idem_key, 1, len(member_id) + 1) == member_id + _SEP)


@read_use_case
def export_member(conn: Connection, member_id: str, now: datetime) -> dict[str, Any]:
    """Everything held about a member as plain rows, table by table (one query each): the
    member row (attributes), consents, enrolments, purchases and their lines, refunds,
    redemptions, the ledger, lots, balances, vouchers, charges, events, audit records, and
    the stored HTTP answers to their enrolments."""
    if conn.execute(select(_members.c.member_id).where(
            _members.c.member_id == member_id)).first() is None:
        raise NotFoundError(f"there is no member {member_id!r}")
    data: dict[str, list[dict[str, Any]]] = {}
    for table in member_tables():
        order = list(table.primary_key.columns)
        data[table.name] = [dict(r._mapping) for r in conn.execute(
            select(table).where(table.c.member_id == member_id).order_by(*order))]
    # Stored answers to their enrolments repeat the attributes (keyed by the member).
    data["api_responses"] = [dict(r._mapping) for r in conn.execute(
        select(_responses).where(_enrolment_responses(member_id))
        .order_by(_responses.c.idem_key))]
    return {"member_id": member_id, "exported_at": now, "tables": data}


@write_use_case
def erase_member(conn: Connection, member_id: str, actor: str, reason: str,
                 now: datetime) -> dict[str, Any]:
    """Erase a member's personal data in one transaction, with an audit record.

    Removed: the attributes, every consent, the evidence of group verifications, and the
    stored HTTP responses of their enrolments (which repeat the attributes). Kept: the
    ledger, lots, balances, purchases, refunds, redemptions, vouchers and charges, under the
    member id, which the POS chose and now only pseudonymously names an account whose
    person is unknown here; balances and program totals stay exact. The id then takes no
    enrolment or new personal data (MemberErasedError). Erasing twice changes nothing and
    returns the first erasure."""
    return _erase(conn, member_id, actor, reason, now)


def _erase(conn: Connection, member_id: str, actor: str, reason: str,
           now: datetime) -> dict[str, Any]:
    if not lock_member(conn, member_id):
        raise NotFoundError(f"there is no member {member_id!r}")
    erased_at = conn.execute(select(_members.c.erased_at).where(
        _members.c.member_id == member_id)).scalar()
    if erased_at is not None:
        return {"member_id": member_id, "erased_at": erased_at, "already_erased": True,
                "removed": {}}
    attributes = conn.execute(select(_members.c.attributes).where(
        _members.c.member_id == member_id)).scalar() or {}
    conn.execute(_members.update().where(_members.c.member_id == member_id)
                 .values(attributes={}, erased_at=now))
    consents = conn.execute(delete(_consents).where(_consents.c.member_id == member_id)
                            ).rowcount
    evidence = conn.execute(_verifications.update().where(
        _verifications.c.member_id == member_id,
        _verifications.c.evidence != ERASED_EVIDENCE).values(evidence=ERASED_EVIDENCE)
    ).rowcount
    responses = conn.execute(delete(_responses).where(_enrolment_responses(member_id))
                             ).rowcount
    # Attitudes (NPS, commitment) and spend elsewhere (wallet totals) are personal data of
    # the member's own, not the program's books: they go.
    surveys = conn.execute(delete(_surveys).where(_surveys.c.member_id == member_id)
                           ).rowcount
    wallet = conn.execute(delete(_wallet).where(_wallet.c.member_id == member_id)).rowcount
    removed = {"attributes": sorted(attributes), "consents": consents,
               "verification_evidence": evidence, "stored_responses": responses,
               "survey_answers": surveys, "wallet_totals": wallet}
    # The audit record names what kinds of data went, never their values.
    record_audit(conn, now, actor, "member_erased", member_id, None, reason,
                 {"removed": removed})
    return {"member_id": member_id, "erased_at": now, "already_erased": False,
            "removed": removed}
