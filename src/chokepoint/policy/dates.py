"""Dated behaviour: when a rule, list, personality element or expected outcome was in force.

Anything in a profile may carry ``active:`` with the source that dates it::

    active: {from: 2021-12-01, until: 2022-03-03, cite: "OONI, 2021-12-17", uncertain: "the end is approximate"}

- ``from`` and ``until`` are dates, **both inclusive**: ``YYYY-MM-DD``, ``YYYY-MM`` or ``YYYY``. A partial date
  means its whole month or year: ``from: 2021-12`` starts on 2021-12-01, ``until: 2022-03`` ends on 2022-03-31.
  Either may be left out (in force since/until the profile's coverage), not both; ``cite`` is required.
- A profile *covers* the dates of its ``profile.observed`` (``2020-08/2025-08``: 2020-08-01 to 2025-08-31; an
  open end ``2021-02/`` runs to today). It is loaded for one date (``as_of``) inside that coverage, by default
  the last day it covers; what is not active that day is left out before anything is compiled.

This module is the one place that reads dates; the profile loader, ``profiles show --timeline`` and the matrix
(:func:`dates_between`, :func:`parse_dates`) call it. Errors are ``PolicyError`` at the offending value.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from chokepoint.policy.errors import PolicyError, SourcePos
from chokepoint.policy.yamlsrc import Marks

Path = tuple[str | int, ...]

DATE_PATTERN = r"^[0-9]{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?)?$"
_DATE = re.compile(DATE_PATTERN)
_DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")

#: The ``active:`` value in the profile schema (``chokepoint.policy.schema`` embeds it wherever it may appear).
_DATE_VALUE: dict[str, Any] = {
    "description": "a date, inclusive: YYYY-MM-DD, YYYY-MM (the whole month) or YYYY (the whole year)",
    "anyOf": [
        {"type": "string", "pattern": DATE_PATTERN},
        {"type": "integer", "minimum": 1000, "maximum": 9999},
    ],
}
ACTIVE_SCHEMA: dict[str, Any] = {
    "title": "key in active",
    "type": "object",
    "description": "when this was in force: from and/or until (both inclusive), with the source that dates it",
    "additionalProperties": False,
    "required": ["cite"],
    "anyOf": [{"required": ["from"]}, {"required": ["until"]}],
    "properties": {
        "from": _DATE_VALUE,
        "until": _DATE_VALUE,
        "cite": {
            "description": "a citation, or several",
            "anyOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
            ],
        },
        "uncertain": {"type": "string", "minLength": 1, "description": "what is not verified about the dates"},
    },
}


def parse_day(text: str | int, *, end: bool = False) -> dt.date:
    """``YYYY-MM-DD``, ``YYYY-MM`` or ``YYYY`` as a date: the first day of a month or year, or with ``end`` its
    last day. ``ValueError`` with the reason for anything else."""
    text = str(text).strip()
    if not _DATE.match(text):
        raise ValueError(f"not a date: {text!r} (expected YYYY-MM-DD, YYYY-MM or YYYY)")
    parts = [int(p) for p in text.split("-")]
    year = parts[0]
    if len(parts) == 1:
        return dt.date(year, 12, 31) if end else dt.date(year, 1, 1)
    month = parts[1]
    if len(parts) == 2:
        return dt.date(year, month, calendar.monthrange(year, month)[1]) if end else dt.date(year, month, 1)
    try:
        return dt.date(year, month, parts[2])
    except ValueError:
        raise ValueError(f"no such day: {text!r}") from None


def parse_as_of(text: str | dt.date) -> dt.date:
    """A day as given on a command line (``--as-of``): exactly ``YYYY-MM-DD``."""
    if isinstance(text, dt.date):
        return text
    text = str(text).strip()
    if not _DAY.match(text):
        raise ValueError(f"not a day: {text!r} (expected YYYY-MM-DD, e.g. 2023-03-01)")
    return parse_day(text)


@dataclass(frozen=True, slots=True)
class Active:
    """When something was in force: ``start``..``end``, both inclusive (None: open on that side)."""

    start: dt.date | None
    end: dt.date | None
    cite: str = ""
    uncertain: str = ""
    pos: SourcePos | None = field(default=None, compare=False)

    def contains(self, day: dt.date) -> bool:
        return (self.start is None or self.start <= day) and (self.end is None or day <= self.end)

    def overlaps(self, other: Active) -> bool:
        lo = max(self.start or dt.date.min, other.start or dt.date.min)
        hi = min(self.end or dt.date.max, other.end or dt.date.max)
        return lo <= hi

    def within(self, lo: dt.date, hi: dt.date) -> tuple[dt.date, dt.date]:
        """This range clipped to ``lo``..``hi`` (an empty result has start > end)."""
        return max(self.start or lo, lo), min(self.end or hi, hi)

    def text(self) -> str:
        """``2021-12-01..2022-03-03``, ``from 2021-12-01`` or ``until 2022-03-03``."""
        if self.start and self.end:
            return f"{self.start.isoformat()}..{self.end.isoformat()}"
        if self.start:
            return f"from {self.start.isoformat()}"
        return f"until {self.end.isoformat()}" if self.end else "always"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.start:
            out["from"] = self.start.isoformat()
        if self.end:
            out["until"] = self.end.isoformat()
        out["cite"] = self.cite
        if self.uncertain:
            out["uncertain"] = self.uncertain
        return out


def is_active(active: Active | None, day: dt.date) -> bool:
    """Whether something with this ``active`` (None: always) is in force on ``day``."""
    return active is None or active.contains(day)


def parse_active(raw: Any, marks: Marks, path: Path) -> Active | None:
    """A schema-checked ``active:`` mapping at ``path`` (None when absent); ``until`` before ``from`` is an
    error at ``until``."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise PolicyError.at(marks.value(path), f"active: expected a mapping of from/until/cite, got {raw!r}")

    def day(key: str, end: bool) -> dt.date | None:
        if key not in raw:
            return None
        try:
            return parse_day(raw[key], end=end)
        except ValueError as exc:
            raise PolicyError.at(marks.value(path + (key,)), f"active.{key}: {exc}") from None

    start, end = day("from", False), day("until", True)
    if start is not None and end is not None and end < start:
        raise PolicyError.at(
            marks.value(path + ("until",)),
            f"active: until {end.isoformat()} is before from {start.isoformat()} (both are inclusive)",
        )
    cite = raw.get("cite", "")
    cite = "; ".join(cite) if isinstance(cite, list) else str(cite)
    return Active(start, end, cite, str(raw.get("uncertain", "")), marks.key(path))


def coverage(observed: str, *, today: dt.date | None = None) -> tuple[dt.date, dt.date]:
    """The dates a profile covers, from ``profile.observed`` (``A``, ``A/B`` or ``A/``; inclusive, partial dates
    spanning their month or year; an open end is ``today``). ``ValueError`` for a malformed text or an end
    before the start."""
    first, slash, last = observed.partition("/")
    start = parse_day(first)
    if not slash:
        end = parse_day(first, end=True)
    elif last:
        end = parse_day(last, end=True)
    else:
        end = today or dt.date.today()
    if end < start:
        raise ValueError(f"observed {observed!r} ends before it starts")
    return start, end


def dates_between(first: dt.date, last: dt.date, step: str) -> list[dt.date]:
    """``first``, ``first + step``, ... up to ``last`` (inclusive). ``step``: ``Nd``, ``Nw``, ``Nm`` (calendar
    months, the day clamped to the month's end) or ``Ny``. ``ValueError`` for a bad step or range."""
    m = re.fullmatch(r"\s*([1-9][0-9]*)\s*([dwmy])\s*", step)
    if m is None:
        raise ValueError(f"bad step {step!r} (expected e.g. 1m, 2w, 10d, 1y)")
    if last < first:
        raise ValueError(f"the range ends ({last}) before it starts ({first})")
    count, unit = int(m.group(1)), m.group(2)
    out: list[dt.date] = []
    i = 0
    while True:
        if unit in "dw":
            day = first + dt.timedelta(days=i * count * (7 if unit == "w" else 1))
        else:
            months = i * count * (12 if unit == "y" else 1)
            year, month = divmod(first.month - 1 + months, 12)
            year += first.year
            day = dt.date(year, month + 1, min(first.day, calendar.monthrange(year, month + 1)[1]))
        if day > last:
            return out
        out.append(day)
        i += 1


def parse_dates(as_of: str | None = None, timeline: str | None = None, step: str = "1m") -> list[dt.date]:
    """The dates a command runs at: ``as_of`` a comma list of days (``2021-06-01,2023-01-01``) or ``timeline``
    ``FROM..TO`` (days) every ``step``; sorted, without repeats. ``ValueError`` naming the bad part."""
    if as_of and timeline:
        raise ValueError("give either --as-of or --timeline, not both")
    days: set[dt.date] = set()
    if as_of:
        for part in as_of.split(","):
            if part.strip():
                days.add(parse_as_of(part))
    if timeline:
        lo, dots, hi = timeline.partition("..")
        if not dots:
            raise ValueError(f"bad timeline {timeline!r} (expected FROM..TO, e.g. 2021-01-01..2024-12-31)")
        days.update(dates_between(parse_as_of(lo), parse_as_of(hi), step))
    return sorted(days)


__all__ = [
    "ACTIVE_SCHEMA",
    "Active",
    "DATE_PATTERN",
    "coverage",
    "dates_between",
    "is_active",
    "parse_active",
    "parse_as_of",
    "parse_dates",
    "parse_day",
]
