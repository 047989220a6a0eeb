"""A dated profile over time: the days its behaviour changes (cited events) and the days a command runs it at.

This is the seam the circumvention matrix (``chokepoint matrix --as-of D1,D2`` / ``--timeline FROM..TO --step
1m``) and the transport x time chart (``output/timechart.py``) use, so neither needs to know how ``active:``
ranges are written:

- :func:`events` lists, in day order, every day on which a rule, list, personality knob or also-observed
  element of a profile comes into force or stops being in force (the day after its ``until``), each with the
  citation and ``uncertain:`` note of its ``active:`` range. Examples are left out: they test the profile and
  change when the behaviour they test changes.
- :func:`run_days` turns ``--as-of`` / ``--timeline`` / ``--step`` into the days one profile is loaded at:
  ``--as-of`` a comma list of days, or ``eras`` (the first day of each era: the coverage's first day and each
  day in :func:`events`), ``--timeline FROM..TO`` every ``step``; days the profile does not cover are
  returned apart so a multi-profile run can skip them and say so.
- :func:`plan` does that for several profiles at once: the profiles to run on each day.

Boundaries are inclusive as everywhere (``docs/profiles.md``): an element with ``until: 2023-03-07`` is in
force that day and its "ends" event is on 2023-03-08.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from chokepoint.policy.dates import parse_dates
from chokepoint.policy.eras import era_starts
from chokepoint.policy.errors import PolicyError
from chokepoint.policy.profile import Profile, load_profile

#: dated kinds that are the censor's behaviour (examples only test it)
BEHAVIOUR_KINDS = ("rule", "list", "knob", "also_observed")


@dataclass(frozen=True, slots=True)
class Event:
    """On ``day`` the element ``kind``/``name`` comes into force (``starts``) or is no longer in force
    (``ends``: the day after its ``until``)."""

    day: dt.date
    change: str  # "starts" | "ends"
    kind: str
    name: str
    what: str
    cite: str
    uncertain: str = ""

    def label(self) -> str:
        verb = "from" if self.change == "starts" else "no longer, from"
        return f"{self.kind} {self.name} {verb} {self.day.isoformat()}"

    def to_json(self) -> dict[str, Any]:
        out = {
            "day": self.day.isoformat(),
            "change": self.change,
            "kind": self.kind,
            "name": self.name,
            "what": self.what,
            "cite": self.cite,
        }
        if self.uncertain:
            out["uncertain"] = self.uncertain
        return out


def events(profile: Profile, *, kinds: Iterable[str] = BEHAVIOUR_KINDS) -> list[Event]:
    """Every change of ``profile``'s behaviour inside its coverage, by day (see the module docstring)."""
    lo, hi = profile.coverage or (dt.date.min, dt.date.max)
    wanted = set(kinds)
    out: list[Event] = []
    for item in profile.timeline:
        if item.kind not in wanted:
            continue
        a = item.active
        note = a.uncertain or item.uncertain
        if a.start is not None and lo < a.start <= hi:
            out.append(Event(a.start, "starts", item.kind, item.name, item.what, a.cite, note))
        if a.end is not None and lo <= a.end < hi:
            out.append(Event(a.end + dt.timedelta(days=1), "ends", item.kind, item.name, item.what, a.cite, note))
    return sorted(out, key=lambda e: (e.day, e.change != "ends", e.kind, e.name))


@dataclass(frozen=True, slots=True)
class Days:
    """The days one profile runs at (:func:`run_days`), and those asked for that it does not cover."""

    profile: str
    days: tuple[dt.date, ...]
    outside: tuple[dt.date, ...] = ()
    coverage: tuple[dt.date, dt.date] | None = None


def run_days(
    profile: Profile | str, *, as_of: str | None = None, timeline: str | None = None, step: str = "1m"
) -> Days:
    """The days to load ``profile`` at for ``--as-of`` (a comma list of days, or ``eras``) or ``--timeline
    FROM..TO`` every ``step``; with neither, the day it loads at by default (the last covered). A
    ``PolicyError`` for a malformed value; days outside the coverage come back in ``outside``."""
    prof = load_profile(profile) if isinstance(profile, str) else profile
    span = prof.coverage
    if (as_of or timeline) and prof.base and prof.base != prof.name:
        raise PolicyError(
            prof.name, 0, 0, f"{prof.name} is {prof.base} as of {prof.as_of}: name {prof.base} to run it at other days"
        )
    if as_of is not None and as_of.strip() == "eras":
        if timeline:
            raise PolicyError("--as-of eras", 0, 0, "give either --as-of or --timeline, not both")
        return Days(prof.name, tuple(era_starts(prof)), (), span)
    try:
        asked = parse_dates(as_of, timeline, step) if (as_of or timeline) else []
    except ValueError as exc:
        what = f"--as-of {as_of}" if as_of else f"--timeline {timeline}"
        raise PolicyError(what, 0, 0, str(exc)) from None
    if not asked:
        return Days(prof.name, (prof.as_of,) if prof.as_of else (), (), span)
    lo, hi = span or (dt.date.min, dt.date.max)
    return Days(
        prof.name,
        tuple(d for d in asked if lo <= d <= hi),
        tuple(d for d in asked if not lo <= d <= hi),
        span,
    )


@dataclass(frozen=True, slots=True)
class Plan:
    """Which profiles run on which day (:func:`plan`), and what was skipped and why."""

    by_day: dict[dt.date, tuple[str, ...]]
    per_profile: dict[str, Days] = field(default_factory=dict)

    def skipped(self) -> list[str]:
        """``gfw: 2019-01-01 is outside 2020-08-01..2025-08-31`` lines, one per skipped (profile, day)."""
        out = []
        for name, days in self.per_profile.items():
            for d in days.outside:
                lo, hi = days.coverage or (None, None)
                out.append(f"{name}: {d.isoformat()} is outside its coverage {lo}..{hi}")
        return out


def plan(profiles: Iterable[str], *, as_of: str | None = None, timeline: str | None = None, step: str = "1m") -> Plan:
    """For each profile, :func:`run_days`; gathered by day (days in order, profiles in the order given). A
    ``PolicyError`` when a profile runs on no day at all."""
    per = {name: run_days(name, as_of=as_of, timeline=timeline, step=step) for name in profiles}
    for name, days in per.items():
        if not days.days:
            lo, hi = days.coverage or (None, None)
            raise PolicyError(
                f"--as-of {as_of}" if as_of else f"--timeline {timeline}",
                0,
                0,
                f"no day asked for is within {name}'s coverage {lo}..{hi}",
            )
    by_day: dict[dt.date, list[str]] = {}
    for name, days in per.items():
        for d in days.days:
            by_day.setdefault(d, []).append(name)
    return Plan({d: tuple(by_day[d]) for d in sorted(by_day)}, per)


__all__ = ["BEHAVIOUR_KINDS", "Days", "Event", "Plan", "events", "plan", "run_days"]
