"""The server's limits and timeouts: their defaults, and the environment variables by which
`loyalty serve` hands its options to every worker process."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields


class LimitError(ValueError):
    """A limit given in the environment that is not a positive number."""


@dataclass(frozen=True)
class Limits:
    """What bounds one request (times in seconds)."""

    # How long a write waits for another's lock (an import's, say) before a 503.
    lock_timeout: float = 10.0
    # The request line and headers together, in bytes: more is refused with 431.
    max_header_bytes: int = 16 * 1024
    # From a request's first byte (or the connection's opening) to its last header: 408.
    header_timeout: float = 10.0
    # From the last header to the body's last byte: 408 (the body limit is 1 MiB).
    body_timeout: float = 30.0


ENVIRONMENT = {
    "lock_timeout": "LOYALTY_LOCK_TIMEOUT",
    "max_header_bytes": "LOYALTY_MAX_HEADER_BYTES",
    "header_timeout": "LOYALTY_HEADER_TIMEOUT",
    "body_timeout": "LOYALTY_BODY_TIMEOUT",
}


def from_environment() -> Limits:
    """The defaults, overridden by the LOYALTY_* variables that are set."""
    given: dict[str, float | int] = {}
    for field in fields(Limits):
        raw = os.environ.get(ENVIRONMENT[field.name])
        if raw is None or not raw.strip():
            continue
        kind = int if field.type == "int" else float
        try:
            value = kind(raw)
        except ValueError:
            value = 0
        if not value > 0:
            raise LimitError(f"{ENVIRONMENT[field.name]}={raw!r} must be a positive "
                             f"{'whole ' if kind is int else ''}number")
        given[field.name] = value
    return Limits(**given)  # type: ignore[arg-type]


def to_environment(limits: Limits) -> None:
    """Set the variables for worker processes, which read them in from_environment."""
    for field in fields(Limits):
        os.environ[ENVIRONMENT[field.name]] = str(getattr(limits, field.name))
