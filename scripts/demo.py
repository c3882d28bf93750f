"""One command from a fresh clone to the demo: set up .venv, then `loyalty demo`.

    python3 scripts/demo.py [demo options, e.g. --members 500 --seed 7]
"""

from __future__ import annotations

import sys

from _bootstrap import ensure_environment, run

if __name__ == "__main__":
    bin_dir = ensure_environment()
    sys.exit(run([str(bin_dir / "loyalty"), "demo", *sys.argv[1:]]))
