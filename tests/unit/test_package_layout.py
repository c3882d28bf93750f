"""The package's build configuration: every subpackage listed, the shipped folders mapped.

The wheel itself is built and installed by tests/e2e/test_wheel.py (the image's files are
checked by tests/e2e/test_packaging.py); these checks are the fast ones that name the
mistake (a new subpackage left out of pyproject.toml, say).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from loyalty_engine import shipped

ROOT = Path(__file__).resolve().parents[2]


def _setuptools() -> dict[str, Any]:
    config: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    setuptools: dict[str, Any] = config["tool"]["setuptools"]
    return setuptools


def test_every_subpackage_is_listed_and_the_shipped_folders_are_mapped() -> None:
    config = _setuptools()
    package_dir: dict[str, str] = config["package-dir"]
    subpackages = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "loyalty_engine").rglob("__init__.py")
    }
    assert "loyalty_engine.cli" in subpackages  # the walk found the tree
    assert set(config["packages"]) == subpackages | {
        shipped.MIGRATIONS_PACKAGE, f"{shipped.MIGRATIONS_PACKAGE}.versions",
        shipped.EXAMPLES_PACKAGE,
    }
    # The top-level folders stay where the design puts them and are mapped in, not copied.
    assert package_dir == {shipped.MIGRATIONS_PACKAGE: "migrations",
                           shipped.EXAMPLES_PACKAGE: "rules"}
    assert not (ROOT / "loyalty_engine" / "migrations").exists()
    assert not (ROOT / "loyalty_engine" / "examples").exists()
    data: dict[str, list[str]] = config["package-data"]
    assert data[shipped.EXAMPLES_PACKAGE] == ["*.yaml"]
    assert data[shipped.MIGRATIONS_PACKAGE] == ["script.py.mako"]
    assert (ROOT / "migrations" / "script.py.mako").is_file()


def test_the_editable_install_finds_the_shipped_files_in_the_source_tree() -> None:
    # The tests run on the editable install, whose import finder maps the two packages onto
    # the top-level folders: the same lookup a wheel answers from site-packages.
    assert shipped.migrations_dir() == ROOT / "migrations"
    assert shipped.examples_dir() == ROOT / "rules"
    assert [p.name for p in shipped.example_programs()] == sorted(
        p.name for p in (ROOT / "rules").glob("*.yaml"))
    assert len(shipped.example_programs()) == 5


def test_the_version_is_the_one_in_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    assert shipped.version() == project["version"]
