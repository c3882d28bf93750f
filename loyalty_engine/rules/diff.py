"""Semantic diff of two program definitions: what changed in meaning, not in text."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import TypeAlias, TypeGuard

from loyalty_engine.rules.insights_schema import describe_box, segment_map
from loyalty_engine.rules.schema import ExpiryPolicy, ProgramDefinition
from loyalty_engine.rules.values import with_every_key

# A value as JSON would hold it: decimals are normalised strings ("2", "0.5"), dates ISO text.
Plain: TypeAlias = "str | int | bool | list[Plain] | dict[str, Plain] | None"


@dataclass(frozen=True, slots=True)
class Change:
    """One field whose value differs, at a dotted path such as `when.days`.

    For a list of tags (days, categories, skus, stores, tiers, tenders, channels, excludes)
    `added` and `removed` hold the members that differ; order and repetition in such lists
    carry no meaning.
    """

    path: str
    before: Plain
    after: Plain
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    @property
    def is_tags(self) -> bool:
        return bool(self.added or self.removed)

    def describe(self) -> str:
        """The change without its path: `1 -> 2`, or `added tea, removed coffee`."""
        if self.is_tags:
            parts = []
            if self.added:
                parts.append("added " + ", ".join(show(t) for t in self.added))
            if self.removed:
                parts.append("removed " + ", ".join(show(t) for t in self.removed))
            return "; ".join(parts)
        return f"{show(self.before)} -> {show(self.after)}"

    def to_plain(self) -> dict[str, Plain]:
        data: dict[str, Plain] = {"path": self.path, "before": self.before, "after": self.after}
        if self.is_tags:
            data["added"] = list(self.added)
            data["removed"] = list(self.removed)
        return data


@dataclass(frozen=True, slots=True)
class Entry:
    """A rule or reward present on one side only."""

    id: str
    kind: str


@dataclass(frozen=True, slots=True)
class EntryChanges:
    """A rule or reward present on both sides, with the fields that differ."""

    id: str
    changes: tuple[Change, ...]


@dataclass(frozen=True, slots=True)
class CollectionDiff:
    """Rules (or rewards) matched by id."""

    added: tuple[Entry, ...] = ()
    removed: tuple[Entry, ...] = ()
    changed: tuple[EntryChanges, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def to_plain(self) -> dict[str, Plain]:
        return {
            "added": [{"id": e.id, "kind": e.kind} for e in self.added],
            "removed": [{"id": e.id, "kind": e.kind} for e in self.removed],
            "changed": [{"id": c.id, "changes": [ch.to_plain() for ch in c.changes]}
                        for c in self.changed],
        }


@dataclass(frozen=True, slots=True)
class ProgramDiff:
    """Everything that differs in meaning between two definitions of one program."""

    program: str
    settings: tuple[Change, ...]
    rules: CollectionDiff
    rewards: CollectionDiff

    @property
    def identical(self) -> bool:
        return not self.settings and self.rules.empty and self.rewards.empty

    def to_plain(self) -> dict[str, Plain]:
        return {
            "program": self.program,
            "identical": self.identical,
            "settings": [c.to_plain() for c in self.settings],
            "rules": self.rules.to_plain(),
            "rewards": self.rewards.to_plain(),
        }


def diff_programs(old: ProgramDefinition, new: ProgramDefinition) -> ProgramDiff:
    """Compare two definitions; rules and rewards are matched by id, values by meaning."""
    with with_every_key():  # a key at its default still means something to compare
        before = _plain_dict(old.model_dump(mode="python"))
        after = _plain_dict(new.model_dump(mode="python"))
    old_rules, new_rules = _entries(before.pop("rules")), _entries(after.pop("rules"))
    old_rewards, new_rewards = _entries(before.pop("rewards")), _entries(after.pop("rewards"))

    _readable_measure(before)
    _readable_measure(after)
    _readable_segments(before, old)
    _readable_segments(after, new)
    settings: list[Change] = []
    _walk("", before, after, settings)
    order = _evaluation_order_change(old, new)
    if order is not None:
        settings.append(order)
    expiry = _expiry_meaning_change(old, new)
    if expiry is not None:
        settings.append(expiry)
    return ProgramDiff(
        program=old.program,
        settings=tuple(settings),
        rules=_diff_collection(old_rules, new_rules),
        rewards=_diff_collection(old_rewards, new_rewards),
    )


def _readable_measure(program: dict[str, Plain]) -> None:
    """A ladder of several measures as {combine: any|all, name: measure, ...}, so that
    any -> all reads as `tiers.measure.combine: any -> all` and a measure added, removed
    or changed as `tiers.measure.nights...` rather than as every field of both shapes."""
    tiers = program.get("tiers")
    if not isinstance(tiers, dict) or not isinstance(tiers.get("measure"), dict):
        return
    measure = tiers["measure"]
    assert isinstance(measure, dict)
    for combine in ("any", "all"):
        named = measure.get(combine)
        if isinstance(named, dict):
            tiers["measure"] = {"combine": combine, **named}


def _readable_segments(program: dict[str, Plain], definition: ProgramDefinition) -> None:
    """The segment map as each segment's boxes written as the file writes them, so that a
    box moved reads `segments.at_risk: added {r: 1, f: [3, 4]}; removed ...`; a file
    without one has the shipped default map (what it means)."""
    program["segments"] = {name: [describe_box(box) for box in boxes]
                           for name, boxes in segment_map(definition.segments).segments}


def show(value: Plain) -> str:
    """A value for people: `2`, `0.5`, `floor`, `(none)`, `"free text"`, `[a, b]`."""
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value if _BARE.fullmatch(value) else json.dumps(value, ensure_ascii=False)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return json.dumps(_prune(value), ensure_ascii=False, separators=(", ", ": "))


_BARE = re.compile(r"[A-Za-z0-9_.:/*+@-]+")


def _plain(value: object) -> Plain:
    """model_dump output as plain values; decimals normalised so that 1 and 1.0 are equal."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, date):
        return value.isoformat()
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    raise TypeError(f"cannot compare {type(value).__name__} values")


def _plain_dict(value: object) -> dict[str, Plain]:
    plain = _plain(value)
    assert isinstance(plain, dict)
    return plain


def _entries(value: Plain) -> dict[str, dict[str, Plain]]:
    """A list of rules or rewards keyed by id, in file order."""
    assert isinstance(value, list)
    entries: dict[str, dict[str, Plain]] = {}
    for item in value:
        assert isinstance(item, dict) and isinstance(item["id"], str)
        if "period" in item:
            item = {**item, "period": _period_words(item["period"])}
        entries[str(item["id"])] = item
    return entries


def _period_words(period: Plain) -> Plain:
    """A rule's period as the diff shows it: calendar periods by name, and the periods that
    follow the member said in words (which anchor their years count from)."""
    if period == "membership_year":
        return "membership year (from the enrolment)"
    if isinstance(period, dict) and isinstance(period.get("membership_year"), str):
        return f"membership year of club {period['membership_year']} (its paid terms)"
    return period


def _diff_collection(old: dict[str, dict[str, Plain]],
                     new: dict[str, dict[str, Plain]]) -> CollectionDiff:
    changed = []
    for key in (k for k in new if k in old):
        changes = _diff_entry(old[key], new[key])
        if changes:
            changed.append(EntryChanges(key, tuple(changes)))
    return CollectionDiff(
        added=tuple(Entry(k, str(v["kind"])) for k, v in new.items() if k not in old),
        removed=tuple(Entry(k, str(v["kind"])) for k, v in old.items() if k not in new),
        changed=tuple(changed),
    )


def _diff_entry(before: dict[str, Plain], after: dict[str, Plain]) -> list[Change]:
    """The changed fields of one rule or reward; a change of kind comes first."""
    changes: list[Change] = []
    if before["kind"] != after["kind"]:
        changes.append(Change("kind", before["kind"], after["kind"]))
    rest_before = {k: v for k, v in before.items() if k not in ("id", "kind")}
    rest_after = {k: v for k, v in after.items() if k not in ("id", "kind")}
    _walk("", rest_before, rest_after, changes)
    return changes


def _walk(path: str, before: Plain, after: Plain, out: list[Change]) -> None:
    """Append the differences between two plain values to out, descending into structure."""
    if before == after:
        return
    # An absent sub-object or list (no `when`, no `caps`, a field of another kind) is empty.
    if before is None:
        before = _empty_like(after)
    if after is None:
        after = _empty_like(before)
    if isinstance(before, dict) and isinstance(after, dict):
        for key in [*before, *(k for k in after if k not in before)]:
            _walk(_join(path, key), before.get(key), after.get(key), out)
    elif _is_tags(before) and _is_tags(after):
        _tags(path, before, after, out)
    elif _is_keyed(before) and _is_keyed(after):
        _keyed(path, before, after, out)
    else:
        out.append(Change(path, _prune(before), _prune(after)))


def _tags(path: str, before: list[str], after: list[str], out: list[Change]) -> None:
    added = tuple(dict.fromkeys(t for t in after if t not in before))
    removed = tuple(dict.fromkeys(t for t in before if t not in after))
    if added or removed:  # otherwise only order or repetition differ
        out.append(Change(path, list(before), list(after), added, removed))


def _keyed(path: str, before: list[dict[str, Plain]], after: list[dict[str, Plain]],
           out: list[Change]) -> None:
    """Lists of objects with ids (multipliers): matched by id, reported as `path[id]`."""
    old = {str(item["id"]): item for item in before}
    new = {str(item["id"]): item for item in after}
    for key, item in old.items():
        if key not in new:
            out.append(Change(f"{path}[{key}]", _prune(item), None))
    for key, item in new.items():
        if key not in old:
            out.append(Change(f"{path}[{key}]", None, _prune(item)))
        else:
            _walk(f"{path}[{key}]", old[key], item, out)


def _empty_like(value: Plain) -> Plain:
    if isinstance(value, dict):
        return {}
    return [] if isinstance(value, list) else None


def _is_tags(value: Plain) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_keyed(value: Plain) -> TypeGuard[list[dict[str, Plain]]]:
    return isinstance(value, list) and all(
        isinstance(v, dict) and isinstance(v.get("id"), str) for v in value)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _prune(value: Plain) -> Plain:
    """A whole added or removed object without its empty fields, for reading."""
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in (None, [], {})}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def _evaluation_order_change(old: ProgramDefinition, new: ProgramDefinition) -> Change | None:
    """Rules run by priority, then file order (earlier rules use caps first): a change in
    the order of the rules both sides have is a change in meaning."""
    def order(program: ProgramDefinition, keep: set[str]) -> list[Plain]:
        ranked = sorted(enumerate(program.rules), key=lambda ir: (-ir[1].priority, ir[0]))
        return [rule.id for _, rule in ranked if rule.id in keep]

    common = {r.id for r in old.rules} & {r.id for r in new.rules}
    before, after = order(old, common), order(new, common)
    return None if before == after else Change("rules.order", before, after)


def expiry_meaning(policy: ExpiryPolicy) -> str:
    """A points expiry policy in words, for the diff: `then` and `inactive_months` change
    what after_months means, so the fields alone do not say it."""
    if policy.after_days:
        lots = f"{policy.after_days} days after earning"
    elif policy.after_months and policy.then == "end_of_month":
        lots = (f"at the end of the month in which {policy.after_months} months after "
                "earning run out")
    elif policy.after_months:
        lots = f"{policy.after_months} months after earning"
    elif policy.end_of:
        lots = f"at the end of the {policy.end_of} of earning"
    else:
        lots = "never"
    if policy.inactive_months:
        return (f"{lots}; the whole balance after {policy.inactive_months} months without "
                "earning or redeeming")
    return lots


def _expiry_meaning_change(old: ProgramDefinition, new: ProgramDefinition) -> Change | None:
    """Points expiry in words, when either side uses then or inactive_months."""
    before, after = old.points.expiry, new.points.expiry
    if before == after or not any(p.then or p.inactive_months for p in (before, after)):
        return None
    return Change("points.expiry", expiry_meaning(before), expiry_meaning(after))
