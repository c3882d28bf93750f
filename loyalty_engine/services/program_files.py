"""Reading program files from disk for the loader, which is given their text (pure)."""

from __future__ import annotations

from pathlib import Path

from loyalty_engine.rules.loader import (
    MAX_PROGRAM_BYTES,
    LoadedProgram,
    Problem,
    ProgramFileError,
    load_program_text,
    too_large,
)


def load_program_file(path: Path | str) -> LoadedProgram:
    """Read, validate and compile one program file; raises ProgramFileError with every
    problem, a file that cannot be read as one at 1:1."""
    return load_program_text(read_program_text(path), str(path))


def read_program_text(path: Path | str) -> str:
    """A program file's text, never more than MAX_PROGRAM_BYTES read of it whatever it
    holds; what stops it being read is a ProgramFileError at 1:1."""
    name = str(path)
    try:
        with Path(path).open("rb") as handle:
            raw = handle.read(MAX_PROGRAM_BYTES + 1)
        if len(raw) > MAX_PROGRAM_BYTES:
            raise ProgramFileError([too_large(name)])
        return raw.decode("utf-8")
    except FileNotFoundError:
        raise ProgramFileError([Problem(name, 1, 1, "no such file")]) from None
    except IsADirectoryError:
        raise ProgramFileError([Problem(name, 1, 1, "is a directory, not a file")]) from None
    except UnicodeDecodeError as exc:
        raise ProgramFileError(
            [Problem(name, 1, 1, f"is not UTF-8 text (byte {exc.start})")]
        ) from None
    except OSError as exc:
        raise ProgramFileError([Problem(name, 1, 1, f"cannot be read: {exc.strerror}")]) from None
