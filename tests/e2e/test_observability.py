"""What operators see of a running installation, over real HTTP and real processes:
`/metrics` of `loyalty serve` with two workers (counts across both), `/docs` and `/redoc`
with only local assets, JSON logs of `serve` and `scheduler run` (every line a JSON
object, never a key), and the scheduler's own metrics port."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api_support import bearer, purchase
from tests.e2e.cli import LOYALTY, SHIPPED_RULES, clean_env, ok, write_jsonl
from tests.e2e.cli import purchase as file_purchase
from tests.e2e.server import Server, ago, create_key, free_port, fresh_database, serving

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
SECRET_FRAGMENT = "never-in-a-log"


@dataclass
class Served:
    """`loyalty serve --workers 2 --log-format json` on one database."""

    backend: str
    db_url: str
    server: Server
    client: httpx2.Client
    token: str


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Served]:
    backend = str(request.param)
    folder = tmp_path_factory.mktemp(f"observe-{backend}")
    with fresh_database(backend, folder, request) as db_url:
        ok("rules", "apply", SHIPPED_RULES, database=db_url)
        token = create_key(db_url, "till-ams", "pos", "AMS-*")
        with serving(db_url, folder / "server.log", workers=2,
                     extra=("--log-format", "json")) as server, \
                httpx2.Client(base_url=server.url, timeout=30) as client:
            yield Served(backend, db_url, server, client, token)


def scrape(url: str) -> tuple[Samples, str]:
    """Every sample of GET /metrics by (name, labels); and the content type."""
    response = httpx2.get(url, timeout=30, headers={"Connection": "close"})
    assert response.status_code == 200, response.text
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples, response.headers["content-type"]


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every complete line of a log as a JSON object (a line that is not one fails)."""
    complete = text[: text.rfind("\n") + 1]
    lines = []
    for line in complete.splitlines():
        try:
            parsed = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"a log line is not JSON: {line!r}\nthe log:\n{text}")
        assert isinstance(parsed, dict), line
        assert {"time", "level", "logger", "message"} <= set(parsed), line
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", parsed["time"]), line
        assert parsed["level"] in {"debug", "info", "warning", "error", "critical"}, line
        lines.append(parsed)
    return lines


def test_metrics_count_requests_by_route_template_and_writes_by_outcome(
        served: Served) -> None:
    url = f"{served.server.url}/metrics"
    before, _ = scrape(url)
    member = f"M-OBS-{served.backend}"
    body = purchase(f"T-OBS-{served.backend}", member, occurred_at=ago(2))
    key = bearer(served.token)
    # Fresh connections, so that both workers take requests; the totals must not care.
    with httpx2.Client(base_url=served.server.url, timeout=30,
                       headers={"Connection": "close"}) as client:
        assert client.post("/v1/purchases", json=body, headers=key).status_code == 201
        replay = client.post("/v1/purchases", json=body, headers=key)
        assert (replay.status_code, replay.headers["Idempotent-Replayed"]) == (201, "true")
        refused = client.post("/v1/purchases", json={**body, "total": "1.00"}, headers=key)
        assert refused.status_code == 422, refused.text
        for _ in range(4):
            assert client.get(f"/v1/members/{member}", headers=key).status_code == 200
        assert client.get(f"/v1/members/{member}").status_code == 401  # refused unrouted
        assert client.get(f"/no/such/{member}").status_code == 404

    # Whichever worker answers the scrape, it reports all of them: three scrapes agree.
    scrapes = [scrape(url) for _ in range(3)]
    content_type = scrapes[0][1]
    assert content_type.startswith("text/plain") and "version=0.0.4" in content_type
    for after, _ in scrapes:
        def delta(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)  # noqa: B023

        requests = "loyalty_http_requests_total"
        # the replay answers as the first did: 201
        assert delta(requests, method="POST", route="/v1/purchases", status="201") == 2
        assert delta(requests, method="POST", route="/v1/purchases", status="422") == 1
        assert delta(requests, method="GET", route="/v1/members/{member_id}",
                     status="200") == 4
        assert delta(requests, method="GET", route="/v1/members/{member_id}",
                     status="401") == 1
        assert delta(requests, method="GET", route="unmatched", status="404") == 1
        latency = "loyalty_http_request_duration_seconds"
        assert delta(f"{latency}_count", method="POST", route="/v1/purchases") == 3
        assert delta(f"{latency}_bucket", method="GET", route="/v1/members/{member_id}",
                     le="+Inf") == 5
        assert delta(f"{latency}_sum", method="POST", route="/v1/purchases") > 0
        writes = "loyalty_writes_total"
        assert delta(writes, kind="purchase", outcome="recorded") == 1
        assert delta(writes, kind="purchase", outcome="replayed") == 1
        assert delta(writes, kind="purchase", outcome="refused") == 1
        # Bounded labels: no raw path, no member id.
        assert not [k for k in after if any(member in v for _, v in k[1])], after


def test_docs_and_redoc_load_only_local_assets(served: Served) -> None:
    shipped = resources.files("fastapi_offline") / "static"
    types = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
    for page in ("/docs", "/redoc"):
        html = served.client.get(page)
        assert html.status_code == 200, html.text
        assert html.headers["content-type"].startswith("text/html")
        assert "http://" not in html.text and "https://" not in html.text, html.text
        assert "//" not in re.sub(r"<!--.*?-->", "", html.text).replace("://", ""), html.text
        referenced = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html.text)
        assert any(r.endswith(".js") for r in referenced), html.text
        for reference in referenced:
            assert reference.startswith("/docs/assets/"), reference
            asset = served.client.get(reference)
            assert asset.status_code == 200, reference
            suffix = Path(reference).suffix
            assert asset.headers["content-type"].split(";")[0] == types[suffix], asset.headers
            assert asset.content == (shipped / Path(reference).name).read_bytes()
        assert "/openapi.json" in html.text
    assert served.client.get("/openapi.json").status_code == 200
    assert served.client.get("/docs/assets/..%2Fconsts.py").status_code == 404
    assert served.client.get("/docs/assets/core.py").status_code == 404


def test_serve_logs_are_json_lines_with_access_fields_and_never_a_key(
        served: Served) -> None:
    member = f"M-LOG-{served.backend}"
    key = bearer(served.token)
    assert served.client.get(f"/v1/members/{member}", headers=key).status_code in (200, 404)
    wrong = {"Authorization": f"Bearer {SECRET_FRAGMENT}-{served.token}"}
    assert served.client.get(f"/v1/members/{member}", headers=wrong).status_code == 401
    deadline = time.monotonic() + 20
    while True:
        lines = json_lines(served.server.log())
        access = [line for line in lines if line["logger"] == "loyalty.access"
                  and line["path"] == f"/v1/members/{member}"]
        if len(access) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [(a["method"], a["route"], a["status"]) for a in access] == [
        ("GET", "/v1/members/{member_id}", a["status"]) for a in access]
    assert {a["status"] for a in access} >= {401}, access
    assert all(isinstance(a["duration_ms"], float) and a["duration_ms"] >= 0 for a in access)
    [banner] = [line for line in lines if line["logger"] == "loyalty.serve"]
    assert banner["workers"] == 2 and banner["port"] == served.server.port, banner
    assert any(line["logger"].startswith("uvicorn") for line in lines), lines
    text = served.server.log()
    assert served.token not in text and SECRET_FRAGMENT not in text, text
    assert "authorization" not in text.lower(), text


def test_metrics_can_be_turned_off(sqlite_db_url: str, tmp_path: Path) -> None:
    with serving(sqlite_db_url, tmp_path / "server.log", extra=("--no-metrics",)) as server:
        response = httpx2.get(f"{server.url}/metrics", timeout=30)
        assert response.status_code == 404, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert httpx2.get(f"{server.url}/v1/health", timeout=30).status_code == 200
    # the text log stays as it was: the banner on stdout, uvicorn's lines, the access lines
    log = server.log()
    assert "serving sqlite:///" in log and '"GET /metrics HTTP/1.1" 404' in log, log


# --- the scheduler --------------------------------------------------------------------------

# 12.50 of beans and a 3.20 latte at Bean There: 28 points (worked out in
# tests/e2e/test_cli_scheduler.py), pending for 14 days, until 2026-03-28T09:30:00+01:00;
# a scheduler started on 1 April activates them in its catch-up.
COFFEE = [file_purchase("C1", "M-7", "2026-03-14T09:30:00+01:00",
                        [("BEANS-1KG", "coffee-beans", "1", "12.50"),
                         ("LATTE", "coffee", "1", "3.20")], "15.70", store_id="AMS-01")]


def test_scheduler_run_logs_json_and_serves_its_metrics(db_url: str, tmp_path: Path) -> None:
    ok("rules", "apply", SHIPPED_RULES, database=db_url)
    ok("purchases", "import", write_jsonl(tmp_path / "p.jsonl", COFFEE), database=db_url)
    port = free_port()
    log = tmp_path / "scheduler.log"
    with log.open("w", encoding="utf-8") as stderr:
        process = subprocess.Popen(
            [LOYALTY, "--database", db_url, "scheduler", "run", "--clock-start",
             "2026-04-01T12:00:00+02:00", "--log-format", "json", "--metrics-port",
             str(port)], env=clean_env(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=stderr, text=True)
        try:
            deadline = time.monotonic() + 60
            while not any(line["message"].startswith("scheduler running")
                          for line in json_lines(log.read_text(encoding="utf-8"))):
                assert process.poll() is None, log.read_text(encoding="utf-8")
                assert time.monotonic() < deadline, log.read_text(encoding="utf-8")
                time.sleep(0.1)
            samples, content_type = scrape(f"http://127.0.0.1:{port}/metrics")
            assert content_type.startswith("text/plain")
            process.send_signal(signal.SIGTERM)
            stdout, _ = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 0 and stdout == "", stdout
    lines = json_lines(log.read_text(encoding="utf-8"))
    assert lines[-1]["message"] == "scheduler stopped", lines
    runs = [line for line in lines if "outcome" in line]
    assert runs and all({"job", "program", "fire_time", "seconds", "counts"} <= set(r)
                        for r in runs), runs
    assert all(r["outcome"] == "ok" and r["level"] == "info" for r in runs), runs
    [activate] = [r for r in runs if (r["job"], r["program"]) == ("activate", "bean-there")]
    assert activate["counts"]["points"] == 28, activate
    # The catch-up's runs, all counted before "scheduler running" was logged.
    by_job: dict[tuple[str, str], int] = {}
    for r in runs:
        by_job[(r["job"], r["program"])] = by_job.get((r["job"], r["program"]), 0) + 1
    for (job, program), count in by_job.items():
        assert value(samples, "loyalty_scheduler_job_runs_total", job=job, program=program,
                     outcome="ok") == count
    assert value(samples, "loyalty_scheduler_job_effects_total", job="activate",
                 effect="points") == 28
    assert value(samples, "loyalty_scheduler_job_run_duration_seconds_count",
                 job="activate") == by_job[("activate", "bean-there")] + sum(
        c for (j, p), c in by_job.items() if j == "activate" and p != "bean-there")
