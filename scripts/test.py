"""One command from a fresh clone to the whole test suite: set up .venv, then pytest.

    python3 scripts/test.py [pytest options, e.g. -k import -x]

The PostgreSQL half runs when LOYALTY_TEST_POSTGRES_URL is set or a server answers at
127.0.0.1:5432, and the run says clearly when it is skipped; LOYALTY_REQUIRE_POSTGRES=1
makes a missing server a failure (as .ci/run does).
"""

from __future__ import annotations

import sys

from _bootstrap import ensure_environment, run

if __name__ == "__main__":
    bin_dir = ensure_environment()
    sys.exit(run([str(bin_dir / "python"), "-m", "pytest", *sys.argv[1:]]))
