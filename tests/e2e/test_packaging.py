"""The container files: the Dockerfile builds its image from the wheel, compose.yaml runs the
migration before the API and the scheduler, and what they run is the real CLI.

This machine has no Docker engine, so no image is built here. What can be checked is: the
files as Docker reads them (tests/container_files.py), every command a container runs
parsed by the real `loyalty` command line (unknown commands, options and bad values are
refused as they would be in the container), the API's healthcheck run against a real
`loyalty serve`, and, in test_wheel.py, the Dockerfile's own pip commands building and
installing the wheel.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlalchemy.engine import make_url

from loyalty_engine.cli.app import app
from loyalty_engine.store.database import resolve_url
from tests.container_files import (
    ROOT,
    Stage,
    build_context,
    compose,
    copies,
    dockerfile_stages,
    exec_form,
    ignored,
    runs,
)
from tests.e2e.cli import ok
from tests.e2e.server import serving
from tests.e2e.test_readme import readme_blocks

LOYALTY_SERVICES = ("migrate", "api", "scheduler")


def parse_cli(args: list[str]) -> tuple[list[str], dict[str, Any]]:
    """Parse `loyalty ARGS` as the console script would, without running it: the
    subcommand's path and its parameters (with defaults). A usage error raises."""
    from typer.main import get_command

    command = get_command(app)
    ctx = command.make_context("loyalty", list(args))
    path: list[str] = []
    while hasattr(command, "resolve_command"):
        # typer 0.29's click keeps a group's subcommand and its arguments apart, in
        # _protected_args (it has no public name for them any more).
        name, found, rest = command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        assert name is not None and found is not None, args
        path.append(name)
        command = found
        ctx = command.make_context(name, rest, parent=ctx)
    return path, dict(ctx.params)


def _stages() -> tuple[Stage, Stage]:
    stages = dockerfile_stages()
    assert len(stages) == 2, "a build stage and the final image"
    return stages[0], stages[1]


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))


def test_the_cli_parser_used_here_refuses_what_the_console_script_refuses() -> None:
    # The check below can fail: a mistyped command, option or value does not parse.
    assert parse_cli(["serve", "--host", "0.0.0.0"]) == (
        ["serve"], {"host": "0.0.0.0", "port": 8000, "workers": 1, "access_log": True,
                    "metrics": True, "log_format": "text", "log_level": "info",
                    "lock_timeout": 10.0, "max_header_bytes": 16384, "header_timeout": 10.0,
                    "body_timeout": 30.0})
    refused = {"serve --hots 0.0.0.0": "No such option: --hots",
               "serve --port eighty": "valid integer", "scheduler runs": "No such command",
               "db upgrade head extra": "unexpected extra argument",
               "rules apply": "Missing parameter"}
    for wrong, reason in refused.items():
        with pytest.raises(typer.TyperException, match=reason):
            parse_cli(wrong.split())


def test_the_image_installs_the_built_wheel_and_not_the_source_tree() -> None:
    build, final = _stages()
    assert build.base == final.base == "python:3.11-slim"
    assert build.name is not None

    # The build stage copies what pyproject.toml builds the wheel from, and builds it.
    project = _pyproject()
    setuptools = project["tool"]["setuptools"]
    copied = {source.rstrip("/") for c in copies(build) for source in c.sources}
    assert copied == {"pyproject.toml", project["project"]["readme"], "loyalty_engine",
                      *setuptools["package-dir"].values()}
    [wheel_run] = runs(build)
    words = shlex.split(wheel_run.command)
    assert words[:2] == ["pip", "wheel"] and words[-1] == "." and "--no-deps" in words
    wheel_dir = words[words.index("--wheel-dir") + 1]
    assert build.all("WORKDIR")[-1].startswith("/")  # where `.` is

    # The final image copies nothing of the build context: the wheel and constraints.txt
    # are mounted for the one pip command, which installs that wheel and only it, pinned.
    assert final.all("COPY") == [] and final.all("ADD") == []
    [install] = [r for r in runs(final) if r.command.startswith("pip")]
    assert [r.command.split()[0] for r in runs(final)] == ["pip", "useradd"]
    mounted = {m.target: m for m in install.mounts}
    words = shlex.split(install.command)
    assert words[:2] == ["pip", "install"]
    constraints = words[words.index("-c") + 1]
    assert mounted[constraints].source == "constraints.txt"
    assert mounted[constraints].from_stage is None
    positional = [w for i, w in enumerate(words[2:], 2)
                  if not w.startswith("-") and words[i - 1] != "-c"]
    assert len(positional) == 1, f"one thing installed, the wheel: {install.command}"
    [wheel] = positional
    folder, _, name = wheel.rpartition("/")
    assert name.startswith("loyalty_engine-") and name.endswith(".whl")
    assert (mounted[folder].from_stage, mounted[folder].source) == (build.name, wheel_dir)
    assert not any(w in ("-e", "--editable", ".", "-r") for w in words)


def test_the_image_runs_loyalty_as_a_user_that_is_not_root() -> None:
    _, final = _stages()
    [useradd] = [r.command for r in runs(final) if r.command.startswith("useradd")]
    words = useradd.split()
    uid, user = words[words.index("--uid") + 1], words[-1]
    assert final.all("USER") == [f"{uid}:{uid}"] and int(uid) != 0
    assert "--user-group" in words and user == "loyalty"
    # Its entry point is the console script the wheel installs, serving on every interface.
    assert exec_form(final.all("ENTRYPOINT")[-1]) == list(_pyproject()["project"]["scripts"])
    cmd = exec_form(final.all("CMD")[-1])
    path, params = parse_cli(cmd)
    assert (path, params["host"]) == (["serve"], "0.0.0.0")
    assert final.all("EXPOSE") == [str(params["port"])]


def test_the_build_context_is_what_the_image_is_built_from_and_nothing_else() -> None:
    build, final = _stages()
    used = {source.rstrip("/") for c in copies(build) for source in c.sources} | {
        m.source for r in runs(final) for m in r.mounts if m.from_stage is None}
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    in_context = {name for name in build_context() if name in tracked}
    assert in_context == {name for name in tracked
                          if any(name == u or name.startswith(u + "/") for u in used)}
    # What the matcher reads the way Docker does (the last pattern that matches decides).
    assert not ignored("loyalty_engine/cli/app.py")
    for leak in ("loyalty.toml", "tour.db", ".venv/bin/python", ".git/config", "tests/conftest.py",
                 "loyalty_engine/cli/__pycache__/app.cpython-311.pyc",
                 "loyalty_engine.egg-info/PKG-INFO", "docs/architecture.md"):
        assert ignored(leak), leak


def test_the_dockerignore_reader_follows_dockers_rules(tmp_path: Path) -> None:
    # The reader the two tests above rely on, on patterns whose meaning Docker documents:
    # `*` stays in one folder, `**` spans folders, a folder's pattern covers what is in it,
    # `!` lets a path back in, and the last matching line decides.
    rules = tmp_path / ".dockerignore"
    rules.write_text("# a comment\n*.db\ndocs\n**/cache\n!docs/keep.md\nbuild/*.txt\n",
                     encoding="utf-8")
    expected = {"tour.db": True, "sub/tour.db": False, "docs/a/b.md": True,
                "docs/keep.md": False, "a/b/cache/x": True, "cache": True,
                "build/a.txt": True, "build/a/b.txt": False, "README.md": False}
    assert {p: ignored(p, rules) for p in expected} == expected


def _services() -> dict[str, Any]:
    services: dict[str, Any] = compose()["services"]
    assert set(services) == {"postgres", *LOYALTY_SERVICES}
    return services


def test_compose_migrates_before_the_api_and_the_scheduler_start() -> None:
    services = _services()
    postgres, migrate = services["postgres"], services["migrate"]
    assert postgres["image"].startswith("postgres:")
    assert "pg_isready" in postgres["healthcheck"]["test"]
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert parse_cli(migrate["command"]) == (["db", "upgrade"],
                                             {"revision": "head", "create": False})
    assert migrate["restart"] == "no"  # one shot: done once it has exited 0
    for name in ("api", "scheduler"):
        assert services[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"}}, name
    path, params = parse_cli(services["scheduler"]["command"])
    # The README's scrape example reaches the scheduler's metrics at scheduler:9464.
    assert (path, params["metrics_port"], params["metrics_host"]) == (
        ["scheduler", "run"], 9464, "0.0.0.0")
    path, params = parse_cli(services["api"]["command"])
    assert (path, params["host"]) == (["serve"], "0.0.0.0")
    assert services["api"]["ports"] == [f"{params['port']}:{params['port']}"]


def test_compose_builds_this_image_and_points_every_service_at_its_postgres() -> None:
    services = _services()
    postgres = services["postgres"]["environment"]
    for name in LOYALTY_SERVICES:
        service = services[name]
        assert service["build"] == "." and service["image"] == services["api"]["image"], name
        url = make_url(service["environment"]["LOYALTY_DATABASE_URL"])
        assert (url.host, url.port, url.username, url.password, url.database) == (
            "postgres", 5432, postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"],
            postgres["POSTGRES_DB"]), name
        assert make_url(resolve_url(str(url))).drivername == "postgresql+psycopg"


def _healthcheck(port: int) -> list[str]:
    """The api service's healthcheck command, for a server on port (the test's Python)."""
    service = _services()["api"]
    test = service["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"] and len(test) == 4, test
    served = parse_cli(service["command"])[1]["port"]
    url = f"http://127.0.0.1:{served}/v1/ready"
    assert url in test[3], test
    return [sys.executable, "-c", test[3].replace(url, f"http://127.0.0.1:{port}/v1/ready")]


def test_the_api_healthcheck_passes_when_ready_and_fails_otherwise(
    db_url: str, tmp_path: Path
) -> None:
    def check(port: int) -> int:
        return subprocess.run(_healthcheck(port), capture_output=True, timeout=30,
                              check=False).returncode

    with serving(db_url, tmp_path / "server.log") as server:
        assert check(server.port) == 0
        # A database a migration behind: /v1/ready answers 503, the container is unhealthy.
        ok("db", "downgrade", "--yes", "--", "-1", database=db_url)
        assert check(server.port) == 1
        ok("db", "upgrade", database=db_url)
        assert check(server.port) == 0
    assert check(server.port) == 1  # nothing answers


def test_the_readme_docker_block_uses_these_services_and_real_commands() -> None:
    [block] = [b for b in readme_blocks() if b.needs == "docker"]
    assert block.text.splitlines()[0].startswith("# needs: docker")
    services = _services()
    seen = set()
    for _, command, _ in block.commands:
        words = shlex.split(command, comments=True)
        if words[:2] != ["docker", "compose"] or words[2] not in ("run", "exec"):
            continue
        rest = words[3:]
        while rest[0].startswith("-"):  # --rm, -v HOST:CONTAINER
            rest = rest[2:] if rest[0] in ("-v", "--volume") else rest[1:]
        service, args = rest[0], rest[1:]
        assert service in services, command
        if words[2] == "exec":
            assert args[0] == "loyalty", command
            args = args[1:]  # run goes through the image's entry point, exec names it
        parse_cli(args)
        seen.add(words[2])
    assert seen == {"run", "exec"}
