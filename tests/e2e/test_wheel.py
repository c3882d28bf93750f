"""The wheel as a user gets it: built, installed into a throw-away venv, run from elsewhere.

Built and installed by the Dockerfile's own two pip commands (tests/container_files.py maps
their container paths to folders here): `pip wheel` in a copy of the build context its first
stage copies, less what .dockerignore leaves out, then `pip install -c constraints.txt` of
that wheel alone; so this also shows the image gets a working wheel (Docker itself is not on
this machine). setuptools writes build/ and *.egg-info beside the sources: the copy takes
them, the source tree stays clean. Every command runs from a folder outside the source tree,
and a guard in the venv (an audit hook loaded by a .pth file) records any file of the source
tree or its copy that a process opens or lists: the installed package must need neither.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from loyalty_engine.store.migrate import SCHEMA_REVISION
from tests.container_files import (
    copy_build_context,
    dockerfile_stages,
    host_argv,
    ignored,
    runs,
)
from tests.e2e.cli import ROOT, Result, assert_one_sentence_error, ok, run

INSTALL_TIMEOUT_S = 600
# The programs the demo applies, and the ids of the shipped files.
PROGRAMS = ["bean-there", "big-box", "campus-books", "fresh-market", "glow-beauty"]

GUARD = '''\
"""Test aid (tests/e2e/test_wheel.py): log every file under $LOYALTY_FORBIDDEN_ROOTS that
this process opens or lists to $LOYALTY_FORBIDDEN_LOG, and one "active" line per process."""
import os
import sys

_roots = [r for r in os.environ.get("LOYALTY_FORBIDDEN_ROOTS", "").split(os.pathsep) if r]
_log = os.environ.get("LOYALTY_FORBIDDEN_LOG")
if _roots and _log:
    _fd = os.open(_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(_fd, b"active\\n")

    def _forbidden(path):
        full = os.path.abspath(os.fsdecode(path))
        return any(full == r or full.startswith(r + os.sep) for r in _roots)

    def _hook(event, args):
        if event in ("open", "os.listdir", "os.scandir") and args and \\
                isinstance(args[0], (str, bytes, os.PathLike)) and _forbidden(args[0]):
            os.write(_fd, f"{event} {os.fsdecode(args[0])}\\n".encode())

    sys.addaudithook(_hook)
'''


@dataclass(frozen=True)
class Installed:
    """A throw-away venv with the wheel installed, and where things are."""

    wheel: Path
    python: Path
    loyalty: Path
    site_packages: Path
    source_copy: Path
    guard_log: Path
    work: Path

    @property
    def env(self) -> dict[str, str]:
        return {"LOYALTY_FORBIDDEN_ROOTS": os.pathsep.join([str(ROOT), str(self.source_copy)]),
                "LOYALTY_FORBIDDEN_LOG": str(self.guard_log),
                "PYTHONPATH": "", "PYTHONNOUSERSITE": "1"}

    def ok(self, *args: str | Path, database: str | None = None) -> Result:
        return ok(*args, database=database, cwd=self.work, env=self.env, program=self.loyalty,
                  timeout=120)

    def run(self, *args: str | Path, database: str | None = None) -> Result:
        return run(*args, database=database, cwd=self.work, env=self.env,
                   program=self.loyalty, timeout=120)

    def guard_lines(self) -> list[str]:
        return self.guard_log.read_text("utf-8").splitlines() if self.guard_log.exists() else []


def _check(argv: list[str | Path], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=INSTALL_TIMEOUT_S,
                          stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 0, f"$ {' '.join(map(str, argv))}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _pip(python: Path | str, command: str, paths: dict[str, Path]) -> list[str | Path]:
    """A pip command of the Dockerfile as the test runs it: with python's pip, the container
    paths mapped, quiet, and with pip's cache (the image leaves it out of its layers; here
    it makes the install quick)."""
    argv = host_argv(command, paths)
    assert argv[0] == "pip", f"not a pip command: {command}"
    return [python, "-m", "pip", "--quiet",
            *(word for word in argv[1:] if word != "--no-cache-dir")]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    top_level = sorted(p.name for p in ROOT.iterdir())
    build_stage, final_stage = dockerfile_stages()[0], dockerfile_stages()[-1]

    # The Dockerfile's build stage: its COPYs into a folder that stands for its WORKDIR,
    # then its one RUN, `pip wheel ... --wheel-dir DIST .`, there.
    source = base / "source"
    copy_build_context(source)
    [build] = runs(build_stage)
    words = build.command.split()
    wheel_dir = words[words.index("--wheel-dir") + 1]
    dist = base / "dist"
    _check(_pip(sys.executable, build.command,
                {build_stage.all("WORKDIR")[-1]: source, wheel_dir: dist}), cwd=source)
    (wheel,) = dist.glob("loyalty_engine-*.whl")

    # The final stage's install, in a new venv: from the test's interpreter, but with only
    # its base Python (nothing of the editable install the tests themselves run on), its
    # mounts standing for the build stage's wheels and the context's constraints.txt.
    venv = base / "venv"
    _check([sys.executable, "-m", "venv", venv], cwd=base)
    python = venv / "bin" / "python"
    [install] = [r for r in runs(final_stage) if r.command.startswith("pip ")]
    mounts = {m.target: dist if m.from_stage == build_stage.name else ROOT / m.source
              for m in install.mounts}
    assert {m.source for m in install.mounts if m.from_stage} == {wheel_dir}
    assert not any(ignored(m.source) for m in install.mounts if m.from_stage is None)
    _check(_pip(python, install.command, mounts), cwd=base)

    site_packages = Path(_check(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        cwd=base).strip())
    (site_packages / "_loyalty_source_guard.py").write_text(GUARD, encoding="utf-8")
    (site_packages / "_loyalty_source_guard.pth").write_text("import _loyalty_source_guard\n",
                                                              encoding="utf-8")
    work = base / "work"
    work.mkdir()
    # Nothing was built or left in the source tree (no build/, dist/ or *.egg-info there).
    assert sorted(p.name for p in ROOT.iterdir()) == top_level
    return Installed(wheel, python, venv / "bin" / "loyalty", site_packages, source,
                     base / "guard.log", work)


def test_the_guard_sees_a_read_of_the_source_tree(installed: Installed) -> None:
    # The check the other tests rely on can fail: a process that reads the source tree is
    # logged (a file opened, a folder listed).
    log = installed.guard_log.with_name("guard-probe.log")
    subprocess.run(
        [installed.python, "-c", f"import os; open({str(ROOT / 'pyproject.toml')!r}).close(); "
                                 f"os.listdir({str(ROOT / 'rules')!r})"],
        cwd=installed.work, env={**os.environ, **installed.env,
                                 "LOYALTY_FORBIDDEN_LOG": str(log)}, check=True)
    assert log.read_text("utf-8").splitlines() == [
        "active", f"open {ROOT / 'pyproject.toml'}", f"os.listdir {ROOT / 'rules'}"]


def test_the_wheel_holds_the_migrations_and_the_example_programs(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
    assert {n.split("/")[0] for n in names} == {
        "loyalty_engine", installed.wheel.name.split("-py3")[0] + ".dist-info"}
    migrations = {p.name for p in (ROOT / "migrations" / "versions").glob("*.py")}
    assert {n.rsplit("/", 1)[1] for n in names
            if n.startswith("loyalty_engine/migrations/versions/")} == migrations
    assert {"loyalty_engine/migrations/env.py",
            "loyalty_engine/migrations/script.py.mako"} <= names
    examples = {p.name for p in (ROOT / "rules").glob("*.yaml")}
    assert {n.rsplit("/", 1)[1] for n in names
            if n.startswith("loyalty_engine/examples/") and n.endswith(".yaml")} == examples


def test_the_installed_wheel_works_from_another_folder(installed: Installed) -> None:
    before = len(installed.guard_lines())
    version = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]["version"]
    assert installed.ok("--version").stdout == f"loyalty-engine {version}\n"

    # The package imported is the installed one, not the source tree.
    where = _check([installed.python, "-c",
                    "import loyalty_engine; print(loyalty_engine.__file__)"],
                   cwd=installed.work, env=installed.env).strip()
    assert Path(where) == installed.site_packages / "loyalty_engine" / "__init__.py"

    database = f"sqlite:///{installed.work / 'operator.db'}"
    upgraded = installed.ok("db", "upgrade", database=database)
    assert upgraded.out_flat == f"migrated {database} from empty to {SCHEMA_REVISION}"

    # The shipped programs, where the wheel put them, byte for byte the repository's.
    listed = installed.ok("rules", "examples", "--json").json()
    folder = Path(listed["folder"])
    assert folder == installed.site_packages / "loyalty_engine" / "examples"
    assert [p["program"] for p in listed["programs"]] == PROGRAMS
    for p in listed["programs"]:
        assert Path(p["path"]).read_bytes() == (ROOT / "rules" / p["file"]).read_bytes()
    validated = installed.ok("rules", "validate", folder)
    assert [line.split(": ok")[0] for line in validated.out_lines] == [
        p["path"] for p in listed["programs"]]

    # Written out to start from, checked and applied to the migrated database.
    installed.ok("rules", "examples", "programs")
    installed.ok("rules", "validate", "programs")
    applied = installed.ok("rules", "apply", "programs", "--json", database=database).json()
    assert [(r["program"], r["version"], r["created"]) for r in applied] == [
        (program, 1, True) for program in PROGRAMS]

    demo_db = f"sqlite:///{installed.work / 'demo.db'}"
    demo = installed.ok("demo", "--members", "20", "--database", demo_db,
                        "--as-of", "2026-06-01T00:00:00+00:00")
    summary = demo.out_flat
    assert (f"programs applied: {', '.join(f'{p} v1' for p in PROGRAMS)}; year ending "
            "2026-06-01T00:00:00+00:00, seed 42") in summary, str(demo)
    assert "20 members joined the Bean Club with their first purchase." in summary, str(demo)
    assert "Posting the whole year again changed 0 purchases" in summary, str(demo)
    check = installed.ok("db", "check", "--json", database=demo_db).json()
    assert check["mismatches"] == [] and check["balances_checked"] >= 20

    # Ten processes ran with the guard on, and none touched the source tree or its copy.
    assert installed.guard_lines()[before:] == ["active"] * 10


def test_the_installed_wheel_serves_its_docs_assets_and_metrics(installed: Installed) -> None:
    # /docs and /redoc load their scripts from an installed package, never a CDN; the
    # wheel's dependencies (pinned by constraints.txt) bring them and the metrics client.
    code = ("from loyalty_engine.api.docs_assets import ASSETS, asset; "
            "from loyalty_engine import metrics; "
            "print(sorted((n, len(asset(n)) > 1000) for n in ASSETS)); "
            "print(b'loyalty_http_requests' in metrics.exposition())")
    shown = _check([installed.python, "-c", code], cwd=installed.work, env=installed.env)
    assert shown.splitlines() == [
        "[('favicon.png', True), ('redoc.standalone.js', True), "
        "('swagger-ui-bundle.js', True), ('swagger-ui.css', True)]", "True"]


def test_the_installed_wheel_migrates_and_applies_on_each_database(
    installed: Installed, empty_db_url: str
) -> None:
    before = len(installed.guard_lines())
    installed.ok("db", "upgrade", database=empty_db_url)
    current = installed.ok("db", "current", "--json", database=empty_db_url).json()
    assert (current["current"], current["head"], current["up_to_date"]) == (
        SCHEMA_REVISION, SCHEMA_REVISION, True)
    folder = installed.ok("rules", "examples", "--json").json()["folder"]
    applied = installed.ok("rules", "apply", folder, "--json", database=empty_db_url).json()
    assert [r["program"] for r in applied] == PROGRAMS
    assert installed.guard_lines()[before:] == ["active"] * 4


@pytest.mark.parametrize(("folder", "command", "as_json", "what"), [
    ("examples", ("rules", "examples"), ("rules", "examples", "--json"), "the example programs"),
    ("migrations", ("db", "upgrade"), ("db", "current", "--json"), "the database migrations"),
])
def test_an_installation_without_its_shipped_files_says_so(
    installed: Installed, folder: str, command: tuple[str, ...], as_json: tuple[str, ...],
    what: str, tmp_path: Path
) -> None:
    # A damaged installation (a folder of the package deleted by hand, say): one sentence
    # that names what is missing and how to repair it, and a stable code under --json.
    shipped = installed.site_packages / "loyalty_engine" / folder
    aside = installed.site_packages / f"loyalty_engine-{folder}-aside"
    database = f"sqlite:///{tmp_path / 'damaged.db'}"
    shipped.rename(aside)
    try:
        refused = installed.run(*command, database=database)
        assert_one_sentence_error(refused, f"{what} that ship with loyalty-engine are missing",
                                  "pip install --force-reinstall loyalty-engine")
        assert not (tmp_path / "damaged.db").exists()  # refused before any file was made
        answered = installed.run(*as_json, database=database)
        assert answered.code == 1 and answered.stdout == "", str(answered)
        assert json.loads(answered.stderr)["error"] == "package_incomplete", str(answered)
    finally:
        aside.rename(shipped)
    repaired = installed.ok(*command, database=database)  # repaired, it works again
    if folder == "migrations":  # and the refused upgrade had left nothing half done
        assert repaired.out_flat == f"migrated {database} from empty to {SCHEMA_REVISION}"
