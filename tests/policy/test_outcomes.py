"""A profile's published outcomes (``outcomes:``): loaded with their citations, checked at file:line:column."""

from __future__ import annotations

import pytest

from chokepoint.policy import PolicyError, load_profile, load_rules_text
from chokepoint.policy.outcomes import expected_for

RULES = """\
rules:
  - {id: r1, action: log, when: {transport: tcp}}
outcomes:
  - transports: [shadowsocks-*, obfs4]
    outcome: blocked
    how: dropped
    cite: "Somebody, Some Venue 2023"
    observed: "2021-11/2023-03"
    modes: [inline]
"""


def test_outcomes_load_and_match_names_globs_and_modes():
    profile = load_rules_text(RULES, "r.yaml")
    (entry,) = profile.outcomes
    assert entry.outcome == "blocked" and entry.cite == "Somebody, Some Venue 2023"
    assert entry.applies("shadowsocks-aead", "inline") and entry.applies("obfs4", "inline")
    assert not entry.applies("obfs4", "mirror") and not entry.applies("trojan", "inline")
    assert expected_for(profile.outcomes, "shadowsocks-stream", "inline") == [entry]
    assert entry.to_json()["source"].startswith("r.yaml:4:")


@pytest.mark.parametrize(
    "change, where, what",
    [
        (("outcome: blocked", "outcome: maybe"), "5:14", "maybe"),
        (("[shadowsocks-*, obfs4]", "[shadowsocks-*, teleport]"), "4:33", "'teleport' names no known transport"),
        (('    cite: "Somebody, Some Venue 2023"\n', ""), "4:5", "cite"),
        (("modes: [inline]", "modes: [sideways]"), "9:13", "sideways"),
    ],
)
def test_bad_outcomes_are_reported_where_they_are(change, where, what):
    with pytest.raises(PolicyError) as info:
        load_rules_text(RULES.replace(*change), "r.yaml")
    assert str(info.value).startswith(f"r.yaml:{where}"), str(info.value)
    assert what in str(info.value)


def test_bundled_profiles_record_published_outcomes_with_citations():
    gfw = load_profile("gfw")
    fet = expected_for(gfw.outcomes, "shadowsocks-aead", "inline")[0]
    assert fet.outcome == "blocked" and "Wu et al." in fet.cite and fet.observed == "2021-11/2023-03"
    assert expected_for(gfw.outcomes, "shadowsocks-aead", "mirror") == []
    tspu = load_profile("russia-tspu")
    assert expected_for(tspu.outcomes, "tor", "inline")[0].outcome == "blocked"
    assert expected_for(tspu.outcomes, "wireguard", "inline")[0].uncertain
