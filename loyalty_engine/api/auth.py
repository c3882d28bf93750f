"""Bearer API keys: who is calling, and whether their scope and stores allow the request.

The key is checked before the body is read (a caller without a valid key learns nothing
about the body), by the `Authenticate` middleware; routes read the result as `Caller`."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from loyalty_engine.api.problems import Problem, problem_response
from loyalty_engine.services.apikeys import ApiKeyInfo, authenticate
from loyalty_engine.store.errors import DATABASE_ERRORS, as_database_error

_bearer = HTTPBearer(auto_error=False, description="an API key from `loyalty apikeys create`")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="loyalty-engine"'}
OPEN_PATHS = frozenset({"/v1/health", "/v1/ready"})
_STATE_KEY = "api_key"


class Authenticate:
    """401 for a /v1 request without a live API key (health and readiness excepted);
    otherwise the key is put in the request's state. (The key is never logged or echoed.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/v1/") or path in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = [v for k, v in scope["headers"] if k == b"authorization"]
        if len(given) > 1:  # which one counts would depend on the proxy in between
            response = problem_response(400, "ambiguous-key", "send one Authorization "
                                        f"header, not {len(given)}", path)
            await response(scope, receive, send)
            return
        header = (given[0] if given else b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        detail = None
        if scheme.lower() != "bearer" or not token.strip():
            detail = ("send an API key as 'Authorization: Bearer <key>' (create one with: "
                      "loyalty apikeys create)")
        else:
            engine = scope["app"].state.engine
            try:
                info = await anyio.to_thread.run_sync(authenticate, engine, token.strip())
            except DATABASE_ERRORS as exc:
                # Outside FastAPI's handlers, answered here as /v1/ready would answer (the
                # driver's own errors too: the key is read on the driver's path).
                failure = as_database_error(exc)
                reason = failure.name if failure is not None else type(exc).__name__
                response = problem_response(
                    503, "database-unreachable", "the database does not answer or is not "
                    f"migrated ({reason}); see /v1/ready", path)
                await response(scope, receive, send)
                return
            if info is None:
                detail = "the API key is unknown or has been revoked"
            else:
                scope.setdefault("state", {})[_STATE_KEY] = info
        if detail is not None:
            response = problem_response(401, "unauthenticated", detail, path,
                                        headers=_CHALLENGE)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def caller(request: Request,
           _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
           ) -> ApiKeyInfo:
    """The API key the middleware accepted (the bearer dependency documents the scheme)."""
    info = getattr(request.state, _STATE_KEY, None)
    if not isinstance(info, ApiKeyInfo):  # a route outside /v1 asked for a key
        raise Problem(401, "unauthenticated", "this endpoint needs an API key",
                      headers=_CHALLENGE)
    return info


Caller = Annotated[ApiKeyInfo, Depends(caller)]


def require_store(key: ApiKeyInfo, store_id: str) -> None:
    """403 unless the key may write for the store."""
    if not key.may_write(store_id):
        raise Problem(403, "forbidden-store", f"API key {key.name!r} may not write for store "
                      f"{store_id!r}; its stores are {', '.join(key.stores)}")


def require_admin(key: ApiKeyInfo, what: str) -> None:
    """403 unless the key has the admin scope."""
    if key.scope != "admin":
        raise Problem(403, "forbidden-scope", f"{what} needs an admin API key; "
                      f"{key.name!r} is a {key.scope} key")


def require_program(key: ApiKeyInfo, unreached: frozenset[str], program_id: str,
                    what: str) -> None:
    """403 when the program is out of the key's reach (services/access)."""
    if program_id in unreached:
        raise Problem(403, "forbidden-program", f"API key {key.name!r} may not {what} in "
                      f"program {program_id!r}: none of its stores ({', '.join(key.stores)}) "
                      "takes part in it")


def require_member_seen(key: ApiKeyInfo, unreached: frozenset[str],
                        enrolled: frozenset[str] | None, member_id: str) -> None:
    """403 when a pos key asks about a member enrolled only in programs it does not reach
    (a member in none yet, or unknown, is left to the service: created, or 404)."""
    if enrolled and enrolled <= unreached:
        raise Problem(403, "forbidden-member", f"API key {key.name!r} may not see or change "
                      f"member {member_id!r}: the member is in no program its stores "
                      f"({', '.join(key.stores)}) take part in")
