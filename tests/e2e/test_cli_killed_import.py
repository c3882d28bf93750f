"""An import killed with SIGKILL mid-file leaves nothing behind, and a re-run is exact."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.e2e.cli import LOYALTY, RULES_DIR, listed_members, ok, purchase, write_jsonl

PURCHASES = 30_000


def _big_file(path: Path) -> Path:
    return write_jsonl(path, [
        purchase(f"K-{n:06d}", f"M-{n % 500:04d}", "2026-02-01T10:00:00+01:00",
                 [("FLAT-WHITE", "coffee", "1", "3.60"), ("CROISSANT", "pastry", "2", "2.20")],
                 "8.00")
        for n in range(PURCHASES)
    ])


def test_import_killed_mid_file_stores_nothing_and_a_rerun_is_exact(
    db_url: str, tmp_path: Path
) -> None:
    ok("rules", "apply", RULES_DIR, database=db_url)
    data = _big_file(tmp_path / "big.jsonl")
    env = {k: v for k, v in os.environ.items() if k != "LOYALTY_DEBUG"}
    env["LOYALTY_DATABASE_URL"] = db_url
    process = subprocess.Popen([LOYALTY, "purchases", "import", str(data)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Kill it once it has surely written batches (2,000 purchases each) but not finished.
    time.sleep(2.0)
    assert process.poll() is None, "the import finished before it could be killed; grow the file"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)

    assert ok("members", "list", "--json", database=db_url).json()["total"] == 0
    report = ok("purchases", "import", data, "--json", database=db_url).json()
    assert report["recorded"] == PURCHASES and report["replayed"] == 0
    # 3.60 + 4.40 = 8.00 EUR earns 8 points each; 60 purchases per member.
    members = listed_members(ok("members", "list", "--limit", "1000", "--json",
                                  database=db_url).json())
    assert len(members) == 500
    assert {m["points"] for m in members} == {60 * 8}
    ok("db", "check", database=db_url)
