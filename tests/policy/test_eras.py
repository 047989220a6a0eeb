"""``policy.eras``: the first days of a profile's eras are exactly the days on which what is in force changes."""

from __future__ import annotations

import datetime as dt

import pytest

from chokepoint.policy import load_profile
from chokepoint.policy.eras import era_starts


def _in_force(profile, day: dt.date) -> frozenset[tuple[str, str]]:
    return frozenset(
        (d.kind, d.name)
        for d in profile.timeline
        if (d.active.start is None or d.active.start <= day) and (d.active.end is None or day <= d.active.end)
    )


@pytest.mark.parametrize("name", ["myanmar", "gfw", "russia-tspu"])
def test_an_era_starts_exactly_where_the_dated_elements_in_force_change(name) -> None:
    profile = load_profile(name)
    lo, hi = profile.coverage
    starts = era_starts(profile)
    assert starts[0] == lo and all(lo <= d <= hi for d in starts) and starts == sorted(set(starts))
    changes = [
        lo + dt.timedelta(days=i)
        for i in range(1, (hi - lo).days + 1)
        if _in_force(profile, lo + dt.timedelta(days=i)) != _in_force(profile, lo + dt.timedelta(days=i - 1))
    ]
    assert starts[1:] == changes


def test_loading_at_an_era_start_takes_its_rules_and_the_day_before_does_not() -> None:
    profile = load_profile("myanmar")
    for day in era_starts(profile)[1:]:
        before = load_profile("myanmar", as_of=str(day - dt.timedelta(days=1)))
        at = load_profile("myanmar", as_of=str(day))
        assert _in_force(profile, day) != _in_force(profile, day - dt.timedelta(days=1))
        assert at.as_of == day and before.as_of == day - dt.timedelta(days=1)
    # a day between two era starts loads what its era's first day loads
    first, second = era_starts(profile)[:2]
    middle = first + (second - first) / 2
    rules = lambda d: {r.id for r in load_profile("myanmar", as_of=str(d)).policy.rules}  # noqa: E731
    assert rules(middle) == rules(first)
