"""Set-up shared by scripts/demo.py and scripts/test.py: a .venv with pinned dependencies.

Needs only Python 3.11+. Creates .venv beside the project on first use and installs the
project (editable) with its dev tools, pinned by constraints.txt; later runs re-install
only when pyproject.toml or constraints.txt changed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".loyalty-installed"


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "constraints.txt"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def ensure_environment() -> Path:
    """The bin directory of a .venv that has the project and its pinned dependencies."""
    if sys.version_info < (3, 11):  # noqa: UP036 (the user may run an older python3)
        sys.exit(f"loyalty-engine needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    python = BIN / ("python.exe" if os.name == "nt" else "python")
    if not python.exists():
        print(f"creating {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    fingerprint = _fingerprint()
    if not STAMP.exists() or STAMP.read_text() != fingerprint:
        print("installing loyalty-engine and its pinned dependencies ...", flush=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "-c", str(ROOT / "constraints.txt"), "-e", f"{ROOT}[dev]"],
            check=True,
        )
        STAMP.write_text(fingerprint)
    return BIN


def run(argv: list[str]) -> int:
    """Run a command from the .venv in the project directory; returns its exit code."""
    return subprocess.run(argv, cwd=ROOT).returncode
