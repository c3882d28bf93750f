"""`loyalty serve`: the POS HTTP API under uvicorn."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import tempfile

import typer

from loyalty_engine.api.limits import ENVIRONMENT, Limits, to_environment
from loyalty_engine.cli.context import database_url, engine_for
from loyalty_engine.cli.logs import (
    LOG_FORMAT,
    LOG_LEVEL,
    LogFormat,
    LogLevel,
    configure,
    dict_config,
)
from loyalty_engine.cli.output import console
from loyalty_engine.domain.errors import LoyaltyError
from loyalty_engine.store.database import describe_url


class ServeError(LoyaltyError):
    """The server cannot start as asked."""


def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on "
                             "(0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port to listen on."),
    workers: int = typer.Option(1, "--workers", min=1, max=64,
                                help="Worker processes (each with its own connections)."),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log",
                                    help="Log one line per request (never the API key)."),
    metrics: bool = typer.Option(True, "--metrics/--no-metrics", help="Serve GET /metrics "
                                 "(Prometheus text format, no key needed)."),
    log_format: LogFormat = LOG_FORMAT,
    log_level: LogLevel = LOG_LEVEL,
    lock_timeout: float = typer.Option(
        Limits.lock_timeout, "--lock-timeout", min=0.001, metavar="SECONDS",
        envvar=ENVIRONMENT["lock_timeout"],
        help="How long a write waits for another's lock (an import's) before answering 503 "
             "with Retry-After."),
    max_header_bytes: int = typer.Option(
        Limits.max_header_bytes, "--max-header-bytes", min=1024, metavar="BYTES",
        envvar=ENVIRONMENT["max_header_bytes"],
        help="Largest request line and headers together; more is refused with 431."),
    header_timeout: float = typer.Option(
        Limits.header_timeout, "--header-timeout", min=0.001, metavar="SECONDS",
        envvar=ENVIRONMENT["header_timeout"],
        help="Time to send a request's line and headers; then 408 and the connection closed."),
    body_timeout: float = typer.Option(
        Limits.body_timeout, "--body-timeout", min=0.001, metavar="SECONDS",
        envvar=ENVIRONMENT["body_timeout"],
        help="Time to send a request's body after its headers; then 408 and closed."),
) -> None:
    """Serve the POS HTTP API until stopped.

    OpenAPI at /openapi.json, interactive docs at /docs and /redoc, metrics at /metrics."""
    import uvicorn

    engine_for(ctx).dispose()  # refuse an unmigrated database before binding the port
    url = database_url(ctx)
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose "
                         "another --port or stop what uses it") from None
    # Workers are separate processes: they find the database through the environment.
    os.environ["LOYALTY_DATABASE_URL"] = url
    os.environ["LOYALTY_METRICS"] = "on" if metrics else "off"
    to_environment(Limits(lock_timeout, max_header_bytes, header_timeout, body_timeout))
    banner = (f"serving {describe_url(url)} on http://{host}:{port} "
              f"({workers} worker{'s' if workers > 1 else ''}); Ctrl-C stops")
    if log_format is LogFormat.json:  # then everything the server says is a JSON line
        configure(log_format.value, log_level.value, access_log)
        logging.getLogger("loyalty.serve").info(banner, extra={
            "database": describe_url(url), "host": host, "port": port, "workers": workers})
    else:
        console.print(banner, markup=False, highlight=False)
    # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly; with this
    # handler in place that ends the process with 0, as a stop asked for should.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # The workers' metrics meet in a folder of this run's own (prometheus-client's
    # multiprocess mode), set before any worker imports the client and removed at the end,
    # so that counts start at zero with the server, as Prometheus expects of a restart.
    with tempfile.TemporaryDirectory(prefix="loyalty-metrics-") as folder:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
        uvicorn.run("loyalty_engine.api.app:create_app", factory=True, host=host, port=port,
                    # httptools with a bound on the headers and on the time to send a request
                    http="loyalty_engine.api.connection:BoundedHttpToolsProtocol",
                    workers=workers, log_level=log_level.value,
                    # our access line (api/observe.py) has the route and the duration
                    access_log=False,
                    log_config=dict_config(log_format.value, log_level.value, access_log),
                    server_header=False, timeout_graceful_shutdown=10,
                    # uvicorn kills a worker that misses a health ping; under a burst on a
                    # small machine 5 s (its default) is too little, and its requests in
                    # flight die.
                    timeout_worker_healthcheck=30)
