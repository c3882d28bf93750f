"""What an API key may reach: a pos key the programs its stores take part in, and only those
programs' members, redemptions and data; an admin key everything."""

from __future__ import annotations

from sqlalchemy import Connection, select

from loyalty_engine.rules.compiled import CompiledProgram
from loyalty_engine.services.apikeys import ApiKeyInfo
from loyalty_engine.services.programs import load_catalog
from loyalty_engine.store import tables
from loyalty_engine.store.unit_of_work import read_use_case


def _overlap(pattern: str, ids: frozenset[str], prefixes: tuple[str, ...]) -> bool:
    """Whether a key's store pattern (an id, or a PREFIX*) and a program's stores share a
    store: an id in the program's, or one prefix of the other."""
    if not pattern.endswith("*"):
        return pattern in ids or pattern.startswith(prefixes)
    stem = pattern[:-1]
    return (any(i.startswith(stem) for i in ids)
            or any(p.startswith(stem) or stem.startswith(p) for p in prefixes))


def sees(key: ApiKeyInfo, program: CompiledProgram) -> bool:
    """Whether the key reaches the program: admin keys all; a pos key a program that covers
    one of its stores (a program without `stores:` covers every store)."""
    if key.scope == "admin" or not (program.store_ids or program.store_prefixes):
        return True
    return any(_overlap(pattern, program.store_ids, program.store_prefixes)
               for pattern in key.stores)


@read_use_case
def programs_out_of_reach(conn: Connection, key: ApiKeyInfo) -> frozenset[str]:
    """The programs a key does not reach (none for an admin key), judged by each program's
    newest version. (A program that does not exist is in nobody's way: whatever names it
    is refused for that reason.)"""
    if key.scope == "admin":
        return frozenset()
    catalog = load_catalog(conn)
    return frozenset(pid for pid in catalog.program_ids
                     if not sees(key, catalog.versions(pid)[-1].program))


@read_use_case
def member_programs(conn: Connection, member_id: str) -> frozenset[str] | None:
    """The programs a member is enrolled in (None: no such member)."""
    if conn.execute(select(tables.members.c.member_id)
                    .where(tables.members.c.member_id == member_id)).first() is None:
        return None
    return frozenset(conn.execute(
        select(tables.enrolments.c.program_id)
        .where(tables.enrolments.c.member_id == member_id)).scalars())


@read_use_case
def redemption_program(conn: Connection, redemption_id: str) -> str | None:
    """The program a stored redemption was made in (None: no such redemption)."""
    found: str | None = conn.execute(
        select(tables.redemptions.c.program_id)
        .where(tables.redemptions.c.redemption_id == redemption_id)).scalar()
    return found
