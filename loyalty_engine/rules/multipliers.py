"""A points_per_spend rule's multipliers together: exclusions, best-of groups, and the
combined factor that validation warns about."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from fractions import Fraction
from itertools import pairwise
from typing import Any, Protocol

from loyalty_engine.rules.values import LocatedValueError


# What is read of the schema's models (rules/schema.py imports this module, so it is not
# imported here): a multiplier's condition, and the multiplier.
class _When(Protocol):
    @property
    def starts(self) -> date | None: ...
    @property
    def ends(self) -> date | None: ...
    @property
    def days(self) -> Sequence[str]: ...
    @property
    def tenders(self) -> Sequence[str]: ...
    @property
    def channels(self) -> Sequence[str]: ...


class Multiplier(Protocol):
    """A multiplier as rules/schema.py defines it."""

    @property
    def id(self) -> str: ...
    @property
    def when(self) -> _When: ...
    @property
    def factor(self) -> Decimal: ...
    @property
    def group(self) -> str | None: ...
    @property
    def excludes(self) -> Sequence[str]: ...


def check_multipliers(multipliers: Sequence[Multiplier], groups: Mapping[str, str]) -> None:
    """Exclusions name multipliers of the same rule and form no cycle; every group given a
    way to combine has a multiplier. Raises LocatedValueError below the rule."""
    ids = [m.id for m in multipliers]
    if groups or any(m.excludes or m.group for m in multipliers):
        # Exclusions and groups refer to multipliers by id: an id must mean one multiplier.
        for index, name in enumerate(ids):
            if name in ids[:index]:
                raise LocatedValueError(("multipliers", index, "id"), f"multiplier id {name!r} "
                                        "is used twice; give each multiplier its own id")
    known = ", ".join(ids)
    for index, multiplier in enumerate(multipliers):
        for e_index, other in enumerate(multiplier.excludes):
            where = ("multipliers", index, "excludes", e_index)
            if other == multiplier.id:
                raise LocatedValueError(where, f"multiplier {other!r} cannot exclude itself")
            if other not in ids:
                raise LocatedValueError(where, f"unknown multiplier {other!r} (this rule's "
                                        f"multipliers: {known})")
    cycle = _exclusion_cycle(multipliers)
    if cycle is not None:
        index, e_index, names = cycle
        chain = ", ".join(f"{a} excludes {b}" for a, b in pairwise(names))
        raise LocatedValueError(("multipliers", index, "excludes", e_index),
                                f"exclusions go round in a circle ({chain}), so which of them "
                                "applies could not be decided; drop one of these exclusions")
    used = {m.group for m in multipliers if m.group is not None}
    for name in groups:
        if name not in used:
            listed = ", ".join(sorted(used)) or "none"
            raise LocatedValueError(("multiplier_groups", name), f"no multiplier of this rule "
                                    f"is in group {name!r} (groups used: {listed})")


def _exclusion_cycle(multipliers: Sequence[Multiplier]
                     ) -> tuple[int, int, list[str]] | None:
    """The first exclusion that closes a cycle: (multiplier index, its excludes index, the
    ids round the cycle, first repeated at the end); None without one."""
    position = {m.id: i for i, m in enumerate(multipliers)}
    excludes = {m.id: m.excludes for m in multipliers}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> tuple[int, int, list[str]] | None:
        for e_index, other in enumerate(excludes[name]):
            if other in path:
                return position[name], e_index, [*path[path.index(other):], name, other]
            if other not in done:
                found = visit(other, [*path, name])
                if found is not None:
                    return found
        done.add(name)
        return None

    for multiplier in multipliers:
        if multiplier.id not in done:
            found = visit(multiplier.id, [])
            if found is not None:
                return found
    return None


@dataclass(frozen=True, slots=True)
class Combined:
    """The multipliers of one line: the factor they make, those that counted, and why the
    others that held did not."""

    factor: Fraction
    counted: dict[str, Fraction]
    set_aside: dict[str, str]


@dataclass(frozen=True, slots=True, eq=False)
class MultiplierPlan:
    """How the multipliers that hold on a line combine. Plain (no exclusions, no best-of
    group): they all multiply together, as they always did."""

    excluded_by: dict[str, tuple[str, ...]] = field(default_factory=dict)
    best_of: dict[str, str] = field(default_factory=dict)  # id -> its `max` group

    @property
    def plain(self) -> bool:
        """Whether every multiplier that holds counts (today's behaviour)."""
        return not self.excluded_by and not self.best_of

    def combine(self, holding: Sequence[tuple[str, Fraction]]) -> Combined:
        """holding: (id, factor) of the multipliers (then the member's benefits) whose
        conditions hold on the line, in file order. An excluded multiplier does not apply
        while one that excludes it does; of a `max` group only the largest factor counts
        (the first listed, of equal ones); what remains multiplies together."""
        names = {name for name, _ in holding}
        memo: dict[str, bool] = {}

        def applies(name: str) -> bool:  # the exclusions form no cycle (check_multipliers)
            if name not in memo:
                memo[name] = name in names and not any(
                    applies(other) for other in self.excluded_by.get(name, ()))
            return memo[name]

        counted: dict[str, Fraction] = {}
        set_aside: dict[str, str] = {}
        best: dict[str, tuple[str, Fraction]] = {}
        for name, value in holding:
            blockers = [other for other in self.excluded_by.get(name, ()) if applies(other)]
            if blockers:
                set_aside[name] = "excluded by " + ", ".join(blockers)
                continue
            group = self.best_of.get(name)
            if group is None:
                counted[name] = value
                continue
            leader = best.get(group)
            if leader is None or value > leader[1]:
                if leader is not None:
                    set_aside[leader[0]] = f"best of {group}: {name} is larger"
                best[group] = (name, value)
            else:
                set_aside[name] = f"best of {group}: {leader[0]} is larger"
        for name, value in best.values():
            counted[name] = value
        factor = Fraction(1)
        for value in counted.values():
            factor *= value
        return Combined(factor, counted, set_aside)


def plan_of(multipliers: Sequence[Multiplier], groups: Mapping[str, str]) -> MultiplierPlan:
    """The compiled plan of a rule's multipliers and its multiplier_groups."""
    excluded_by: dict[str, list[str]] = {}
    for multiplier in multipliers:
        for other in multiplier.excludes:
            excluded_by.setdefault(other, []).append(multiplier.id)
    return MultiplierPlan(
        excluded_by={k: tuple(v) for k, v in excluded_by.items()},
        best_of={m.id: m.group for m in multipliers
                 if m.group is not None and groups.get(m.group) == "max"})


Where = tuple[str | int, ...]


def program_warnings(rules: Sequence[Any]) -> list[tuple[Where, str]]:
    """What validation warns about without refusing the file (given a definition's rules):
    multipliers of a rule with a `max_factor` that can apply together and multiply beyond
    it."""
    found: list[tuple[Where, str]] = []
    for index, rule in enumerate(rules):
        if getattr(rule, "max_factor", None) is None:  # only points_per_spend has one
            continue
        names, product = _largest_together(rule.multipliers, rule.multiplier_groups)
        if product > rule.max_factor:
            together = _listed(names)
            found.append((("rules", index, "max_factor"),
                          f"multipliers {together} can apply together (their dates overlap "
                          f"and nothing excludes one of them) and multiply to "
                          f"{_shown(product)}, above max_factor {_shown(rule.max_factor)}; "
                          "add `excludes:`, put them in a best-of group (multiplier_groups: "
                          "max) or separate their dates if they should not"))
    return found


def _largest_together(multipliers: Sequence[Multiplier], groups: Mapping[str, str]
                      ) -> tuple[list[str], Decimal]:
    """The ids and product of the multipliers (factors above 1) that can apply to one
    purchase together with the largest product: windows and weekdays, tenders and
    channels that overlap, no exclusion between them, at most one of a `max` group."""
    boosting = [m for m in multipliers if m.factor > 1]
    near = [{j for j, other in enumerate(boosting) if j != i and _together(m, other, groups)}
            for i, m in enumerate(boosting)]
    best: tuple[list[str], Decimal] = ([], Decimal(1))

    def cliques(chosen: list[int], able: set[int], passed: set[int]) -> None:
        # Bron-Kerbosch with a pivot: only the largest sets that can apply together are
        # visited (every factor is above 1, so a larger set has the larger product).
        nonlocal best
        if not able and not passed:
            product = Decimal(1)
            for i in chosen:
                product *= boosting[i].factor
            if product > best[1]:
                best = ([boosting[i].id for i in sorted(chosen)], product)
            return
        pivot = max(able | passed, key=lambda u: len(able & near[u]))
        for i in sorted(able - near[pivot]):
            cliques([*chosen, i], able & near[i], passed & near[i])
            able = able - {i}
            passed = passed | {i}

    cliques([], set(range(len(boosting))), set())
    return best


def _together(a: Multiplier, b: Multiplier, groups: Mapping[str, str]) -> bool:
    """Whether both can count on the same purchase."""
    if b.id in a.excludes or a.id in b.excludes:
        return False
    if a.group is not None and a.group == b.group and groups.get(a.group) == "max":
        return False
    first = max(a.when.starts or date.min, b.when.starts or date.min)
    last = min(a.when.ends or date.max, b.when.ends or date.max)
    if first > last:
        return False
    return all(not (x and y) or bool(set(x) & set(y)) for x, y in (
        (a.when.days, b.when.days), (a.when.tenders, b.when.tenders),
        (a.when.channels, b.when.channels)))


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _shown(value: Decimal) -> str:
    return format(value.normalize(), "f")
