"""Files that ship inside the package: the Alembic migrations and the example programs.

They live at the top of the source tree (migrations/, rules/) and are mapped into the package
at build time (pyproject.toml): found through the import system, they are where a wheel put
them, or in the source tree under an editable install, without a path of our own making."""

from __future__ import annotations

from importlib import metadata, resources
from pathlib import Path

DISTRIBUTION = "loyalty-engine"
MIGRATIONS_PACKAGE = "loyalty_engine.migrations"
EXAMPLES_PACKAGE = "loyalty_engine.examples"


class PackageDataError(RuntimeError):
    """A file that ships with the package cannot be found: the installation is incomplete."""


def _missing(what: str, package: str, detail: str) -> PackageDataError:
    return PackageDataError(
        f"the {what} that ship with {DISTRIBUTION} are missing ({package} {detail}); "
        f"reinstall it (pip install --force-reinstall {DISTRIBUTION})"
    )


def _folder(package: str, what: str) -> Path:
    try:
        found = resources.files(package)
    except ModuleNotFoundError:
        raise _missing(what, package, "cannot be imported") from None
    # Alembic and the program loader need real files: a wheel unpacks them, and an editable
    # install points into the source tree; only a zipped package would give something else.
    if not isinstance(found, Path) or not found.is_dir():
        raise _missing(what, package, "is not a folder of files")
    return found


def migrations_dir() -> Path:
    """The folder of the Alembic environment (env.py) and its versions/."""
    folder = _folder(MIGRATIONS_PACKAGE, "database migrations")
    if not (folder / "env.py").is_file():
        raise _missing("database migrations", MIGRATIONS_PACKAGE, "has no env.py")
    return folder


def examples_dir() -> Path:
    """The folder of the example program files (*.yaml)."""
    folder = _folder(EXAMPLES_PACKAGE, "example programs")
    if not any(folder.glob("*.yaml")):
        raise _missing("example programs", EXAMPLES_PACKAGE, "has no *.yaml files")
    return folder


def example_programs() -> list[Path]:
    """The example program files, sorted by name."""
    return sorted(examples_dir().glob("*.yaml"))


def copy_examples(folder: Path) -> list[Path]:
    """Write the example programs into folder (which must exist), replacing files of the same
    names; all of them or, on an error, none (each is written beside its place, then moved)."""
    moves: list[tuple[Path, Path]] = []
    try:
        for source in example_programs():
            staged = folder / f".{source.name}.partial"
            moves.append((staged, folder / source.name))
            staged.write_bytes(source.read_bytes())
    except OSError:
        for staged, _ in moves:
            staged.unlink(missing_ok=True)
        raise
    for staged, target in moves:
        staged.replace(target)
    return [target for _, target in moves]


def version() -> str:
    """The installed version, from the package's metadata."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise PackageDataError(
            f"{DISTRIBUTION} is not installed (no package metadata); install it with pip"
        ) from None
