"""Program definitions: YAML text -> validated, compiled programs (pure: no files, no database)."""

from loyalty_engine.rules.compiled import CompiledProgram, PointsPerSpend, compile_program
from loyalty_engine.rules.loader import (
    LoadedProgram,
    Problem,
    ProgramFileError,
    load_program_text,
)
from loyalty_engine.rules.schema import ProgramDefinition

__all__ = [
    "CompiledProgram",
    "LoadedProgram",
    "PointsPerSpend",
    "Problem",
    "ProgramDefinition",
    "ProgramFileError",
    "compile_program",
    "load_program_text",
]
