"""A member's insights over real HTTP after the scheduler's weekly RFM snapshot: `loyalty
scheduler tick --job rfm_snapshot` run by the CLI, then `loyalty serve` asked by a till
of the café's stores, as a POS screen would.

Hand-worked (Corner Café, tests/fixtures/programs/corner-cafe-insights.yaml, fixed
boundaries, Europe/Amsterdam): Dana buys 10.00 on the Mondays 5, 12, 19 and 26 January and
2 February 2026. The snapshot of Monday 2 March finds her last purchase 28 days back
(recency at most 30: R4), 5 purchases (5-8: F4), 50.00 spent (at most 50: M3): R4 F4 is
`loyal`. Asked on 3 March at noon: tenure from her enrolment at the first purchase, 5
January to 3 March = 26 + 28 + 3 = 57 days.
"""

from __future__ import annotations

from pathlib import Path

import httpx2

from tests.api_support import bearer
from tests.e2e.cli import Cli, purchase, write_jsonl
from tests.e2e.server import create_key, serving
from tests.e2e.test_cli_insights_loop import LATTE, PROGRAM


def test_insights_after_the_schedulers_rfm_snapshot(db_url: str, tmp_path: Path) -> None:
    cli = Cli(db_url, tmp_path)
    (tmp_path / "cafe.yaml").write_text(PROGRAM.read_text(encoding="utf-8"), encoding="utf-8")
    cli.ok("rules", "apply", "cafe.yaml", "--effective-from", "2026-01-01T00:00:00+01:00")
    write_jsonl(tmp_path / "winter.jsonl", [
        purchase(f"D{n}", "M-DANA", f"{day}T10:00:00+01:00", LATTE, "10.00", store_id="CC-01")
        for n, day in enumerate(
            ["2026-01-05", "2026-01-12", "2026-01-19", "2026-01-26", "2026-02-02"], start=1)])
    cli.ok("purchases", "import", "winter.jsonl")
    till = create_key(db_url, "till-cc", "pos", "CC-*")
    elsewhere = create_key(db_url, "till-ams", "pos", "AMS-*")
    with serving(db_url, tmp_path / "server.log") as server, \
            httpx2.Client(base_url=server.url, timeout=30) as client:

        def insights(token: str) -> httpx2.Response:
            return client.get("/v1/members/M-DANA/insights", headers=bearer(token),
                              params={"as_of": "2026-03-03T12:00:00+01:00"})

        before = insights(till)
        assert before.status_code == 200, before.text
        [unscored] = before.json()["programs"]
        assert (unscored["program_id"], unscored["segment"], unscored["rfm"]) == (
            "corner-cafe", None, None)

        cli.ok("scheduler", "tick", "--job", "rfm_snapshot", "--as-of",
               "2026-03-02T06:00:00+01:00", "--allow-future")
        after = insights(till)
        assert after.status_code == 200, after.text
        assert after.headers["content-type"].startswith("application/json")
        [cafe] = after.json()["programs"]
        assert cafe["program_id"] == "corner-cafe" and cafe["currency"] == "EUR"
        assert (cafe["snapshot_date"], cafe["segment"]) == ("2026-03-02", "loyal"), cafe
        rfm = cafe["rfm"]
        assert (rfm["r"], rfm["f"], rfm["m"]) == (4, 4, 3), rfm
        assert (rfm["recency_days"], rfm["frequency"], rfm["monetary"]) == (28, 5, "50.00")
        assert cafe["tenure_days"] == 57
        # A till of other stores may not see a member enrolled only where it does not take
        # part (the same 403 as GET /v1/members/{id}).
        hidden = insights(elsewhere)
        assert hidden.status_code == 403, hidden.text
        assert hidden.headers["content-type"] == "application/problem+json"
        assert hidden.json()["type"] == "urn:loyalty-engine:problem:forbidden-member"
