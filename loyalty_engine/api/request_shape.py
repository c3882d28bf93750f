"""Requests refused for their body before any route reads it: one over MAX_BODY_BYTES (413),
one that is not JSON by its media type (415), or not UTF-8 JSON by its bytes (400: UTF-16 or
UTF-32, a byte-order mark, a NUL, invalid UTF-8), so that a till's encoding is never guessed.
(The time a body may take to arrive is bounded by the connection: api/connection.py.)"""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loyalty_engine.api.problems import problem_response

MAX_BODY_BYTES = 1024 * 1024

# JSON text in UTF-8 never holds a NUL byte (a control character is escaped inside strings),
# while UTF-16 and UTF-32 text of ASCII characters is full of them.
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


def is_json_media_type(value: str) -> bool:
    """application/json or application/<anything>+json, with at most a utf-8 charset."""
    media, *params = (part.strip() for part in value.split(";"))
    kind, _, subtype = media.lower().partition("/")
    if kind != "application" or not (subtype == "json" or subtype.endswith("+json")):
        return False
    for param in params:
        name, _, given = param.partition("=")
        if name.strip().lower() != "charset" or given.strip().strip('"').lower() != "utf-8":
            return False
    return True


def body_problem(body: bytes) -> str | None:
    """Why a body cannot be UTF-8 JSON text, or None."""
    if body.startswith(_BOMS):
        return "the body starts with a byte-order mark; send JSON in UTF-8 without one"
    if b"\x00" in body:
        return "the body holds NUL bytes (UTF-16 or UTF-32?); send JSON in UTF-8"
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"the body is not UTF-8 (at byte {exc.start}); send JSON in UTF-8"
    return None


class RequestBody:
    """413 for a body over the limit: by Content-Length when given, else while the chunks
    arrive (at most the limit is held). Then, for a POST, PUT or PATCH with a body, 415 for
    any media type but JSON's and 400 for bytes that are not UTF-8. The body read once is
    replayed to the app."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path")
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large(path)(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._too_large(path)(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        if body and scope.get("method") in ("POST", "PUT", "PATCH"):
            content_type = headers.get(b"content-type", b"").decode("latin-1")
            if not is_json_media_type(content_type):
                shown = f"{content_type!r}" if content_type else "no Content-Type"
                await problem_response(
                    415, "media-type", f"the body was sent as {shown}; send it as JSON, with "
                    "'Content-Type: application/json'", path)(scope, receive, send)
                return
            wrong = body_problem(body)
            if wrong is not None:
                await problem_response(400, "malformed-json", wrong, path)(scope, receive, send)
                return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self, path: str | None) -> Response:
        # Connection: close, as the rest of the body is not read.
        return problem_response(
            413, "too-large", f"the body is larger than {self.limit} bytes; send one purchase "
            "or refund per request", path, headers={"Connection": "close"})
