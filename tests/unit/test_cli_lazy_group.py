"""The root command imports a command's module only when that command is run."""

from __future__ import annotations

import subprocess
import sys

from loyalty_engine.cli.lazy_group import COMMANDS, LazyCommands


def _modules_after(code: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", code + "; print(' '.join(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True)
    return set(done.stdout.split())


def test_running_one_command_imports_neither_the_others_nor_scipy() -> None:
    loaded = _modules_after(
        "import sys, typer.main; from loyalty_engine.cli.app import app; "
        "typer.main.get_command(app).get_command(None, 'points')")
    assert "loyalty_engine.cli.points" in loaded
    others = {f"loyalty_engine.cli.{module}" for name, module, _ in COMMANDS
              if name != "points"}
    assert others & loaded == set()
    assert not any(m == "scipy" or m.startswith("scipy.") for m in loaded)


def test_listing_the_commands_loads_them_all_in_their_order() -> None:
    loaded = _modules_after(
        "import sys, typer.main; from loyalty_engine.cli.app import app; "
        "group = typer.main.get_command(app); [group.get_command(None, n) for n in "
        "group.list_commands(None)]")
    assert {f"loyalty_engine.cli.{module}" for _, module, _ in COMMANDS} <= loaded


def test_the_commands_mapping_knows_names_without_loading() -> None:
    calls: list[str] = []

    def loader(name: str) -> object:
        calls.append(name)
        return f"<{name}>"

    commands = LazyCommands({"eager": "<eager>"},
                            {n: (lambda n=n: loader(n)) for n in ("b", "a")})
    assert list(commands) == ["b", "a", "eager"] and len(commands) == 3
    assert "a" in commands and "zzz" not in commands and calls == []
    assert commands.get("zzz") is None and calls == []
    assert commands["a"] == "<a>" and commands["a"] == "<a>" and calls == ["a"]
    assert dict(commands.items()) == {"b": "<b>", "a": "<a>", "eager": "<eager>"}
    assert calls == ["a", "b"]
    del commands["b"]
    assert list(commands) == ["a", "eager"]
