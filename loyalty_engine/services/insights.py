"""A member's insights at a glance, per program, for POS and CRM screens: the segment and RFM
scores of the snapshot in force, CLV and P(alive) as that snapshot stored them, tenure, share
of wallet and loyalty type."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from loyalty_engine.domain.money import currency_exponent, format_minor
from loyalty_engine.records.insights import enrolled_by
from loyalty_engine.records.member_figures import snapshots_in_force
from loyalty_engine.services.members import require_member
from loyalty_engine.services.programs import load_catalog
from loyalty_engine.services.wallet import member_loyalty
from loyalty_engine.store.unit_of_work import read_use_case


@read_use_case
def member_insights(conn: Connection, member_id: str, as_of: datetime,
                    hidden: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Per program the member is enrolled in (none of the `hidden` ones), as of an instant:
    the latest snapshot taken by then (segment, scores, the figures they came from, CLV and
    P(alive) when the model could be fitted), tenure in days from the enrolment, and the
    share of wallet and loyalty type. Programs are never added together."""
    require_member(conn, member_id)
    enrolled = {pid: at for pid, at in enrolled_by(conn, member_id, as_of).items()
                if pid not in hidden}
    snapshots = {row.program_id: row
                 for row in snapshots_in_force(conn, as_of, members=[member_id])}
    catalog = load_catalog(conn)
    programs = []
    for program_id, enrolled_at in enrolled.items():
        found = catalog.in_force(program_id, as_of) if program_id in catalog.program_ids \
            else None
        if found is None:
            continue  # enrolled before the program's first version took effect
        program = found.program
        zone = program.timezone
        snapshot = snapshots.get(program_id)
        loyalty = member_loyalty(conn, program_id, member_id, as_of,
                                 snapshot.f if snapshot is not None else 0)
        exponent = currency_exponent(program.currency)
        programs.append({
            "program_id": program_id,
            "currency": program.currency,
            "segment": snapshot.segment if snapshot is not None else None,
            "snapshot_date": snapshot.as_of_date.isoformat() if snapshot is not None else None,
            "rfm": None if snapshot is None else {
                "r": snapshot.r, "f": snapshot.f, "m": snapshot.m,
                "recency_days": snapshot.recency_days, "frequency": snapshot.frequency,
                "monetary": format_minor(snapshot.monetary_minor, exponent),
                "monetary_minor": snapshot.monetary_minor},
            "clv": None if snapshot is None or snapshot.clv_minor is None
            else format_minor(snapshot.clv_minor, exponent),
            "clv_minor": None if snapshot is None else snapshot.clv_minor,
            "p_alive": None if snapshot is None else snapshot.p_alive,
            "tenure_days": max(0, (as_of.astimezone(zone).date()
                                   - enrolled_at.astimezone(zone).date()).days),
            "share_of_wallet": None if loyalty is None or loyalty.wallet_share is None
            else float(loyalty.wallet_share),
            "nps": None if loyalty is None else loyalty.nps,
            "commitment": None if loyalty is None else loyalty.commitment,
            "loyalty_type": None if loyalty is None else loyalty.type,
        })
    return {"member_id": member_id, "as_of": as_of.isoformat(), "programs": programs}
