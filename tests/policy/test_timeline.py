"""policy.timeline: a profile's events by day and the days a dated command runs it at."""

from __future__ import annotations

import datetime as dt

import pytest

from chokepoint.policy import PolicyError, load_profile
from chokepoint.policy.eras import era_starts
from chokepoint.policy.timeline import events, plan, run_days

D = dt.date


def test_events_are_the_starts_and_the_days_after_the_ends_with_their_citations() -> None:
    evs = events(load_profile("gfw"))
    fet = [e for e in evs if e.name == "gfw-fet-drop"]
    assert [(e.day, e.change) for e in fet] == [(D(2021, 11, 1), "starts"), (D(2023, 3, 8), "ends")]
    assert "Wu et al. 2023" in fet[0].cite and "stop day" in fet[0].uncertain
    assert [e.day for e in evs] == sorted(e.day for e in evs)
    assert not any(e.kind == "example" for e in evs)
    # gfw-esni-drop starts before the coverage: no event; its loaded behaviour is there from the first day
    assert not any(e.name == "gfw-esni-drop" for e in evs)
    # an element is in force on its until day and not the day after (the "ends" event's day)
    assert "gfw-fet-drop" in {r.id for r in load_profile("gfw", as_of="2023-03-07").policy.rules}
    assert "gfw-fet-drop" not in {r.id for r in load_profile("gfw", as_of="2023-03-08").policy.rules}


def test_every_event_day_is_an_era_start() -> None:
    for name in ("gfw", "russia-tspu", "myanmar", "turkmenistan", "iran", "belarus-2020"):
        prof = load_profile(name)
        assert {e.day for e in events(prof)} <= set(era_starts(prof)), name


def test_run_days_from_a_list_eras_or_a_stepped_timeline() -> None:
    days = run_days("russia-tspu", as_of="2022-01-01,2019-01-01,2021-04-01")
    assert days.days == (D(2021, 4, 1), D(2022, 1, 1)) and days.outside == (D(2019, 1, 1),)
    eras = run_days("myanmar", as_of="eras")
    assert eras.days == tuple(era_starts(load_profile("myanmar"))) and len(eras.days) >= 3
    stepped = run_days("gfw", timeline="2021-01-15..2021-05-31", step="1m")
    assert stepped.days == tuple(D(2021, m, 15) for m in range(1, 6))
    assert run_days("gfw").days == (load_profile("gfw").as_of,)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"as_of": "2021-13-01"}, "--as-of 2021-13-01"),
        ({"timeline": "2021-01-01"}, "expected FROM..TO"),
        ({"timeline": "2021-01-01..2022-01-01", "step": "fortnightly"}, "bad step"),
        ({"as_of": "2021-01-01", "timeline": "2021-01-01..2022-01-01"}, "not both"),
    ],
)
def test_run_days_rejects_bad_values_by_name(kwargs, message) -> None:
    with pytest.raises(PolicyError, match=message):
        run_days("gfw", **kwargs)


def test_a_named_date_is_one_day_and_cannot_be_moved() -> None:
    with pytest.raises(PolicyError, match="gfw-2023 is gfw as of 2022-06-01"):
        run_days("gfw-2023", as_of="2023-01-01")
    assert run_days("gfw-2023").days == (D(2022, 6, 1),)


def test_plan_gathers_profiles_by_day_and_says_what_it_skipped() -> None:
    p = plan(["gfw", "belarus-2020"], as_of="2020-09-01,2022-06-01")
    assert p.by_day == {D(2020, 9, 1): ("gfw", "belarus-2020"), D(2022, 6, 1): ("gfw",)}
    assert p.skipped() == ["belarus-2020: 2022-06-01 is outside its coverage 2020-08-01..2021-04-30"]
    with pytest.raises(PolicyError, match="no day asked for is within belarus-2020's coverage"):
        plan(["gfw", "belarus-2020"], as_of="2023-01-01")
