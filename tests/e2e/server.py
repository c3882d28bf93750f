"""Running the real `loyalty serve` for end-to-end HTTP tests.

`serving(...)` starts the installed console script as a subprocess on a free loopback port,
waits (bounded) until `GET /v1/health` answers, yields a `Server` (its base URL and its log),
and on leaving sends SIGTERM, waits (SIGKILL after a bound, so a test never hangs) and checks
the exit code. The server's stdout and stderr go to one log file, readable while it runs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx2
import pytest

from tests.conftest import _fresh_database
from tests.e2e.cli import LOYALTY, clean_env, ok

START_TIMEOUT_S = 30.0  # two workers on a busy 2-core machine have taken 12 s to answer
STOP_TIMEOUT_S = 20.0  # uvicorn's graceful shutdown is bounded at 10 s by `loyalty serve`
AMSTERDAM = ZoneInfo("Europe/Amsterdam")


def free_port() -> int:
    """A loopback port nothing listens on now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running `loyalty serve`."""

    url: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]
    exit_code: int | None = field(default=None)

    def log(self) -> str:
        """Everything the server printed so far (stdout and stderr)."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        """SIGTERM, then wait; SIGKILL (and fail) when it does not stop in time."""
        if self.exit_code is not None:
            return self.exit_code
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.exit_code = self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _kill_group(self.process)
            self.exit_code = self.process.wait(timeout=10)
            pytest.fail(f"`loyalty serve` did not stop within {STOP_TIMEOUT_S} s of SIGTERM "
                        f"and was killed; its log:\n{self.log()}")
        return self.exit_code


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the server and its workers (it leads its own process group)."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _start(database: str, log_path: Path, workers: int, access_log: bool,
           extra: tuple[str, ...]) -> Server:
    port = free_port()
    argv = [LOYALTY, "--database", database, "serve", "--host", "127.0.0.1",
            "--port", str(port), "--workers", str(workers), *extra]
    if not access_log:
        argv.append("--no-access-log")
    with log_path.open("wb") as log:  # a retry starts the log afresh
        process = subprocess.Popen(argv, env=clean_env(), stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    return Server(f"http://127.0.0.1:{port}", port, log_path, process)


def _wait_until_healthy(server: Server) -> bool:
    """True once /v1/health answers 200; False if the process exits first. Fails the test
    (after killing the server) when neither happens in time."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            if httpx2.get(f"{server.url}/v1/health", timeout=2).status_code == 200:
                return True
        except httpx2.TransportError:
            pass
        time.sleep(0.1)
    _kill_group(server.process)
    server.process.wait(timeout=10)
    pytest.fail(f"`loyalty serve` did not answer /v1/health within {START_TIMEOUT_S} s; its "
                f"log:\n{server.log()}")


@contextmanager
def serving(database: str, log_path: Path, *, workers: int = 1, access_log: bool = True,
            exit_codes: tuple[int, ...] = (0,), extra: tuple[str, ...] = ()
            ) -> Iterator[Server]:
    """`loyalty --database DATABASE serve` on a free port until the block ends.

    On a normal exit the server must stop with one of exit_codes and must not have logged a
    traceback (an unexpected error). If the block raises, the server is still stopped and
    the block's error is what the test reports.
    """
    for _ in range(3):  # another process may take the free port before the server binds it
        server = _start(database, log_path, workers, access_log, extra)
        if _wait_until_healthy(server):
            break
        server.exit_code = server.process.wait()
        if "cannot listen on" not in server.log():
            pytest.fail(f"`loyalty serve` exited with {server.exit_code} before answering; "
                        f"its log:\n{server.log()}")
    else:
        pytest.fail(f"`loyalty serve` found no free port in 3 tries; its log:\n{server.log()}")
    try:
        yield server
    except BaseException:
        server.stop()
        raise
    code = server.stop()
    log = server.log()
    assert code in exit_codes, (
        f"`loyalty serve` exited with {code} after SIGTERM (expected {exit_codes}); its "
        f"log:\n{log}")
    assert "Traceback" not in log, f"the server logged an unexpected error:\n{log}"


@contextmanager
def fresh_database(backend: str, folder: Path, request: pytest.FixtureRequest
                   ) -> Iterator[str]:
    """A fresh migrated database of `backend` for as long as the block runs, for fixtures
    wider than one test (tests/conftest.py's `db_url` is per test)."""
    yield from _fresh_database(backend, folder, request, migrated=True)


# --- what the HTTP tests send ------------------------------------------------------------
# The server dates "now" by the real clock and refuses events more than 15 minutes ahead
# of it, so events are dated in the past, relative to today.


def ago(days: int) -> str:
    """10:00 UTC, `days` or a little more before today, on a day that is neither a Tuesday
    (Bean There's double points) nor a Friday (its club bonus) in Amsterdam, so that points
    are plain euros."""
    date = datetime.now(UTC).date() - timedelta(days=days)
    day = datetime(date.year, date.month, date.day, 10, tzinfo=UTC)
    while day.astimezone(AMSTERDAM).weekday() in (1, 4):
        day -= timedelta(days=1)
    return day.isoformat()


def just_now() -> str:
    """A minute ago: as late as an event can be dated without racing the server's clock."""
    return (datetime.now(UTC) - timedelta(minutes=1)).isoformat()


def create_key(database: str, name: str, scope: str, *stores: str) -> str:
    """An API key made with the CLI, as an operator would (`apikeys create --json`); its
    bearer token."""
    args = ["apikeys", "create", "--name", name, "--scope", scope]
    for store in stores:
        args += ["--store", store]
    made = ok(*args, "--json", database=database).json()
    assert (made["name"], made["scope"]) == (name, scope), made
    token: str = made["token"]
    return token
