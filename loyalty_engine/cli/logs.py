"""Logs of the long-running commands (`serve`, `scheduler run`): text or JSON lines, a level.

A JSON line holds `time` (UTC, ISO 8601), `level`, `logger`, `message` and the record's own
fields (`extra=`: an access log's method, path, route, status and duration; a job run's
job, program and outcome). Secrets never reach a line: nothing logs a header, and the
formatters also blank anything that looks like a Bearer token or a URL's password, so a
message that quotes one by mistake still shows none.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import typer

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class LogFormat(StrEnum):
    """How a log line is written."""

    text = "text"
    json = "json"


class LogLevel(StrEnum):
    """The least severe level logged."""

    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


LOG_FORMAT = typer.Option(LogFormat.text, "--log-format", envvar="LOYALTY_LOG_FORMAT",
                          help="Log lines as text, or as JSON objects one a line (stderr).")
LOG_LEVEL = typer.Option(LogLevel.info, "--log-level", envvar="LOYALTY_LOG_LEVEL",
                         case_sensitive=False, help="The least severe level logged.")

# What every LogRecord has; anything else on a record came from `extra=` and is a field.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "color_message", "taskName"}
_SECRETS = (
    (re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+"), r"\1[redacted]"),
    (re.compile(r"(?i)\b(authorization[\"']?\s*[:=]\s*[\"']?)(?!bearer\b)[^\s\"',;]+"),
     r"\1[redacted]"),
    (re.compile(r"(://[^/@:\s]*:)[^/@\s]+@"), r"\1***@"),
)


def redact(text: str) -> str:
    """`text` with Bearer tokens, Authorization values and URL passwords blanked."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a record was given with `extra=`."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class TextFormatter(logging.Formatter):
    """The classic line (time, level, logger: message), secrets blanked."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, pid, the record's fields, and the
    traceback (as `exception`) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
            "pid": record.process,
        }
        for key, value in fields(record).items():
            line.setdefault(key, redact(value) if isinstance(value, str) else value)
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, default=str, ensure_ascii=False)


def formatter_path(log_format: str) -> str:
    """The import path of the formatter class, for a dictConfig (uvicorn's workers)."""
    name = "JsonFormatter" if log_format == "json" else "TextFormatter"
    return f"{__name__}.{name}"


def dict_config(log_format: str, level: str, access_log: bool = True) -> dict[str, Any]:
    """A logging dictConfig: every logger (ours, uvicorn's, APScheduler's) to stderr in
    one format. uvicorn applies it in each worker process it starts."""
    upper = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": {"()": formatter_path(log_format)}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "main",
                                "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": upper},
        "loggers": {
            # uvicorn's own handlers are replaced by the root's (propagate).
            "uvicorn": {"handlers": [], "level": upper, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": upper, "propagate": True},
            # Our access log (api/observe.py) has the duration and the route; uvicorn's
            # is switched off by `serve`.
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
            "loyalty.access": {"handlers": [], "propagate": True,
                               "level": upper if access_log else "CRITICAL"},
            # APScheduler says "Running job ..." for every fire: our own line says more.
            "apscheduler": {"handlers": [], "propagate": True,
                            "level": max(upper, "WARNING", key=_rank)},
        },
    }


def _rank(level: str) -> int:
    return int(logging.getLevelName(level))


def configure(log_format: str, level: str, access_log: bool = True) -> None:
    """Set up logging in this process as `dict_config` says."""
    import logging.config

    logging.config.dictConfig(dict_config(log_format, level, access_log))
    sys.stderr.flush()
