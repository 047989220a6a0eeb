"""Deferred rules in the policy layer: schema and loader checks (file:line:col), the compiled rule, the
evaluation order, ``describe``, and example ``params``."""

from __future__ import annotations

import pytest

from chokepoint.policy import PolicyError, load_profile
from chokepoint.policy.compiler import Deferral
from chokepoint.policy.describe import deferral_text, describe
from chokepoint.policy.profile import load_rules_text
from tests.policy.factories import flow


def _rules(params: str, action: str = "drop") -> str:
    return f"""rules:
  - id: big
    action: {action}
    params: {params}
    when: {{fully_encrypted: true}}
"""


def test_the_params_become_a_deferral_not_enforcer_params() -> None:
    rule = load_rules_text(_rules("{after_s: 86400, min_bytes: 50000000, direction: both}")).policy.rule("big")
    assert rule.defer == Deferral(86400.0, 50_000_000)
    assert rule.params == (("direction", "both"),)  # the enforcer never sees after_s/min_bytes
    only_age = load_rules_text(_rules("{after_s: 5}")).policy.rule("big")
    assert only_age.defer == Deferral(5.0, 0)
    assert load_rules_text(_rules("{direction: both}")).policy.rule("big").defer is None


@pytest.mark.parametrize(
    "params, action, where, message",
    [
        ("{after_s: -1}", "drop", "<rules>:4:23", "-1 is less than the minimum of 0"),
        ("{after_s: soon}", "drop", "<rules>:4:23", "expected number, got string 'soon'"),
        ("{min_bytes: -5}", "reset", "<rules>:4:25", "-5 is less than the minimum of 0"),
        ("{min_bytes: 1.5}", "drop", "<rules>:4:25", "expected integer, got number 1.5"),
        ("{min_bytes: 50MB}", "drop", "<rules>:4:25", "expected integer, got string '50MB'"),
        ("{after_s: 5}", "log", "<rules>:4:14", "unknown parameter of log 'after_s'"),
        ("{after_s: 5, answers: [192.0.2.1]}", "dns-forge", "<rules>:4:14", "unknown parameter of dns-forge 'after_s'"),
        ("{after_s: 5}", "tls-intercept", "<rules>:4:14", "unknown parameter of tls-intercept 'after_s'"),
    ],
)
def test_bad_values_are_reported_at_their_place(params: str, action: str, where: str, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        load_rules_text(_rules(params, action))
    assert str(err.value).startswith(f"{where}: {message}"), str(err.value)


def test_evaluation_goes_on_past_a_deferred_rule() -> None:
    text = (
        _rules("{after_s: 5}") + "  - {id: then, action: reset, when: {fully_encrypted: true}}\n"
        "  - {id: never, action: drop, when: {fully_encrypted: true}}\n"
    )
    verdicts = load_rules_text(text).policy.evaluate(flow(fully_encrypted=True))
    assert [v.rule_id for v in verdicts] == ["big", "then"]


@pytest.mark.parametrize(
    "params, text",
    [
        ("{after_s: 86400, min_bytes: 50000000}", "flag, then drop after 24 h once 50 MB have passed"),
        ("{after_s: 3, min_bytes: 200000}", "flag, then drop after 3 s once 200 kB have passed"),
        ("{after_s: 90}", "flag, then drop after 90 s"),
        ("{after_s: 120}", "flag, then drop after 2 min"),
        ("{min_bytes: 1500000000}", "flag, then drop once 1.5 GB have passed"),
        ("{after_s: 0}", "flag, then drop at once"),
    ],
)
def test_deferral_in_words(params: str, text: str) -> None:
    assert deferral_text(load_rules_text(_rules(params)).policy.rule("big")) == text


def test_tsg_is_enforcing_and_described_with_citations() -> None:
    profile = load_profile("tsg")
    rule = profile.policy.rule("tsg-unknown-high-volume")
    assert rule.action.value == "drop" and rule.defer == Deferral(86400.0, 50_000_000) and not rule.mechanism
    d = describe(profile)
    item = next(r for r in d["rules"] if r["id"] == "tsg-unknown-high-volume")
    assert item["deferred"] == "flag, then drop after 24 h once 50 MB have passed"
    assert item["technique"] == "fully encrypted deferred drop"
    assert "Internet Coup" in item["cite"] and "fet.cpp" in item["cite"]
    assert "placeholder" in item["uncertain"]["min_bytes"] and "not enforced" not in d["uncertainties"][0]
    assert item["params"] == {"direction": "both", "after_s": 86400, "min_bytes": 50_000_000}
    assert "overridden" not in item and "overrides" not in d


def test_tsg_examples_carry_their_params() -> None:
    profile = load_profile("tsg")
    blocked = next(e for e in profile.examples if e.id == "unknown-high-volume-blocked")
    assert dict(blocked.params) == {
        "tsg-unknown-high-volume.after_s": "3",
        "tsg-unknown-high-volume.min_bytes": "200000",
    }
    assert blocked.duration_s == 6 and blocked.send_kbps == 800
    flagged = next(e for e in profile.examples if e.id == "unknown-flow-flagged")
    assert flagged.outcome == "allowed" and flagged.rule == "tsg-unknown-high-volume" and not flagged.params
    # they load as overrides
    loaded = load_profile("tsg", params=dict(blocked.params))
    assert loaded.policy.rule("tsg-unknown-high-volume").defer == Deferral(3.0, 200_000)


EXAMPLE = (
    _rules("{after_s: 60}")
    + """examples:
  blocked:
    - id: ex
      protocol: tcp
      payload_random: 100
      rule: big
      symptom: generic_timeout_error
      {extra}
"""
)


@pytest.mark.parametrize(
    "extra, message",
    [
        ("params: {big.after_s: -3}", "<rules>:8:7: example 'ex': --param big.after_s=-3: -3 is less than the minimum"),
        ("params: {nope.after_s: 3}", "<rules>:13:16: params: 'nope.after_s' names no rule of this profile"),
        ("params: {after_s: 3}", "<rules>:13:16: bad key 'after_s'"),
        ("duration_s: 5", "<rules>:8:7: give duration_s and send_kbps together"),
        ("duration_s: 0", "<rules>:13:19: 0 is less than or equal to the minimum of 0"),
    ],
)
def test_example_params_are_checked(extra: str, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        load_rules_text(EXAMPLE.replace("{extra}", extra))
    assert str(err.value).startswith(message), str(err.value)


def test_an_allowed_example_may_name_a_deferred_rule() -> None:
    text = (
        _rules("{after_s: 60}")
        + """examples:
  allowed:
    - {id: ok, protocol: tcp, payload_random: 100, rule: big, symptom: ok}
"""
    )
    (ex,) = load_rules_text(text).examples
    assert ex.rule == "big" and ex.outcome == "allowed"
