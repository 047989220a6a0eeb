"""A profile's days: the days it covers (``profile.observed``), the day it is loaded for (``--as-of``, a named
date), the checks that every dated element is in force on a covered day (and rules sharing an id on different
days), its timeline of dated elements (``Dated``) and the first day of each era (``era_starts``).

The date ranges themselves (``active:``) are :mod:`chokepoint.policy.dates`; a timeline's events and the days a
dated command runs a profile at are :mod:`chokepoint.policy.timeline`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chokepoint.policy.compiler import Rule
from chokepoint.policy.conditions import atoms
from chokepoint.policy.dates import Active, coverage, parse_as_of
from chokepoint.policy.errors import PolicyError, SourcePos
from chokepoint.policy.provenance import Knob
from chokepoint.policy.yamlsrc import Marks

if TYPE_CHECKING:
    from chokepoint.policy.profile import Profile, ProfileMeta

#: ``--as-of``: a day as ``YYYY-MM-DD`` or a date; None: the last day the profile covers.
AsOf = str | dt.date | None


@dataclass(frozen=True, slots=True)
class Dated:
    """One dated element of a profile, in force on some days and not others (``profiles show --timeline``,
    docs/profiles.md, the matrix's chart marks): ``kind`` rule, list, knob, example or also_observed."""

    kind: str
    name: str
    what: str
    active: Active
    uncertain: str = ""

    def to_json(self) -> dict[str, Any]:
        out = {"kind": self.kind, "name": self.name, "what": self.what, **self.active.to_json()}
        if self.uncertain and "uncertain" not in out:
            out["uncertain"] = self.uncertain
        return out


def era_starts(profile: Profile) -> list[dt.date]:
    """The first day of each era of ``profile``: its coverage's first day and every day within the coverage
    on which a dated element starts or stops being in force (what is loaded changes only on these days)."""
    if profile.coverage is None:
        return [profile.as_of] if profile.as_of else []
    lo, hi = profile.coverage
    days = {lo}
    for item in profile.timeline:
        start, end = item.active.start, item.active.end
        if start is not None and lo < start <= hi:
            days.add(start)
        if end is not None and lo <= end < hi:
            days.add(end + dt.timedelta(days=1))
    return sorted(days)


def _coverage(meta: ProfileMeta, marks: Marks) -> tuple[dt.date, dt.date]:
    if not meta.observed:
        return dt.date.min, dt.date.max
    try:
        return coverage(meta.observed)
    except ValueError as exc:
        raise PolicyError.at(marks.value(("profile", "observed")), f"observed: {exc}") from None


def _as_of(as_of: AsOf, alias: str, meta: ProfileMeta, span: tuple[dt.date, dt.date], name: str) -> dt.date:
    """The day to load: ``as_of``, a named date's day, or the last day covered; a ``PolicyError`` naming the
    ``--as-of`` value (no file position) when it is malformed or outside the coverage."""
    named = dict(meta.named_dates)
    if alias:
        if alias not in named:
            raise PolicyError(alias, 1, 1, f"profile {name!r} declares no named date {alias!r}")
        if as_of is not None and parse_as_of(as_of) != named[alias]:
            raise PolicyError(
                f"--as-of {as_of}",
                0,
                0,
                f"{alias} is {name} as of {named[alias].isoformat()}; for another day load {name} with --as-of",
            )
        return named[alias]
    if as_of is None:
        return span[1] if span[1] != dt.date.max else dt.date.today()
    try:
        day = parse_as_of(as_of)
    except ValueError as exc:
        raise PolicyError(f"--as-of {as_of}", 0, 0, str(exc)) from None
    if not span[0] <= day <= span[1]:
        raise PolicyError(
            f"--as-of {as_of}",
            0,
            0,
            f"outside the dates profile {name!r} covers ({span[0].isoformat()} to {span[1].isoformat()}, "
            "its profile.observed): nothing is documented for that day",
        )
    return day


def _check_span(active: Active | None, span: tuple[dt.date, dt.date], marks: Marks) -> None:
    """A dated element must be in force on at least one day the profile covers (else it is a typo)."""
    if active is None:
        return
    lo, hi = active.within(*span)
    if lo > hi:
        raise PolicyError.at(
            active.pos or SourcePos(marks.file, 1, 1),
            f"active {active.text()} lies outside the dates the profile covers "
            f"({span[0].isoformat()} to {span[1].isoformat()}, profile.observed)",
        )


def _check_dates(rules: list[Rule], lists: Mapping[str, Any], span: tuple[dt.date, dt.date], marks: Marks) -> None:
    """Rules sharing an id must be in force on different days; every dated rule and list within coverage."""
    for item in (*rules, *lists.values()):
        _check_span(item.active, span, marks)
    seen: dict[str, list[Rule]] = {}
    for rule in rules:
        for other in seen.get(rule.id, ()):
            if other.active is None or rule.active is None or other.active.overlaps(rule.active):
                first = other.pos.line if other.pos else 0
                raise PolicyError.at(
                    rule.pos or SourcePos(marks.file, 1, 1),
                    f"duplicate rule id {rule.id!r} (first at line {first}): rules sharing an id need active "
                    "ranges that do not overlap",
                )
        seen.setdefault(rule.id, []).append(rule)


def _check_lists_in_force(
    rules: list[Rule], all_lists: Mapping[str, Any], lists: Mapping[str, Any], day: dt.date
) -> None:
    """A rule in force on ``day`` may only read lists in force that day (an error at the ``in_list`` value)."""
    for rule in rules:
        for atom in atoms(rule.when):
            if atom.op == "in_list" and atom.value in all_lists and atom.value not in lists:
                pos = atom.value_pos[0] if atom.value_pos else atom.pos or rule.pos
                active = all_lists[atom.value].active
                raise PolicyError.at(
                    pos or SourcePos("<policy>", 1, 1),
                    f"rule {rule.id!r} reads list {atom.value!r}, which is not in force on {day.isoformat()} "
                    f"(active {active.text()})",
                )


def _timeline(
    rules: list[Rule], lists: Mapping[str, Any], knobs: tuple[Knob, ...], also: tuple[Any, ...], examples: Any
) -> tuple[Dated, ...]:
    from chokepoint.policy.describe import rule_technique

    out = [Dated("rule", r.id, rule_technique(r), r.active, r.active.uncertain) for r in rules if r.active]
    out += [
        Dated("list", d.name, d.description or d.kind, d.active, d.active.uncertain) for d in lists.values() if d.active
    ]
    out += [
        Dated("knob", k.path, json.dumps(_plain(k.value)), k.active, k.active.uncertain or k.uncertain)
        for k in knobs
        if k.active
    ]
    out += [
        Dated("also_observed", a.preset, a.note or a.preset, a.active, a.active.uncertain) for a in also if a.active
    ]
    out += [
        Dated("example", e.id, f"{e.outcome}: {e.protocol} {e.target or e.port or ''} -> {e.symptom}".strip(), e.active)
        for e in examples
        if e.active
    ]
    return tuple(
        sorted(out, key=lambda d: (d.active.start or dt.date.min, d.active.end or dt.date.max, d.kind, d.name))
    )


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


__all__ = ["AsOf", "Dated", "era_starts"]
