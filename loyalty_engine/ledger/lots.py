"""What a lot is at an instant, said once: held pending, or expired by then (whether or not
the expire step has recorded it). The spends, the steps, the balance reads and the check
all ask these, as SQL or of a loaded row."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, or_

from loyalty_engine.store import tables

_lots = tables.point_lots

# A lot still in its return window: pending until activated.
HELD: ColumnElement[bool] = and_(_lots.c.pending_until.is_not(None),
                                 _lots.c.activated_at.is_(None))


def held(pending_until: datetime | None, activated_at: datetime | None) -> bool:
    """HELD, of a loaded lot's columns."""
    return pending_until is not None and activated_at is None


def unexpired(at: datetime) -> ColumnElement[bool]:
    """Lots whose expiry has not come by `at` (or that never expire)."""
    return or_(_lots.c.expires_at.is_(None), _lots.c.expires_at > at)


def expired_by(at: datetime) -> ColumnElement[bool]:
    """Lots whose expiry came by `at`: spent by nothing, shown nowhere, from then on."""
    return and_(_lots.c.expires_at.is_not(None), _lots.c.expires_at <= at)


def has_expired(expires_at: datetime | None, at: datetime) -> bool:
    """expired_by, of a loaded lot's expiry."""
    return expires_at is not None and expires_at <= at


def active_at(at: datetime) -> ColumnElement[bool]:
    """Lots earned by `at` and out of their return window then (never pending, or
    activated by then): what a spend at `at` may take, expiry aside."""
    return and_(_lots.c.earned_at <= at,
                or_(_lots.c.pending_until.is_(None), _lots.c.activated_at <= at))
