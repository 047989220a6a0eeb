"""Every profile's ``examples:`` reproduced offline: a capture built from real client bytes for each example,
analysed with the profile by the offline backend, shows the verdict and rule the example names (blocked) or
no blocking verdict (allowed). Probabilistic rules are checked over many flows against their probability.

Profiles are timelines: an example is checked on the first and the last era (``era_starts``) in which it is
in force, with the profile loaded as of that era's first day."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from chokepoint.policy.profile import era_starts, list_profiles, load_profile
from chokepoint.policy.provenance import Example
from tests.profiles._scenarios import analyze, example_packets, outcome


def _cases() -> list[tuple[str, str, str]]:
    out = []
    for name in list_profiles():
        days: dict[str, list[str]] = {}
        for day in era_starts(load_profile(name)):
            for ex in load_profile(name, as_of=day).examples:
                days.setdefault(ex.id, []).append(day.isoformat())
        for ident, seen in days.items():
            out += [(name, day, ident) for day in dict.fromkeys((seen[0], seen[-1]))]
    return out


CASES = _cases()
#: Flows per probabilistic example.
FLOWS = 120


def _example(name: str, day: str, ident: str) -> Example:
    return next(e for e in load_profile(name, as_of=day).examples if e.id == ident)


def test_every_profile_has_blocked_and_allowed_examples() -> None:
    for name in list_profiles():
        outcomes = {e.outcome for e in load_profile(name).examples}
        assert outcomes == {"blocked", "allowed"}, name


def test_every_blocking_rule_has_a_blocked_example() -> None:
    """Each documented behaviour is reproduced by at least one example in force in every era of the rule (a
    rule without one would be untested here; those are covered by the per-profile tests instead and listed
    below)."""
    covered_elsewhere = {
        ("gfw", "gfw-esni-drop"),  # a real Firefox ESNI ClientHello: test_gfw_2023.py
        ("gfw", "gfw-http-search-keyword-reset"),  # test_gfw_2023.py
        ("gfw", "gfw-wireguard-port-block"),  # a week-long deferred rule: test_gfw_timeline.py
        ("gfw", "gfw-tls-in-tls"),  # off (probability 0): tests/lab/test_trafficgen.py turns it on with trojan
        ("russia-tspu", "tspu-ech-drop"),
        ("russia-tspu", "tspu-ip-drop"),
        ("russia-tspu", "tspu-tor-protocol-drop"),  # a real Tor ClientHello: test_russia_tspu.py
        ("russia-tspu", "tspu-snowflake-dtls-clienthello"),  # DTLS records: test_russia_tspu.py
        ("russia-tspu", "tspu-snowflake-dtls-hvr"),
        ("myanmar", "mm-vpn-tcp-reset"),
        ("myanmar", "mm-tor-reset"),  # a real Tor ClientHello (nDPI's tor.pcap): test_myanmar.py
        ("iran", "iran-go-tls-fingerprint-drop"),  # Debian's v2ray (Go crypto/tls): test_iran.py
    }
    for name in list_profiles():
        for day in era_starts(load_profile(name)):
            profile = load_profile(name, as_of=day)
            named = {e.rule for e in profile.examples}
            for rule in profile.policy.rules:
                if rule.action.value != "log" and (name, rule.id) not in covered_elsewhere:
                    assert rule.id in named, f"{name} as of {day}: rule {rule.id} has no example"


@pytest.mark.parametrize(("name", "day", "ident"), CASES)
def test_example_reproduces_offline(name: str, day: str, ident: str, tmp_path: Path) -> None:
    ex = _example(name, day, ident)
    profile = load_profile(name, params=dict(ex.params), as_of=day)  # an example's overrides (a shorter delay)
    rule = profile.policy.rule(ex.rule) if ex.rule else None
    probability = rule.params and dict(rule.params).get("probability", 1.0) if rule else 1.0
    if ex.outcome == "blocked" and probability and probability < 1.0:
        _check_probabilistic(profile, ex, float(probability), tmp_path)
        return
    (record,) = analyze(profile, example_packets(ex, profile), tmp_path, ex.id)
    verdict, rule_id, logs = outcome(record)
    if ex.outcome == "blocked" and ex.action != "log":
        assert (verdict, rule_id) == (ex.action, ex.rule), record["chokepoint"]
    else:
        assert (verdict, rule_id) == ("allow", None), record["chokepoint"]
        if ex.rule:  # a log rule marks the flow
            assert ex.rule in logs, record["chokepoint"]


def _check_probabilistic(profile, ex: Example, probability: float, tmp_path: Path) -> None:
    """FLOWS copies of the example (distinct client ports) in one capture: the blocked share is within 4
    standard deviations of the rule's probability, and every block comes from the example's rule."""
    packets = [p for i in range(FLOWS) for p in example_packets(ex, profile, seed=i, client_port=20000 + i)]
    records = analyze(profile, packets, tmp_path, ex.id)
    assert len(records) == FLOWS
    blocked = [outcome(r) for r in records if outcome(r)[0] != "allow"]
    assert all((v, r) == (ex.action, ex.rule) for v, r, _ in blocked), blocked[:3]
    sd = math.sqrt(FLOWS * probability * (1 - probability))
    assert abs(len(blocked) - FLOWS * probability) <= 4 * sd, (len(blocked), FLOWS * probability)
