"""`loyalty apikeys`: the token is printed once (also as JSON), never listed, and revoking
by name or key id works; mistakes are one sentence."""

from __future__ import annotations

from tests.e2e.cli import assert_one_sentence_error, ok, run


def test_create_list_and_revoke_a_key(sqlite_db_url: str) -> None:
    made = ok("apikeys", "create", "--name", "till-ams", "--scope", "pos", "--store", "AMS-*",
              "--store", "UTR-01", "--json", database=sqlite_db_url).json()
    token = made["token"]
    assert token.startswith(f"lk_{made['key_id']}_")
    assert (made["scope"], made["stores"], made["revoked_at"]) == (
        "pos", ["AMS-*", "UTR-01"], None)
    shown = ok("apikeys", "create", "--name", "office", "--scope", "admin",
               database=sqlite_db_url)
    assert "only time the token is shown" in shown.stderr
    listed = ok("apikeys", "list", "--json", database=sqlite_db_url)
    assert token.split("_", 2)[2] not in listed.stdout  # the secret is never listed
    assert [k["name"] for k in listed.json()] == ["till-ams", "office"]
    revoked = ok("apikeys", "revoke", made["key_id"], "--json", database=sqlite_db_url).json()
    assert revoked["name"] == "till-ams" and revoked["revoked_at"] is not None
    again = run("apikeys", "revoke", "till-ams", database=sqlite_db_url)
    assert_one_sentence_error(again, "already revoked")


def test_a_key_that_cannot_be_made_is_one_sentence(sqlite_db_url: str) -> None:
    no_store = run("apikeys", "create", "--name", "till", "--scope", "pos",
                   database=sqlite_db_url)
    assert_one_sentence_error(no_store, "give at least one --store")
    unknown = run("apikeys", "revoke", "nope", database=sqlite_db_url)
    assert_one_sentence_error(unknown, "no API key named 'nope'")
    assert ok("apikeys", "list", "--json", database=sqlite_db_url).json() == []
