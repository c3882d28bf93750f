"""The README, run as a newcomer would: every ```bash block, in order, in a fresh copy of
the project; each command must end as its comment says (exit 0 unless `# exit N`), with no
traceback. Blocks whose first line is `# needs: ...` are run by tests of their own here (a
running server, PostgreSQL) or elsewhere (the test suite is what runs this; Docker has no
engine on this machine), and a test makes sure no block needs anything else."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import drop_database, need_postgres
from tests.e2e.cli import clean_env
from tests.e2e.server import free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
# What a `# needs:` block may need, and where it is run.
KNOWN_NEEDS = {
    "server": "test_the_servers_of_the_readme_start_answer_and_stop",
    "postgres": "test_the_readme_postgres_block_migrates_a_new_database",
    "suite": "scripts/test.py is this suite: CI runs it",
    "docker": "no Docker engine here: tests/e2e/test_packaging.py checks the files",
}
COMMAND_TIMEOUT_S = 120
# The whole tour: about 60 commands, 1 to 3 s each on a quiet 2-core machine.
TOUR_TIMEOUT_S = 900


@dataclass(frozen=True, slots=True)
class Block:
    """A ```bash block of the README: where it starts, what it needs, its text."""

    line: int
    needs: str | None
    text: str

    @property
    def commands(self) -> list[tuple[int, str, int]]:
        """(README line, command, expected exit code) of each command: continued lines
        joined, comment-only lines skipped, `# exit N` in a comment read as expected."""
        found: list[tuple[int, str, int]] = []
        pending: list[str] = []
        start = 0
        for offset, raw in enumerate(self.text.splitlines()):
            if not pending and (not raw.strip() or raw.lstrip().startswith("#")):
                continue
            if not pending:
                start = self.line + 1 + offset
            pending.append(raw)
            if raw.rstrip().endswith("\\"):
                continue
            command = "\n".join(pending)
            expected = re.search(r"#\s*exit (\d+)\b", command)
            found.append((start, command, int(expected.group(1)) if expected else 0))
            pending = []
        return found


def readme_blocks() -> list[Block]:
    """Every ```bash block of the README, in order."""
    blocks = []
    lines = README.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        if lines[index].strip() == "```bash":
            start = index + 1
            end = lines.index("```", start)
            body = lines[start:end]
            first = body[0].strip() if body else ""
            needs = first.removeprefix("# needs:").split()[0] if first.startswith(
                "# needs:") else None
            blocks.append(Block(start, needs, "\n".join(body)))
            index = end
        index += 1
    return blocks


def _fresh_copy(target: Path) -> Path:
    """The project's tracked files copied to target, with the test run's .venv beside them
    (as after `python3 scripts/demo.py` on a fresh clone, without installing again)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    # The copy's commands set up .venv as a newcomer's would; bring the shared .venv up to
    # date here first, so that they find it current and never install it again (editable)
    # from the throw-away copy, which would leave the rest of the run importing from there.
    subprocess.run([sys.executable, str(ROOT / "scripts" / "test.py"), "--version"], cwd=ROOT,
                   check=True, capture_output=True, timeout=COMMAND_TIMEOUT_S)
    (target / ".venv").symlink_to(ROOT / ".venv")
    return target


def _environment(home: Path) -> dict[str, str]:
    env = clean_env()
    env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")})
    # A newcomer's shell: the system's python3 first, no virtual environment active yet.
    env.pop("VIRTUAL_ENV", None)
    venv_bin = str(ROOT / ".venv" / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p != venv_bin)
    return env


@dataclass
class Tour:
    """The README's plain blocks, run in order in one shell: what each command did."""

    folder: Path
    env: dict[str, str]
    results: list[tuple[int, str, int, int, str]]  # line, command, expected, got, output


def _script(commands: list[tuple[int, str, int]], log: Path) -> str:
    """One bash script that runs each command in the same shell (so `source` and `export`
    carry over), writing its exit code and output to the log for the test to read."""
    parts = []
    for number, (_line, command, _expected) in enumerate(commands):
        out = log / f"{number}.out"
        parts.append(f"{{\n{command}\n}} >{out} 2>&1 </dev/null\n"
                     f"echo $? >{log / f'{number}.rc'}\n")
    return "".join(parts)


@pytest.fixture(scope="module")
def tour(tmp_path_factory: pytest.TempPathFactory) -> Tour:
    folder = _fresh_copy(tmp_path_factory.mktemp("fresh-clone"))
    home = tmp_path_factory.mktemp("home")
    log = tmp_path_factory.mktemp("readme-log")
    commands = [c for block in readme_blocks() if block.needs is None for c in block.commands]
    script = folder / "readme.sh"
    script.write_text(_script(commands, log), encoding="utf-8")
    env = _environment(home)
    subprocess.run(["bash", str(script)], cwd=folder, env=env, check=False,
                   timeout=TOUR_TIMEOUT_S, stdin=subprocess.DEVNULL)
    results = []
    for number, (line, command, expected) in enumerate(commands):
        rc_file = log / f"{number}.rc"
        got = int(rc_file.read_text()) if rc_file.exists() else -1
        output = (log / f"{number}.out").read_text(encoding="utf-8", errors="replace") \
            if (log / f"{number}.out").exists() else ""
        results.append((line, command, expected, got, output))
    return Tour(folder, env, results)


def test_every_block_that_is_not_run_here_says_what_it_needs() -> None:
    blocks = readme_blocks()
    assert len(blocks) >= 8
    for block in blocks:
        assert block.needs is None or block.needs in KNOWN_NEEDS, (
            f"README.md:{block.line}: a block needs {block.needs!r}, which no test runs; "
            f"use one of {', '.join(KNOWN_NEEDS)}")
    assert {b.needs for b in blocks} >= {None, "server", "postgres", "suite"}


def test_the_readme_runs_in_order(tour: Tour) -> None:
    assert len(tour.results) >= 50, "the README's commands were not all found"
    for line, command, expected, got, output in tour.results:
        where = f"README.md:{line}: `{command.strip()}`"
        assert got == expected, f"{where} exited {got}, not {expected}:\n{output}"
        assert "Traceback" not in output, f"{where} printed a traceback:\n{output}"
        if expected:
            assert output.strip(), f"{where} failed without saying why"
    outputs = {command.split("#")[0].strip(): output
               for _, command, _, _, output in tour.results}
    # A few outcomes the README's comments promise, checked against the real output.
    assert "loyalty-engine demo" in outputs["python3 scripts/demo.py"]
    assert "0 recorded, 4 already recorded" in " ".join(
        outputs["loyalty purchases import docs/examples/purchases.jsonl"].split())
    assert "nothing was imported" in outputs[
        "loyalty purchases import docs/examples/bad-purchases.jsonl"]
    assert '"ahead"' in outputs["loyalty scheduler tick --job review-tiers --json"]
    assert "before where the scheduler has already run" in outputs[
        "loyalty scheduler tick --as-of 2027-01-01T00:00:00+01:00 --allow-future"]


def _server_block(text: str) -> Block:
    found = [b for b in readme_blocks() if b.needs == "server" and text in b.text]
    assert len(found) == 1, f"no single server block of the README holds {text!r}"
    return found[0]


def test_the_servers_of_the_readme_start_answer_and_stop(tour: Tour) -> None:
    # The scheduler, on the tour's database, whose watermarks the tour rewound: it catches
    # up to now and keeps running until SIGTERM.
    [(line, command, _)] = _server_block("loyalty scheduler run").commands
    env = {**tour.env, "LOYALTY_DATABASE_URL": "sqlite:///tour.db",
           "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{tour.env['PATH']}"}
    log = tour.folder / "scheduler.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=tour.folder,
                                   env=env, stdout=sink, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while "scheduler running" not in log.read_text(errors="replace"):
            assert process.poll() is None, f"README.md:{line}: `{command}` ended:\n" \
                                           f"{log.read_text(errors='replace')}"
            assert time.monotonic() < deadline, "the scheduler did not start in 60 s"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    text = log.read_text(errors="replace")
    assert code == 0 and "scheduler stopped" in text and "Traceback" not in text, text

    # The HTTP walk-through, on a free port instead of 8000, on the same database.
    block = _server_block("loyalty serve --port 8000")
    port = free_port()
    script = tour.folder / "walk-through.sh"
    script.write_text("source .venv/bin/activate\nexport LOYALTY_DATABASE_URL=sqlite:///tour.db\n"
                      "trap 'kill $(jobs -p) 2>/dev/null' EXIT\nset -e\n"
                      + block.text.replace("8000", str(port)) + "\n", encoding="utf-8")
    done = subprocess.run(["bash", str(script)], cwd=tour.folder, env=tour.env,
                          capture_output=True, text=True, timeout=120, check=False)
    where = f"README.md:{block.line}: the HTTP walk-through"
    assert done.returncode == 0, f"{where} failed:\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stdout + done.stderr
    assert '"transaction_id":"T-1001"' in done.stdout, done.stdout
    assert '"points":{"bean-there":7}' in done.stdout, done.stdout
    assert '"member_id":"M-ANNA"' in done.stdout and '"program_id":"bean-there"' in done.stdout


@pytest.mark.postgres
def test_the_readme_postgres_block_migrates_a_new_database(tmp_path: Path) -> None:
    need_postgres()
    [block] = [b for b in readme_blocks() if b.needs == "postgres"]
    [(line, command, _)] = block.commands
    name = f"loyalty_readme_{uuid.uuid4().hex[:10]}"
    command = command.replace("/loyalty ", f"/{name} ")
    assert name in command, f"README.md:{line}: expected a database named loyalty"
    env = {**_environment(tmp_path),
           "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{clean_env()['PATH']}"}
    try:
        first = subprocess.run(["bash", "-c", command], env=env, capture_output=True,
                               text=True, timeout=COMMAND_TIMEOUT_S, check=False)
        assert first.returncode == 0, first.stderr
        assert "created database" in first.stdout and "from empty to" in first.stdout
        again = subprocess.run(["bash", "-c", command], env=env, capture_output=True,
                               text=True, timeout=COMMAND_TIMEOUT_S, check=False)
        assert again.returncode == 0 and "already at revision" in again.stdout, again.stdout
    finally:
        drop_database(name)
