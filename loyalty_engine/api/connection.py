"""uvicorn's httptools connection with bounds on what a client may hold: the size of a
request's line and headers (431), the time to send them and the time to send its body (408,
then the connection is closed). uvicorn bounds neither on httptools, whose parser buffers a
header of any length, and its keep-alive timer starts only after a first response."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from loyalty_engine.api.limits import Limits, from_environment

_REASONS = {408: "Request Timeout", 431: "Request Header Fields Too Large"}


def refusal(status: int, kind: str, detail: str) -> bytes:
    """A whole HTTP/1.1 response holding a problem document, that closes the connection:
    written on the transport, for a request no ASGI app has seen (or will finish seeing)."""
    body = json.dumps({"type": f"urn:loyalty-engine:problem:{kind}",
                       "title": _REASONS[status], "status": status, "detail": detail},
                      separators=(",", ":")).encode()
    head = (f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
            "content-type: application/problem+json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode("ascii") + body


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol, with Limits (from the environment `loyalty serve` sets)."""

    limits: Limits | None = None  # read once per process, at the first connection

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if BoundedHttpToolsProtocol.limits is None:
            BoundedHttpToolsProtocol.limits = from_environment()
        self._limits = BoundedHttpToolsProtocol.limits
        self._in_head = True  # reading a request line and headers (or waiting for one)
        self._head_bytes = 0
        self._head_started = False  # a byte of this request's head has arrived
        self._head_too_large = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A connection that sends nothing at all is held no longer than a slow head.
        self._arm(self._limits.header_timeout, self._head_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
            if self._timer is None:  # the first byte of a request after a kept-alive one
                self._arm(self._limits.header_timeout, self._head_too_slow)
            self._head_started = True
        super().data_received(data)
        # While the head is incomplete every byte is the head's: refused before the parser
        # buffers a header of any size. (A head that ends in this chunk is measured when it
        # is complete, without the body that may follow it in the chunk.)
        if (self._in_head and self._head_bytes > self._limits.max_header_bytes
                and not self.transport.is_closing()):
            self._refuse_large_head()

    def on_headers_complete(self) -> None:
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self._limits.max_header_bytes:
            self._head_too_large = True
            # The parser stops on a callback's error, and uvicorn answers it with
            # send_400_response, which answers 431 instead (below).
            raise ValueError("headers too large")
        self._in_head = False
        self._head_started = False
        self._head_bytes = 0
        self._arm(self._limits.body_timeout, self._body_too_slow)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_head = True  # the next bytes are the next request's (its timer starts then)
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        if self._head_too_large:
            self._refuse_large_head()
        else:
            super().send_400_response(msg)

    def _refuse_large_head(self) -> None:
        self._refuse(431, "headers-too-large", "the request line and headers are larger than "
                     f"{self._limits.max_header_bytes} bytes")

    def _arm(self, delay: float, callback: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_too_slow(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if not self._head_started:  # nothing asked: nothing to answer
            self.transport.close()
            return
        self._refuse(408, "request-timeout", "the request line and headers did not arrive "
                     f"within {self._limits.header_timeout:g} s")

    def _body_too_slow(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and cycle.response_started:
            self.transport.close()  # answered already (a 401, say): only the body was late
            return
        self._refuse(408, "request-timeout", "the body did not arrive within "
                     f"{self._limits.body_timeout:g} s of the headers")

    def _refuse(self, status: int, kind: str, detail: str) -> None:
        self._disarm()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The app waiting for the body is told the client left, and sends nothing more.
            cycle.disconnected = True
            cycle.message_event.set()
        self.logger.warning("%s: %s", _REASONS[status], detail)
        self.transport.write(refusal(status, kind, detail))
        self.transport.close()
