"""`loyalty apikeys create|list|revoke`: keys for the HTTP API (the secret is shown once)."""

from __future__ import annotations

import sys

import typer
from rich.markup import escape
from rich.table import Table

from loyalty_engine.cli.context import engine_for, now, program_zone
from loyalty_engine.cli.options import JSON
from loyalty_engine.cli.output import console, emit_json, err_console, when
from loyalty_engine.services.apikeys import create_api_key, list_api_keys, revoke_api_key

app = typer.Typer(help="API keys for the HTTP API (only a hash of each secret is kept).",
                  epilog="A pos key writes for its stores, an admin key for all.",
                  no_args_is_help=True)


@app.command()
def create(
    ctx: typer.Context,
    name: str = typer.Option(..., "--name", help="What the key is for (unique)."),
    scope: str = typer.Option(..., "--scope", help="pos (post for its stores) or admin."),
    store: list[str] = typer.Option([], "--store", help="A store the pos key may post for "
                                    "(an id, or a prefix such as AMS-*); repeat for more."),
    token_only: bool = typer.Option(False, "--token-only", help="Print only the token (for "
                                    "TOKEN=$(loyalty apikeys create ... --token-only))."),
    json_out: bool = JSON,
) -> None:
    """Create a key and print its secret token, once (it cannot be shown again).

    Store it now; if it is lost, revoke the key and create another (the name may be used
    again once its key is revoked)."""
    key, token = create_api_key(engine_for(ctx), name, scope, list(store), now())
    if token_only:
        sys.stdout.write(token + "\n")
        return
    if json_out:
        emit_json({**key.as_json(), "token": token})
        return
    console.print(f"created {key.scope} key {key.name!r} (key id {key.key_id}"
                  + (f", stores {', '.join(key.stores)}" if key.stores else "") + ")",
                  markup=False)
    console.print(token, markup=False)
    err_console.print("This is the only time the token is shown; send it as "
                      "`Authorization: Bearer <token>`.", markup=False)


@app.command("list")
def list_(ctx: typer.Context, json_out: bool = JSON) -> None:
    """Every key: name, key id, scope, stores, created, revoked (never the secret)."""
    keys = list_api_keys(engine_for(ctx))
    if json_out:
        emit_json([k.as_json() for k in keys])
        return
    if not keys:
        console.print("no API keys; `loyalty apikeys create` makes one")
        return
    table = Table("name", "key id", "scope", "stores", "created", "revoked")
    zone = program_zone(ctx, None)
    for k in keys:
        table.add_row(escape(k.name), k.key_id, k.scope, escape(", ".join(k.stores) or "all"),
                      when(k.created_at, zone), when(k.revoked_at, zone))
    console.print(table)


@app.command()
def revoke(ctx: typer.Context,
           key: str = typer.Argument(..., help="The key's name or key id."),
           json_out: bool = JSON) -> None:
    """Revoke a key: requests with it are refused from now on."""
    done = revoke_api_key(engine_for(ctx), key, now())
    if json_out:
        emit_json(done.as_json())
        return
    console.print(f"revoked key {done.name!r} ({done.key_id})", markup=False)
