"""What a lot is at an instant, said once: held pending, or expired by then (whether or not
the expire step has recorded it). The spends, the steps, the balance reads and the check
all ask these, as SQL or of a loaded row."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, case, func, or_, select, true

from loyalty_engine.store import tables

_lots = tables.point_lots
# Its own alias, so that inside a query over balances it still correlates to the lot.
_owner = tables.balances.alias("lot_balance")


def _expiry() -> ColumnElement[datetime | None]:
    """A lot's expiry, inactivity included: the earlier of its own expires_at and the
    instant its balance lapsed (or will) without activity. A lot earned before the last
    recorded lapse went with it; any later one goes at the current deadline, which each
    activity moves on (a lot earned by a bonus after a lapse, no activity since, waits
    for the next deadline). Without a balance row (not flushed yet): its own expiry."""
    lapse = case((_lots.c.earned_at < _owner.c.lapsed_at, _owner.c.lapsed_at),
                 (_lots.c.earned_at < _owner.c.lapses_at, _owner.c.lapses_at))
    earlier = case((lapse.is_(None), _lots.c.expires_at),
                   (_lots.c.expires_at.is_(None), lapse),
                   (lapse < _lots.c.expires_at, lapse),
                   else_=_lots.c.expires_at)
    found = (select(earlier).where(_owner.c.member_id == _lots.c.member_id,
                                   _owner.c.program_id == _lots.c.program_id)
             .scalar_subquery())
    return func.coalesce(found, _lots.c.expires_at)


def expiry_column() -> ColumnElement[datetime | None]:
    """A lot's expiry as every read sees it (select it `.label("expires_at")` for
    has_expired and shown_at): its own, or its balance's lapse if earlier."""
    return _expiry()

# A lot still in its return window: pending until activated.
HELD: ColumnElement[bool] = and_(_lots.c.pending_until.is_not(None),
                                 _lots.c.activated_at.is_(None))


def held(pending_until: datetime | None, activated_at: datetime | None) -> bool:
    """HELD, of a loaded lot's columns."""
    return pending_until is not None and activated_at is None


def unexpired(at: datetime) -> ColumnElement[bool]:
    """Lots whose expiry (inactivity included) has not come by `at` (or that never expire)."""
    # Coalesced rather than "IS NULL OR >": one evaluation of the balance's subquery.
    return func.coalesce(_expiry() > at, true())


def expired_by(at: datetime) -> ColumnElement[bool]:
    """Lots whose expiry (inactivity included) came by `at`: spent by nothing, shown
    nowhere, from then on."""
    return _expiry() <= at  # NULL (never expires) is not true


def has_expired(expires_at: datetime | None, at: datetime) -> bool:
    """expired_by, of a loaded lot's expiry."""
    return expires_at is not None and expires_at <= at


def active_at(at: datetime) -> ColumnElement[bool]:
    """Lots earned by `at` and out of their return window then (never pending, or
    activated by then): what a spend at `at` may take, expiry aside."""
    return and_(_lots.c.earned_at <= at,
                or_(_lots.c.pending_until.is_(None), _lots.c.activated_at <= at))
