"""The scenario catalogue loader: the bundled catalogue, and errors at file:line:column."""

from __future__ import annotations

import textwrap

import pytest

from chokepoint.enforce.personality import PRESETS
from chokepoint.policy import list_profiles, load_profile
from chokepoint.probe.runner import TESTS
from chokepoint.validate.scenarios import (
    BUNDLED_CATALOGUE,
    NOT_CENSORSHIP,
    TECHNIQUES,
    CatalogueError,
    load_catalogue,
    parse_catalogue,
    select,
)

GOOD = """\
defaults:
  tests: [tcp, tls]
  timeout: 2
scenarios:
  - name: a
    profile: gfw
    target: https://www.google.com/
    quick: true
    expected: {technique: tls-reset, blocking: http-failure, accessible: false, attribution: gfw-type-ii}
  - name: b
    profile: null
    mode: mirror
    target: http://x.example/
    tests: [dns, http]
    resolver: control
    seed: 4
    expected: {technique: none, blocking: false, accessible: true}
"""


def test_a_small_catalogue_with_defaults():
    a, b = parse_catalogue(GOOD, "cat.yaml")
    assert (a.name, a.profile, a.mode, a.tests, a.timeout, a.quick) == ("a", "gfw", "inline", ("tcp", "tls"), 2.0, True)
    assert a.expected.attribution == "gfw-type-ii" and a.expected.blocking == "http-failure"
    assert a.source == "cat.yaml:5:5"
    assert (b.profile, b.mode, b.tests, b.resolver, b.quick) == (None, "mirror", ("dns", "http"), "control", False)
    assert b.expected.blocking is False and b.group == ("", "mirror", 4, None, None) and b.host == "x.example"


def _error(text: str) -> CatalogueError:
    with pytest.raises(CatalogueError) as info:
        parse_catalogue(textwrap.dedent(text), "c.yaml")
    return info.value


@pytest.mark.parametrize(
    "text, where, words",
    [
        ("scenarios: [\n", (2, 1), "YAML syntax"),
        ("scenarios: []\n", "[]", "non-empty list"),
        ("bogus: 1\nscenarios: []\n", "bogus", "unknown key 'bogus'"),
        (
            "scenarios:\n  - name: a\n    profile: nope\n    target: https://a.example/\n"
            "    expected: {technique: none, blocking: false, accessible: true}\n",
            "nope",
            "no bundled profile 'nope'",
        ),
        (
            "scenarios:\n  - name: a\n    profile: gfw\n    target: https://a.example/\n"
            "    expected: {technique: tcp-magic, blocking: false, accessible: true}\n",
            "tcp-magic",
            "unknown technique",
        ),
        (
            "scenarios:\n  - name: a\n    profile: gfw\n    target: https://a.example/\n"
            "    expected: {technique: none, blocking: yes, accessible: true}\n",
            "yes",
            "blocking must be",
        ),
        (
            "scenarios:\n  - name: a\n    profile: gfw\n    target: https://a.example/\n    tests: [tcp, warp]\n"
            "    expected: {technique: none, blocking: false, accessible: true}\n",
            "warp",
            "unknown test 'warp'",
        ),
        (
            "scenarios:\n  - name: a\n    profile: gfw\n    target: ftp://a.example/\n"
            "    expected: {technique: none, blocking: false, accessible: true}\n",
            "ftp:",
            "bad target",
        ),
        (
            "scenarios:\n  - name: a\n    profile: gfw\n    target: https://a.example/\n"
            "    expected: {technique: none, blocking: false, accessible: true, attribution: nobody}\n",
            "nobody",
            "no personality preset",
        ),
        (
            "scenarios:\n  - name: a\n    profile: null\n    target: https://a.example/\n"
            "    expected: {technique: tls-reset, blocking: false, accessible: true}\n",
            "tls-reset",
            "without a censor",
        ),
        (
            "scenarios:\n  - name: a\n    profile: gfw\n    target: https://a.example/\n"
            "    expected: {technique: none, blocking: false, accessible: true}\n"
            "  - name: a\n    profile: gfw\n    target: https://b.example/\n"
            "    expected: {technique: none, blocking: false, accessible: true}\n",
            "a\n    profile: gfw\n    target: https://b",
            "duplicate scenario name",
        ),
        (
            "scenarios:\n  - name: a\n    profile: gfw\n    target: https://a.example/\n    colour: red\n"
            "    expected: {technique: none, blocking: false, accessible: true}\n",
            "colour",
            "unknown key 'colour'",
        ),
        (
            "scenarios:\n  - name: a\n    target: https://a.example/\n"
            "    expected: {technique: none, blocking: false, accessible: true}\n",
            "name: a",
            "needs 'profile'",
        ),
        ("defaults: {timeout: -1}\nscenarios: []\n", "-1", "timeout"),
        (
            "scenarios:\n  - name: a\n    profile: gfw\n    target: https://a.example/\n    seed: -3\n"
            "    expected: {technique: none, blocking: false, accessible: true}\n",
            "-3",
            "seed must be",
        ),
        (
            "scenarios:\n  - name: a\n    profile: myanmar\n    target: https://a.example/\n    local_time: '25:00'\n"
            "    expected: {technique: none, blocking: false, accessible: true}\n",
            "'25:00'",
            "HH:MM",
        ),
        (
            "scenarios:\n  - name: a\n    profile: null\n    target: https://a.example/\n    local_time: '02:30'\n"
            "    expected: {technique: none, blocking: false, accessible: true}\n",
            "'02:30'",
            "needs a censor",
        ),
    ],
)
def test_errors_name_file_line_column(text, where, words):
    if isinstance(where, str):  # the position of the offending token
        before = text[: text.index(where)]
        where = (before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1)
    err = _error(text)
    assert (err.line, err.column) == where, str(err)
    assert words in err.message
    assert str(err).startswith(f"c.yaml:{where[0]}:{where[1]}: ")


def test_unreadable_file(tmp_path):
    with pytest.raises(CatalogueError, match=r"missing\.yaml:1:1: cannot read"):
        load_catalogue(tmp_path / "missing.yaml")


def test_the_bundled_catalogue_covers_every_profile_and_is_consistent():
    scenarios = load_catalogue()
    assert len(scenarios) >= 40
    assert str(BUNDLED_CATALOGUE) in scenarios[0].source
    profiles = {s.profile for s in scenarios}
    assert set(list_profiles()) - {"gfw"} <= profiles | {"gfw"} and "gfw" in profiles
    assert None in profiles and {"inline", "mirror"} <= {s.mode for s in scenarios}
    for s in scenarios:
        assert set(s.tests) <= set(TESTS)
        assert s.expected.technique in TECHNIQUES
        assert s.expected.attribution is None or s.expected.attribution in PRESETS
        if s.rule is not None:  # the rule a scenario names exists in its profile
            assert s.rule in {r.id for r in load_profile(s.profile, as_of=s.as_of).policy.rules}, s.name
    # the false-positive traps: a CAPTCHA page, a site that does not exist, a refused port, a slow server
    fp_targets = " ".join(s.target for s in scenarios if s.profile is None)
    for trap in ("captcha.test", "nxdomain.test", ":8081", "/slow"):
        assert trap in fp_targets
    # the censored techniques exercised
    assert {
        "dns-forged",
        "tls-reset",
        "tls-dropped",
        "http-reset",
        "http-blockpage",
        "quic-dropped",
        "throttled",
        "fet-blocked",
        NOT_CENSORSHIP,
    } <= {s.expected.technique for s in scenarios}
    quick = select(scenarios, quick=True)
    assert 4 <= len(quick) <= 12 and {s.profile for s in quick} >= {None, "gfw"}


def test_select():
    scenarios = parse_catalogue(GOOD, "cat.yaml")
    assert [s.name for s in select(scenarios, quick=True)] == ["a"]
    assert [s.name for s in select(scenarios, profiles=["none"])] == ["b"]
    assert [s.name for s in select(scenarios, names=["?"])] == ["a", "b"]
    with pytest.raises(ValueError, match="no scenario uses profile"):
        select(scenarios, profiles=["iran"])
    with pytest.raises(ValueError, match="no scenario named"):
        select(scenarios, names=["zzz"])


def test_a_scheduled_profile_runs_on_a_pinned_clock():
    """validate pins the censor's clock of a profile with rules on local_hour (Myanmar) to 12:00 local unless
    a scenario names its own local_time; other profiles keep the wall clock. Labs differ by clock."""
    from chokepoint.validate.runner import DEFAULT_LOCAL_TIME, pin_clock, plan_groups

    text = textwrap.dedent("""\
        scenarios:
          - {name: day, profile: myanmar, as_of: "2021-03-01", target: https://a.example/,
             expected: {technique: none, blocking: false, accessible: true}}
          - {name: night, profile: myanmar, as_of: "2021-03-01", target: https://b.example/, local_time: "02:30",
             expected: {technique: dns-failure, blocking: dns, accessible: false}}
          - {name: gfw, profile: gfw, target: https://c.example/,
             expected: {technique: none, blocking: false, accessible: true}}
        """)
    day, night, gfw = (pin_clock(s) for s in parse_catalogue(text, "c.yaml"))
    assert (day.local_time, night.local_time, gfw.local_time) == (DEFAULT_LOCAL_TIME, "02:30", None)
    groups = [key for key, _members, _hosts in plan_groups([day, night, gfw])]
    assert groups == [
        ("myanmar", "inline", None, "12:00", "2021-03-01"),
        ("myanmar", "inline", None, "02:30", "2021-03-01"),
        ("gfw", "inline", None, None, None),
    ]


def test_dated_scenarios_run_in_labs_of_their_day():
    """A scenario's ``as_of`` is the day its profile is loaded for (checked against the profile's coverage at
    file:line:column); scenarios of different days get different labs; the run's --as-of fills the others
    (never a named date, which is a day itself)."""
    from chokepoint.validate.runner import RunOptions, _run_day, plan_groups

    text = textwrap.dedent("""        scenarios:
          - {name: fet, profile: gfw, as_of: "2022-06-01", target: https://a.example/, tests: [fet],
             expected: {technique: fet-blocked, blocking: null, accessible: null}}
          - {name: now, profile: gfw, target: https://b.example/,
             expected: {technique: none, blocking: false, accessible: true}}
          - {name: named, profile: gfw-2023, target: https://c.example/,
             expected: {technique: none, blocking: false, accessible: true}}
        """)
    fet, now, named = parse_catalogue(text, "c.yaml")
    assert (fet.as_of, now.as_of, named.as_of) == ("2022-06-01", None, None)
    assert [key[-1] for key, _m, _h in plan_groups([fet, now])] == ["2022-06-01", None]
    options = RunOptions(as_of="2024-01-01")
    assert (_run_day(now, options), _run_day(named, options)) == ("2024-01-01", None)
    for bad, words in (
        ('"2019-01-01"', "outside the dates profile 'gfw' covers"),
        ('"2022-6-1"', "not a day"),
    ):
        broken = text.replace('"2022-06-01"', bad)
        with pytest.raises(CatalogueError, match=words) as info:
            parse_catalogue(broken, "c.yaml")
        assert (info.value.line, info.value.column) == (2, 38)
