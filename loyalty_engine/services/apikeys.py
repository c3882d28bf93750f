"""API keys for the HTTP API: created with a secret shown once (only its SHA-256 is kept),
listed, revoked, and checked in constant time. A POS key writes only for its stores."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, Engine, or_, select
from sqlalchemy.exc import IntegrityError

from loyalty_engine.domain.errors import ApiKeyError, NotFoundError
from loyalty_engine.store import tables
from loyalty_engine.store.bulk import select_typed_by_keys
from loyalty_engine.store.unit_of_work import read_use_case, write_use_case

_keys = tables.api_keys
_COLUMNS = ("id", "name", "key_id", "secret_sha256", "scope", "stores", "created_at",
            "revoked_at")

PREFIX = "lk_"
_KEY_ID = re.compile(r"^[0-9a-f]{12}$")
_STORE = re.compile(r"^[^*\x00-\x1f\x7f]{1,64}\*?$")
SCOPES = ("pos", "admin")
# Compared against when a key id is unknown, so that a miss takes as long as a hit.
_NOBODY = hashlib.sha256(b"no such key").hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """A stored key, without its secret."""

    id: int
    name: str
    key_id: str
    scope: str
    stores: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None

    def may_write(self, store_id: str) -> bool:
        """Whether this key may post for a store ('AMS-*' in its stores is a prefix)."""
        if self.scope == "admin":
            return True
        return any(store_id == s or (s.endswith("*") and store_id.startswith(s[:-1]))
                   for s in self.stores)

    def as_json(self) -> dict[str, Any]:
        """Plain data for --json (never the secret)."""
        return {"id": self.id, "name": self.name, "key_id": self.key_id, "scope": self.scope,
                "stores": list(self.stores), "created_at": self.created_at,
                "revoked_at": self.revoked_at}


def _info(row: Any) -> ApiKeyInfo:
    return ApiKeyInfo(row.id, row.name, row.key_id, row.scope, tuple(row.stores or ()),
                      row.created_at, row.revoked_at)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@write_use_case
def create_api_key(conn: Connection, name: str, scope: str, stores: list[str],
                   now: datetime) -> tuple[ApiKeyInfo, str]:
    """A new key and its token (`lk_<key id>_<secret>`), which is never shown again."""
    name = name.strip()
    if not name or len(name) > 100 or not name.isprintable():
        raise ApiKeyError("give the key a name of 1 to 100 printable characters")
    if scope not in SCOPES:
        raise ApiKeyError(f"scope {scope!r} is not one of {', '.join(SCOPES)}")
    if scope == "pos" and not stores:
        raise ApiKeyError("a pos key writes only for its stores: give at least one --store "
                          "(an id, or a prefix such as AMS-*)")
    if scope == "admin" and stores:
        raise ApiKeyError("an admin key is not limited to stores; drop --store, or use "
                          "--scope pos")
    for store in stores:
        if not _STORE.match(store):
            raise ApiKeyError(f"{store!r} is not a store id (or a prefix ending in *)")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    taken = ApiKeyError(f"there is already a live key named {name!r}; pick another name "
                        "(or revoke that one first)")
    if conn.execute(select(_keys.c.id).where(
            _keys.c.name == name, _keys.c.revoked_at.is_(None))).first() is not None:
        raise taken
    try:
        row = conn.execute(_keys.insert().values(
            name=name, key_id=key_id, secret_sha256=_digest(secret), scope=scope,
            stores=sorted(set(stores)), created_at=now, revoked_at=None,
        ).returning(*_keys.c)).one()
    except IntegrityError:
        raise taken from None  # a twin created the same name between our check and insert
    return _info(row), f"{PREFIX}{key_id}_{secret}"


@read_use_case
def list_api_keys(conn: Connection) -> list[ApiKeyInfo]:
    """Every key, oldest first (revoked ones too, marked)."""
    return [_info(r) for r in conn.execute(select(_keys).order_by(_keys.c.id))]


@write_use_case
def revoke_api_key(conn: Connection, ref: str, now: datetime) -> ApiKeyInfo:
    """Revoke a key by name or key id; it stops working at once."""
    # A reused name: the live key is meant (revoked ones of the name are history).
    row = conn.execute(select(_keys).where(
        or_(_keys.c.name == ref, _keys.c.key_id == ref))
        .order_by(_keys.c.revoked_at.is_not(None), _keys.c.id.desc())).first()
    if row is None:
        raise NotFoundError(f"there is no API key named {ref!r} (or with that key id); "
                            "`loyalty apikeys list` shows them")
    if row.revoked_at is not None:
        raise ApiKeyError(f"key {row.name!r} was already revoked at "
                          f"{row.revoked_at.isoformat()}")
    done = conn.execute(_keys.update().where(_keys.c.id == row.id).values(
        revoked_at=now).returning(*_keys.c)).one()
    return _info(done)


def authenticate(engine: Engine, token: str) -> ApiKeyInfo | None:
    """The live key a token belongs to, or None (unknown, malformed, wrong secret or
    revoked). The secret's hash is compared in constant time."""
    key_id, secret = _split(token)
    row = None
    if key_id is not None:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                # Outside any transaction: BEGIN and ROLLBACK would be two more round trips.
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            # On the driver's path (store/bulk.py): this runs before every API request.
            found = select_typed_by_keys(conn, _keys, ("key_id",), [(key_id,)], _COLUMNS)
            row = SimpleNamespace(**dict(zip(_COLUMNS, found[0], strict=True))) if found else None
    expected = row.secret_sha256 if row is not None else _NOBODY
    matches = hmac.compare_digest(_digest(secret), expected)
    if row is None or not matches or row.revoked_at is not None:
        return None
    return _info(row)


def _split(token: str) -> tuple[str | None, str]:
    """(key id, secret) of `lk_<12 hex>_<secret>`; (None, token) when it is not one."""
    if token.startswith(PREFIX) and len(token) > len(PREFIX) + 13:
        key_id = token[len(PREFIX):len(PREFIX) + 12]
        rest = token[len(PREFIX) + 12:]
        if _KEY_ID.match(key_id) and rest.startswith("_"):
            return key_id, rest[1:]
    return None, token
