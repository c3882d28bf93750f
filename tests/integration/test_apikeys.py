"""API keys on both databases: a token works until it is revoked, only its hash is stored,
a wrong secret or a malformed token is refused, and a POS key writes only for its stores."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from loyalty_engine.domain.errors import ApiKeyError, NotFoundError
from loyalty_engine.services.apikeys import (
    authenticate,
    create_api_key,
    list_api_keys,
    revoke_api_key,
)
from loyalty_engine.store import tables

NOW = datetime(2027, 1, 5, 9, tzinfo=UTC)
LATER = datetime(2027, 2, 1, 9, tzinfo=UTC)


def test_a_token_works_until_revoked_and_only_its_hash_is_kept(engine: Engine) -> None:
    key, token = create_api_key(engine, "till-ams", "pos", ["AMS-01", "AMS-02"], NOW)
    assert token.startswith(f"lk_{key.key_id}_") and len(token) > 50
    found = authenticate(engine, token)
    assert found == key
    with engine.connect() as conn:
        row = conn.execute(select(tables.api_keys)).one()
    secret = token.split("_", 2)[2]
    assert row.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(tuple(row))  # the secret itself is stored nowhere

    # A wrong secret, another key's id, or something that is not a token at all: refused.
    assert authenticate(engine, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert authenticate(engine, "lk_000000000000_" + secret) is None
    assert authenticate(engine, "Bearer " + token) is None
    assert authenticate(engine, "") is None

    revoked = revoke_api_key(engine, "till-ams", NOW)
    assert revoked.revoked_at == NOW
    assert authenticate(engine, token) is None
    with pytest.raises(ApiKeyError, match="already revoked"):
        revoke_api_key(engine, key.key_id, NOW)
    assert [k.revoked_at for k in list_api_keys(engine)] == [NOW]


def test_a_pos_key_writes_only_for_its_stores_and_an_admin_key_for_all(engine: Engine) -> None:
    pos, _ = create_api_key(engine, "utrecht tills", "pos", ["UTR-*", "AMS-01"], NOW)
    admin, _ = create_api_key(engine, "back office", "admin", [], NOW)
    assert [pos.may_write(s) for s in ("UTR-07", "AMS-01", "AMS-02", "RTM-01")] == [
        True, True, False, False]
    assert admin.may_write("anywhere")
    assert [k.name for k in list_api_keys(engine)] == ["utrecht tills", "back office"]


@pytest.mark.parametrize(("name", "scope", "stores", "message"), [
    ("till", "pos", [], "give at least one --store"),
    ("till", "admin", ["AMS-01"], "an admin key is not limited to stores"),
    ("till", "root", [], "scope 'root' is not one of pos, admin"),
    ("  ", "admin", [], "give the key a name"),
    ("till", "pos", ["AMS*01"], "is not a store id"),
])
def test_a_key_that_cannot_be_made_is_refused_and_nothing_is_stored(
    engine: Engine, name: str, scope: str, stores: list[str], message: str,
) -> None:
    with pytest.raises(ApiKeyError, match=message):
        create_api_key(engine, name, scope, stores, NOW)
    assert list_api_keys(engine) == []


def test_names_are_unique_and_unknown_keys_are_named(engine: Engine) -> None:
    create_api_key(engine, "till", "admin", [], NOW)
    with pytest.raises(ApiKeyError, match="already a live key named 'till'"):
        create_api_key(engine, "till", "admin", [], NOW)
    with pytest.raises(NotFoundError, match="no API key named 'nope'"):
        revoke_api_key(engine, "nope", NOW)


def test_a_revoked_keys_name_can_be_given_to_a_new_key(engine: Engine) -> None:
    old, old_token = create_api_key(engine, "till-ams", "pos", ["AMS-*"], NOW)
    revoke_api_key(engine, "till-ams", NOW)
    new, new_token = create_api_key(engine, "till-ams", "pos", ["AMS-*"], LATER)
    assert new.key_id != old.key_id
    assert authenticate(engine, old_token) is None
    assert authenticate(engine, new_token) == new
    # Both rows are kept; the name now means the live key, so revoking it by name works.
    assert [(k.name, k.revoked_at) for k in list_api_keys(engine)] == [
        ("till-ams", NOW), ("till-ams", None)]
    assert revoke_api_key(engine, "till-ams", LATER).key_id == new.key_id
    with pytest.raises(ApiKeyError, match="already revoked"):
        revoke_api_key(engine, "till-ams", LATER)
    # A third key of the name; a twin that got past the check is refused by the database.
    create_api_key(engine, "till-ams", "admin", [], LATER)
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(tables.api_keys.insert().values(
            name="till-ams", key_id="0" * 12, secret_sha256="0" * 64, scope="admin",
            stores=[], created_at=LATER, revoked_at=None))
