"""Logs and metrics, pure: secrets blanked, JSON lines with their fields, the log options
from the command line, the environment and the config file, and the metric labels."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from loyalty_engine.api.observe import metrics_enabled, write_kind, write_outcome
from loyalty_engine.cli.app import app
from loyalty_engine.cli.config import load_config
from loyalty_engine.cli.logs import JsonFormatter, TextFormatter, dict_config, redact

ROOT_COMMAND = typer.main.get_command(app)


@pytest.mark.parametrize(("text", "shown"), [
    ("Authorization: Bearer lk_abc_SECRET", "Authorization: Bearer [redacted]"),
    ("headers {'authorization': 'lk_abc_SECRET'}", "headers {'authorization': '[redacted]'}"),
    ("sent bearer lk_abc_SECRET, twice", "sent bearer [redacted], twice"),
    ("postgresql://loyalty:SECRET@db:5432/x", "postgresql://loyalty:***@db:5432/x"),
    ("GET /v1/members/M-1 200", "GET /v1/members/M-1 200"),
])
def test_secrets_are_blanked_in_any_message(text: str, shown: str) -> None:
    assert redact(text) == shown


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("loyalty.test", logging.WARNING, __file__, 1, message, args,
                               None)
    record.__dict__.update(extra)
    return record


def test_a_json_line_has_time_level_logger_message_and_the_fields() -> None:
    record = _record("%s of %s: Bearer %s", "activate", "bean-there", "lk_x_SECRET",
                     job="activate", program="bean-there", counts={"points": 28},
                     note="token Bearer lk_x_SECRET")
    record.created = 1_800_000_000.25
    line = json.loads(JsonFormatter().format(record))
    assert line == {"time": "2027-01-15T08:00:00.250Z", "level": "warning",
                    "logger": "loyalty.test", "pid": record.process,
                    "message": "activate of bean-there: Bearer [redacted]",
                    "job": "activate", "program": "bean-there", "counts": {"points": 28},
                    "note": "token Bearer [redacted]"}
    text = TextFormatter().format(_record("key Bearer lk_x_SECRET"))
    assert text.endswith("WARNING loyalty.test: key Bearer [redacted]"), text


def test_a_json_line_carries_the_traceback_of_an_error() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("loyalty.api", logging.ERROR, __file__, 1, "failed",
                                   None, sys.exc_info())
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "failed" and "ValueError: boom" in line["exception"], line
    assert "\n" not in JsonFormatter().format(record)  # one line, whatever the traceback


def _serve_params(args: list[str], default_map: dict[str, object] | None = None
                  ) -> dict[str, object]:
    command = ROOT_COMMAND.commands["serve"]  # type: ignore[attr-defined]
    ctx = command.make_context("serve", args, default_map=default_map)
    return {k: str(getattr(v, "value", v)) for k, v in ctx.params.items()
            if k.startswith("log_")}


def test_log_options_come_from_the_line_the_environment_or_the_config_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOYALTY_LOG_FORMAT", raising=False)
    monkeypatch.delenv("LOYALTY_LOG_LEVEL", raising=False)
    path = tmp_path / "loyalty.toml"
    path.write_text('[serve]\nlog-format = "json"\nlog-level = "warning"\n'
                    '[scheduler.run]\nlog-format = "json"\n', encoding="utf-8")
    found = load_config(path, ROOT_COMMAND).defaults
    assert found["scheduler"] == {"run": {"log_format": "json"}}
    assert _serve_params([]) == {"log_format": "text", "log_level": "info"}
    assert _serve_params([], found["serve"]) == {"log_format": "json", "log_level": "warning"}
    monkeypatch.setenv("LOYALTY_LOG_FORMAT", "text")
    monkeypatch.setenv("LOYALTY_LOG_LEVEL", "DEBUG")
    assert _serve_params([], found["serve"]) == {"log_format": "text", "log_level": "debug"}
    assert _serve_params(["--log-format", "json", "--log-level", "error"], found["serve"]) == {
        "log_format": "json", "log_level": "error"}
    with pytest.raises(typer._click.exceptions.BadParameter):
        _serve_params(["--log-format", "xml"])


def test_the_access_log_can_be_switched_off_alone() -> None:
    on = dict_config("json", "info")
    off = dict_config("json", "info", access_log=False)
    assert on["loggers"]["loyalty.access"]["level"] == "INFO"
    assert off["loggers"]["loyalty.access"]["level"] == "CRITICAL"
    assert off["root"]["level"] == "INFO"
    assert on["formatters"]["main"]["()"] == "loyalty_engine.cli.logs.JsonFormatter"
    assert dict_config("text", "debug")["loggers"]["apscheduler"]["level"] == "WARNING"


def test_the_cli_does_not_load_the_metrics_client_before_serve_sets_its_folder() -> None:
    # prometheus-client decides between one process and several when first imported: if
    # the CLI imported it before `serve` set PROMETHEUS_MULTIPROC_DIR, a single worker
    # would count in memory and /metrics would read the empty folder.
    # Every command is loaded, as `loyalty --help` does (the root imports each command's
    # module only when it runs: cli/lazy_group.py).
    code = ("import sys, loyalty_engine.cli.app; "
            "from loyalty_engine.cli.lazy_group import COMMANDS, load; "
            "[load(*command) for command in COMMANDS]; "
            "print(sorted(m for m in sys.modules if m.startswith('prometheus_client')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


@pytest.mark.parametrize(("route", "kind"), [
    ("/v1/purchases", "purchase"), ("/v1/refunds", "refund"), ("/v1/members", "enrolment"),
    ("/v1/redemptions", "redemption"), ("/v1/redemptions/{redemption_id}/reverse", "reversal"),
    ("/v1/fees/{charge_id}/pay", "fee_payment"),
    ("/v1/members/{member_id}/adjustments", "adjustments"),  # a route added later
])
def test_writes_are_counted_by_kind(route: str, kind: str) -> None:
    assert write_kind(route) == kind


def test_write_outcomes_and_the_metrics_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    assert [write_outcome(s, r) for s, r in [(201, False), (201, True), (200, True),
                                             (409, False), (422, False), (503, False)]] == [
        "recorded", "replayed", "replayed", "refused", "refused", "failed"]
    monkeypatch.delenv("LOYALTY_METRICS", raising=False)
    assert metrics_enabled() and not metrics_enabled(False)
    monkeypatch.setenv("LOYALTY_METRICS", "off")
    assert not metrics_enabled() and metrics_enabled(True)


def test_an_unknown_method_is_counted_as_other_under_the_route_template() -> None:
    import asyncio

    from prometheus_client import REGISTRY
    from starlette.routing import Route

    from loyalty_engine.api.observe import Observe

    async def teapot(scope: object, receive: object, send: Any) -> None:
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def ignore(message: object) -> None:
        return None

    async def nothing() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    routes = [Route("/v1/pots/{pot_id}", teapot, methods=["GET"])]
    scope = {"type": "http", "method": "BREW", "path": "/v1/pots/P-7", "root_path": "",
             "headers": [], "client": ("127.0.0.1", 5)}
    labels = {"method": "other", "route": "/v1/pots/{pot_id}", "status": "418"}
    before = REGISTRY.get_sample_value("loyalty_http_requests_total", labels) or 0.0
    asyncio.run(Observe(teapot, routes)(scope, nothing, ignore))
    assert REGISTRY.get_sample_value("loyalty_http_requests_total", labels) == before + 1
