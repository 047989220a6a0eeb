"""policy.overrides: rule-param overrides (``params={"RULE.PARAM": "VALUE"}``, the CLI's ``--param``): applied
before the schema check, validated like the file, recorded on the Profile, shown by ``describe``."""

from __future__ import annotations

import pytest

from chokepoint.policy import PolicyError, load_profile, load_rules_file
from chokepoint.policy.compiler import Deferral
from chokepoint.policy.describe import describe
from chokepoint.policy.profile import load_rules_text

RULES = """
rules:
  - id: big.flow
    action: drop
    params: {after_s: 60, min_bytes: 1000, direction: both}
    when: {transport: tcp}
  - id: slow
    action: throttle
    params: {rate_kbps: 100}
    when: {server_port: 8080}
  - id: watch
    action: log
    when: {server_port: 9}
"""


def _load(**params: str):
    return load_rules_text(RULES, "rules.yaml", params=params)


def test_without_overrides_the_file_values_hold() -> None:
    profile = load_rules_text(RULES, "rules.yaml")
    assert profile.policy.rule("big.flow").defer == Deferral(60.0, 1000)
    assert profile.overrides == ()


def test_override_replaces_a_param_and_is_recorded() -> None:
    profile = load_rules_text(RULES, "rules.yaml", params={"big.flow.after_s": "3", "slow.rate_kbps": "2.5"})
    assert profile.policy.rule("big.flow").defer == Deferral(3.0, 1000)  # rule ids may contain dots
    assert profile.policy.rule("slow").params == (("rate_kbps", 2.5),)
    assert profile.overrides == (("big.flow.after_s", 3), ("slow.rate_kbps", 2.5))
    assert profile.overridden("big.flow", "after_s") and not profile.overridden("big.flow", "min_bytes")


def test_override_can_add_a_param_the_file_lacks() -> None:
    profile = load_rules_text(RULES, "rules.yaml", params={"slow.probability": "0.5", "slow.min_bytes": "10"})
    rule = profile.policy.rule("slow")
    assert ("probability", 0.5) in rule.params and rule.defer == Deferral(0.0, 10)


@pytest.mark.parametrize("text, value", [("1e6", 1_000_000), ("200000", 200_000), ("2.5E3", 2500)])
def test_exponent_and_plain_numbers(text: str, value: int) -> None:
    profile = _load(**{"big.flow.min_bytes": text})
    assert profile.policy.rule("big.flow").defer.min_bytes == value


def test_flow_collections_are_yaml() -> None:
    text = "rules:\n  - {id: f, action: dns-forge, params: {answers: [192.0.2.1]}, when: {app_proto: dns}}\n"
    profile = load_rules_text(text, params={"f.answers": "[192.0.2.7, 192.0.2.8]"})
    assert profile.policy.rule("f").params == (("answers", ("192.0.2.7", "192.0.2.8")),)


@pytest.mark.parametrize(
    "key, text, message",
    [
        ("big.flow.after_s", "-1", "--param big.flow.after_s=-1: -1 is less than the minimum of 0"),
        ("big.flow.after_s", "soon", "--param big.flow.after_s=soon: expected number, got string 'soon'"),
        ("big.flow.min_bytes", "1.5", "--param big.flow.min_bytes=1.5: expected integer, got number 1.5"),
        (
            "big.flow.after_z",
            "3",
            "--param big.flow.after_z=3: unknown parameter of drop 'after_z'; did you mean 'after_s'?",
        ),
        ("watch.after_s", "3", "--param watch.after_s=3: unknown parameter of log 'after_s'"),
        ("slow.rate_kbps", "0", "--param slow.rate_kbps=0: 0 is less than or equal to the minimum of 0"),
        (
            "big.flo.after_s",
            "3",
            "--param big.flo.after_s=3: no rule 'big.flo' in rules.yaml; did you mean 'big.flow'?",
        ),
        ("after_s", "3", "--param after_s=3: expected RULE_ID.PARAM=VALUE"),
        ("big.flow.", "3", "--param big.flow.=3: expected RULE_ID.PARAM=VALUE"),
        ("big.flow.after_s", "[1", "--param big.flow.after_s=[1: YAML syntax error"),
    ],
)
def test_a_bad_override_names_itself(key: str, text: str, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        _load(**{key: text})
    assert str(err.value).startswith(message), str(err.value)
    assert err.value.line == 0 and err.value.file == f"--param {key}={text}"


def test_a_bad_override_is_reported_before_errors_of_the_file() -> None:
    bad_file = RULES.replace("rate_kbps: 100", "rate_kbps: -5")
    with pytest.raises(PolicyError) as err:
        load_rules_text(bad_file, "rules.yaml", params={"big.flow.after_s": "x"})
    assert str(err.value).startswith("--param big.flow.after_s=x:")
    with pytest.raises(PolicyError) as err:  # and the file's own error keeps its place
        load_rules_text(bad_file, "rules.yaml", params={"big.flow.after_s": "5"})
    assert str(err.value).startswith("rules.yaml:9:")


def test_an_override_the_enforcer_rejects_names_the_override() -> None:
    # the schema lets any preset-like name through; the enforcer's check (at load time) knows the presets
    with pytest.raises(PolicyError) as err:
        _load(**{"slow.injector": "no-such-preset"})
    assert str(err.value).startswith("--param slow.injector=no-such-preset:"), str(err.value)


def test_the_callers_data_is_not_changed() -> None:
    params = {"big.flow.after_s": "7"}
    first = _load(**params)
    second = load_rules_text(RULES, "rules.yaml")
    assert first.policy.rule("big.flow").defer.after_s == 7 and second.policy.rule("big.flow").defer.after_s == 60


def test_load_profile_and_load_rules_file_take_params(tmp_path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(RULES, encoding="utf-8")
    assert load_rules_file(path, params={"big.flow.min_bytes": "5"}).policy.rule("big.flow").defer.min_bytes == 5
    tsg = load_profile(
        "tsg", params={"tsg-unknown-high-volume.after_s": "3", "tsg-unknown-high-volume.min_bytes": "200000"}
    )
    assert tsg.policy.rule("tsg-unknown-high-volume").defer == Deferral(3.0, 200_000)
    with pytest.raises(PolicyError) as err:
        load_profile("tsg", params={"tsg-unknown-high-volume.after_s": "-1"})
    assert str(err.value) == ("--param tsg-unknown-high-volume.after_s=-1: -1 is less than the minimum of 0")


def test_describe_marks_overridden_values() -> None:
    profile = load_rules_text(RULES, "rules.yaml", params={"big.flow.after_s": "3", "slow.rate_kbps": "7"})
    rules = {r["id"]: r for r in describe(profile)["rules"]}
    assert rules["big.flow"]["overridden"] == {"after_s": 3}
    assert "3 s (overridden)" in rules["big.flow"]["deferred"]
    assert "(overridden)" not in rules["big.flow"]["deferred"].split("once")[1]  # min_bytes is the file's
    assert rules["slow"]["overridden"] == {"rate_kbps": 7}
    assert "overridden" not in rules["watch"]
    assert describe(profile)["overrides"] == ["big.flow.after_s=3", "slow.rate_kbps=7"]
